"""The summary's verdict, which is the command's exit status."""

from __future__ import annotations

import io
import json

import pytest

from snapmatch.watcher.display import JsonLines, Summary
from snapmatch.watcher.run import Counters
from snapmatch.watcher.state import FileStatus


def summary(**changes: object) -> Summary:
    base: dict[str, object] = dict(
        command="watch", folder="/p", server="http://s", event_id=1, batch_id="b", seen=3, sent=3, duplicate=0,
        previously=0, rejected=0, failed=0, unsettled=0, requests=1, megabytes=1.0, seconds=1.0,
        seconds_to_last_ack=0.5, server_processed=0, server_failed=0, server_in_progress=3, interrupted=False,
        error=None,
    )  # fmt: skip
    base.update(changes)
    return Summary(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({}, True),
        ({"rejected": 1}, False),
        ({"failed": 1}, False),
        ({"error": "The token was refused."}, False),
        ({"unsettled": 2, "interrupted": True}, True),  # Ctrl-C ends a watch; the next run sends the rest
        ({"unsettled": 2, "interrupted": True, "command": "upload"}, False),  # a one-shot run did not finish
    ],
)
def test_what_counts_as_success(changes: dict, ok: bool) -> None:
    assert summary(**changes).ok is ok


def test_json_lines_carry_each_settled_file_and_the_summary() -> None:
    out = io.StringIO()
    display = JsonLines(Counters(), out)
    display.file_done("a.jpg", FileStatus.SENT, {"sha256": "ab", "photo_id": 4})
    display.file_done("b.jpg", FileStatus.REJECTED, {"error": {"code": "unsupported_type", "message": "No."}})
    display.summary(summary(rejected=1, problems=list(display.problems)))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"type": "file", "path": "a.jpg", "status": "sent", "sha256": "ab", "photo_id": 4}
    assert lines[1]["error"]["code"] == "unsupported_type"
    assert lines[2]["type"] == "summary" and lines[2]["ok"] is False
    problem = {"path": "b.jpg", "status": "rejected", "code": "unsupported_type", "message": "No."}
    assert lines[2]["problems"] == [problem]
