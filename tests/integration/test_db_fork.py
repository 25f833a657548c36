"""A forked child (an RQ work horse) reuses the engine it inherits with its own pool."""

from __future__ import annotations

import os

from sqlalchemy import text

from snapmatch import db


def test_forked_child_gets_its_own_pool_on_the_inherited_engine(env) -> None:  # type: ignore[no-untyped-def]
    parent_engine = db.get_engine()
    with parent_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    db.close_connections()
    parent_pool = parent_engine.pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, never return into pytest
        code = 1
        try:
            engine = db.get_engine()
            with db.transaction() as conn:
                value = conn.execute(text("SELECT 41 + 1")).scalar()
            same = engine is parent_engine
            os.write(write, f"{value} {same} {engine.pool is not parent_pool}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = os.read(read, 100).decode()
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report.split() == ["42", "True", "True"]  # same engine, a new pool
    # The parent's engine still works after the child's dispose(close=False).
    with db.transaction() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
