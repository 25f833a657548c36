"""Alembic environment: runs migrations on the engine handed over by ``snapmatch.db.migrate``."""

from alembic import context

from snapmatch.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as conn:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a SQLite table by copy, DROP and rename; with foreign keys on, the DROP
        # of e.g. ``events`` deletes every photo through ON DELETE CASCADE. Off for the migration
        # (the pragma only works outside a transaction), checked and back on afterwards.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()  # end SQLAlchemy's autobegun transaction (the pragma ran outside one in SQLite)
    try:
        with conn.begin():
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=sqlite)
            context.run_migrations()
            if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise RuntimeError("a migration left rows whose foreign keys point nowhere")
    finally:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
