"""What the person (or script) running the watcher sees: a live rich panel with the counts, one line per
rejected or failed file, and a summary; or, with ``--json``, one JSON object per line."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from snapmatch.watcher.run import Counters
from snapmatch.watcher.state import FileStatus


@dataclass
class Problem:
    path: str
    status: str
    code: str | None
    message: str | None


@dataclass
class Summary:
    """The end of a run, for people and scripts alike."""

    command: str
    folder: str
    server: str
    event_id: int
    batch_id: str
    seen: int
    sent: int
    duplicate: int
    previously: int
    rejected: int
    failed: int
    unsettled: int  # found but not settled when the run ended (Ctrl-C, or a stop on an error)
    requests: int
    megabytes: float
    seconds: float
    seconds_to_last_ack: float | None
    server_processed: int
    server_failed: int
    server_in_progress: int
    interrupted: bool
    error: str | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing rejected or failed, and everything found settled (Ctrl-C ends a watch normally)."""
        left_over = self.unsettled and (self.command == "upload" or not self.interrupted)
        return not (self.rejected or self.failed or self.error or left_over)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "problems"}
        out["problems"] = [p.__dict__ for p in self.problems]
        out["ok"] = self.ok
        return out


def throughput(counters: Counters, now: float | None = None) -> tuple[float, float]:
    """(MB/s, photos/s) from the first request to the last acknowledgement (or now, while running)."""
    if counters.first_send is None:
        return 0.0, 0.0
    end = now if now is not None else (counters.last_ack or time.monotonic())
    seconds = max(end - counters.first_send, 1e-3)
    return counters.bytes_sent / 1e6 / seconds, counters.sent / seconds


class _Base:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.problems: list[Problem] = []
        self._lock = threading.Lock()

    def file_done(self, relpath: str, status: FileStatus, detail: dict[str, object]) -> None:
        if status in (FileStatus.REJECTED, FileStatus.FAILED):
            error = detail.get("error") or {}
            assert isinstance(error, dict)
            with self._lock:
                self.problems.append(Problem(relpath, status.value, error.get("code"), error.get("message")))


class LiveDisplay(_Base):
    """The rich panel, refreshed four times a second from the shared counters."""

    def __init__(self, counters: Counters, title: str, stream: TextIO | None = None) -> None:
        super().__init__(counters)
        self.title = title
        self.console = Console(file=stream or sys.stderr, highlight=False)
        self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def message(self, text: str) -> None:
        self.console.print(text)

    def file_done(self, relpath: str, status: FileStatus, detail: dict[str, object]) -> None:
        super().file_done(relpath, status, detail)
        if status in (FileStatus.REJECTED, FileStatus.FAILED):
            error = detail.get("error") or {}
            assert isinstance(error, dict)
            colour = "red" if status == FileStatus.FAILED else "yellow"
            reason = error.get("message") or error.get("code")
            self.console.print(Text.assemble((f"{status.value:>8} ", colour), relpath, f": {reason}"))

    def _render(self) -> Group:
        c = self.counters
        with c.lock:
            mbps, pps = throughput(c, time.monotonic())
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            grid.add_row("folder", f"{c.seen} found · {c.waiting} being written · {c.sending} sending")
            grid.add_row(
                "sent",
                Text.assemble(
                    (f"{c.sent} sent", "green"),
                    f" · {c.duplicate} already on the server · {c.previously} sent earlier · ",
                    (f"{c.rejected} rejected", "yellow" if c.rejected else ""),
                    " · ",
                    (f"{c.failed} failed", "red" if c.failed else ""),
                ),
            )
            grid.add_row("speed", f"{mbps:.1f} MB/s · {pps:.1f} photos/s · {c.requests} requests")
            grid.add_row(
                "server",
                f"{c.server.processed} processed · {c.server.failed} failed · {c.server.in_progress} in progress",
            )
            parts: list[Any] = [Text(self.title, style="bold cyan"), grid]
            if c.notice and time.monotonic() < c.notice_until + 1:
                parts.append(Text(c.notice, style="yellow"))
        return Group(*parts)

    def summary(self, s: Summary) -> None:
        mb_s = s.megabytes / s.seconds_to_last_ack if s.seconds_to_last_ack else 0.0
        lines = [
            f"{s.sent} sent, {s.duplicate} already on the server, {s.previously} sent by an earlier run, "
            f"{s.rejected} rejected, {s.failed} failed ({s.seen} photos found) in {s.seconds:.1f} s"
            + (f"; {s.megabytes:.0f} MB at {mb_s:.1f} MB/s" if s.megabytes else ""),
            f"server: {s.server_processed} processed, {s.server_failed} failed, {s.server_in_progress} in progress "
            f"(batch {s.batch_id})",
        ]
        if s.unsettled:
            lines.append(f"{s.unsettled} photos not sent yet: the next run sends them.")
        if s.error:
            lines.append(f"[red]Stopped: {s.error}[/red]")
        for line in lines:
            self.console.print(line)


class JsonLines(_Base):
    """``--json``: one object per line on stdout: a start line, one per settled file, a summary."""

    def __init__(self, counters: Counters, stream: TextIO | None = None) -> None:
        super().__init__(counters)
        self.stream = stream or sys.stdout

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def emit(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(obj) + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        self.emit({"type": "message", "message": text})

    def file_done(self, relpath: str, status: FileStatus, detail: dict[str, object]) -> None:
        super().file_done(relpath, status, detail)
        self.emit({"type": "file", "path": relpath, "status": status.value, **detail})

    def summary(self, s: Summary) -> None:
        self.emit({"type": "summary", **s.as_dict()})
