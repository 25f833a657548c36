"""One watcher run: find photos in a folder, wait until each is complete, hash it, ask the server which
hashes it lacks, and upload those in parallel under one batch id, recording every acknowledged file.

Threads and hand-offs (each file is owned by exactly one stage at a time):
  watchdog observer / scans -> tracker (stability, hash, local state) -> checker (bulk hash check)
  -> uploaders (``concurrency`` threads, one keep-alive session each) -> done (state + display).
A failed request sends its files back to the checker after a shared backoff, so a request that may
have reached the server is never repeated blindly: the hash check decides.
"""

from __future__ import annotations

import mimetypes
import queue
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from snapmatch.watcher.client import (
    Api,
    ApiError,
    BatchCounts,
    TransientError,
    UploadItem,
    backoff_delay,
    error_of,
)
from snapmatch.watcher.files import (
    FileChanged,
    HashedFile,
    Observation,
    StabilityTracker,
    hash_file,
    is_candidate,
    is_hidden_by_attribute,
    looks_complete,
    read_unchanged,
    scan,
)
from snapmatch.watcher.state import FileStatus, Outcome, StateStore

DEFAULT_CONCURRENCY = 4
DEFAULT_FILES_PER_REQUEST = 4  # measured: bench/watcher_bench.py, BENCHMARKS.md
MAX_FILES_PER_REQUEST = 20
DEFAULT_MAX_REQUEST_BYTES = 48 * 1024 * 1024
# Per-file rejections that are about the server, not the file: retried after a backoff, never final.
TRANSIENT_REJECTIONS = frozenset({"storage_error", "database_error"})


@dataclass
class RunOptions:
    root: Path
    event_id: int
    watch: bool = True  # False: one-shot `upload`, ends when everything found at start is settled
    concurrency: int = DEFAULT_CONCURRENCY
    files_per_request: int = DEFAULT_FILES_PER_REQUEST
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    quiet_seconds: float = 2.0  # a file is complete once unchanged this long
    retry_for: float | None = None  # give up on a file failing this long (None: never)
    poll_seconds: float = 0.25
    rescan_seconds: float = 60.0  # watch mode: a full rescan catches events the OS dropped
    server_poll_seconds: float = 2.0


@dataclass
class Pending:
    relpath: str
    path: Path
    hashed: HashedFile
    failing_since: float | None = None


@dataclass
class Counters:
    """What the display shows; changed under ``lock`` by the stages."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: int = 0
    waiting: int = 0  # found, not yet complete
    sending: int = 0  # handed to the check/upload stages
    sent: int = 0
    duplicate: int = 0
    previously: int = 0  # settled by an earlier run (local state), nothing to do
    rejected: int = 0
    failed: int = 0
    bytes_sent: int = 0
    requests: int = 0
    started: float = field(default_factory=time.monotonic)
    first_send: float | None = None
    last_ack: float | None = None
    server: BatchCounts = field(default_factory=BatchCounts)
    notice: str | None = None  # e.g. "server unreachable: retrying in 3 s"
    notice_until: float = 0.0

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


Listener = Callable[[str, FileStatus, dict[str, object]], None]


class RetryGate:
    """A backoff shared by every stage: when the server fails, nobody calls it until the delay passes.
    The failure streak grows once per backoff period, not once per thread that noticed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._streak = 0

    def failed(self, retry_after: float | None) -> float:
        with self._lock:
            now = time.monotonic()
            if now >= self._until:
                self._streak += 1
                delay = backoff_delay(self._streak, retry_after)
            else:
                delay = max(self._until - now, retry_after or 0.0)
            self._until = max(self._until, now + delay)
            return max(delay, self._until - now)  # (now + delay) - now may round below delay

    def succeeded(self) -> None:
        with self._lock:
            self._streak = 0

    def wait(self, stop: threading.Event) -> bool:
        """Block until calls are allowed; False if asked to stop meanwhile."""
        while True:
            with self._lock:
                remaining = self._until - time.monotonic()
            if remaining <= 0:
                return not stop.is_set()
            if stop.wait(min(remaining, 0.2)):
                return False


class _FolderEvents(FileSystemEventHandler):
    def __init__(self, root: Path, sink: Callable[[Path], None], rescan_dir: Callable[[Path], None]) -> None:
        self.root = root
        self.sink = sink
        self.rescan_dir = rescan_dir

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        target = event.dest_path or event.src_path
        path = Path(target.decode() if isinstance(target, bytes) else target)
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self.rescan_dir(path)  # a folder copied or moved in: its files may have no events of their own
        elif is_candidate(self.root, path):
            self.sink(path)


class Watcher:
    def __init__(
        self, options: RunOptions, api: Api, store: StateStore, counters: Counters, listener: Listener
    ) -> None:
        self.options = options
        self.root = options.root
        self.api = api
        self.store = store
        self.counters = counters
        self.listener = listener
        self.batch_id = uuid.uuid4().hex  # one batch per run; the upload endpoint accepts a client's id
        self.stop_event = threading.Event()  # Ctrl-C: no new requests, in-flight ones finish
        self.finished = threading.Event()  # one-shot mode: everything found is settled
        self.fatal: ApiError | None = None
        self._dirty: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._check_q: queue.Queue[Pending | None] = queue.Queue()  # None: wake up, look at stop_event
        self._upload_q: queue.Queue[Pending | None] = queue.Queue()
        self._wake = threading.Event()  # the tracker looks again at once (a file was settled or changed)
        self._gate = RetryGate()
        self._lock = threading.Lock()
        self._handed: set[str] = set()  # relpaths owned by the check/upload stages
        self._seen: set[str] = set()
        self._settled: set[str] = set()  # settled by this run or found settled by an earlier one
        self._files_per_request = max(1, options.files_per_request)
        self._threads: list[threading.Thread] = []
        self._observer: Observer | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.options.watch:
            self._observer = Observer()
            handler = _FolderEvents(self.root, self._dirty.put, self._scan_into_dirty)
            self._observer.schedule(handler, str(self.root), recursive=True)
            self._observer.start()  # before the first scan, so nothing written meanwhile is missed
        self._spawn(self._track, "tracker")
        self._spawn(self._check, "checker")
        for i in range(max(1, self.options.concurrency)):
            self._spawn(self._upload, f"uploader-{i}")
        self._spawn(self._poll_server, "server-poller")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
        self._check_q.put(None)
        for _ in range(max(1, self.options.concurrency)):
            self._upload_q.put(None)

    def join(self) -> None:
        """Wait for every stage to end (in-flight uploads complete and are recorded)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        for thread in self._threads:
            thread.join()

    def _fail_fatally(self, exc: ApiError) -> None:
        self.fatal = self.fatal or exc
        self.stop()

    # ---- tracker: stability, hashing, local state ---------------------------------------------

    def _relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _scan_into_dirty(self, directory: Path) -> None:
        for path in scan(directory):
            if is_candidate(self.root, path):
                self._dirty.put(path)

    def _track(self) -> None:
        stability = StabilityTracker(self.options.quiet_seconds)
        tracked: dict[str, Path] = {}
        self._scan_into_dirty(self.root)
        last_scan = time.monotonic()
        try:
            while not self.stop_event.is_set():
                while True:
                    try:
                        path = self._dirty.get_nowait()
                    except queue.Empty:
                        break
                    relpath = self._relpath(path)
                    tracked[relpath] = path
                    if relpath not in self._seen:
                        self._seen.add(relpath)
                        self.counters.add(seen=1)
                for relpath, path in list(tracked.items()):
                    if self.stop_event.is_set():
                        break
                    with self._lock:
                        if relpath in self._handed:
                            continue  # being sent; looked at again once it is settled
                    if self._evaluate(relpath, path, stability):
                        del tracked[relpath]
                        stability.forget(relpath)
                with self._lock:
                    waiting = sum(1 for relpath in tracked if relpath not in self._handed)
                with self.counters.lock:
                    self.counters.waiting = waiting
                if not self.options.watch and not tracked and self._dirty.empty():
                    with self._lock:
                        if not self._handed:
                            self.finished.set()
                            self.stop()
                            return
                if self.options.watch and time.monotonic() - last_scan >= self.options.rescan_seconds:
                    self._scan_into_dirty(self.root)
                    last_scan = time.monotonic()
                self._wake.wait(self.options.poll_seconds)
                self._wake.clear()
        except Exception as exc:  # noqa: BLE001 - the run must end visibly, not hang without its tracker
            self._fail_fatally(ApiError(0, "watcher_error", f"The folder tracker stopped: {exc}"))

    def _evaluate(self, relpath: str, path: Path, stability: StabilityTracker) -> bool:
        """Move the file on if it is ready; True when the tracker is done with it (for now)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return True
        if is_hidden_by_attribute(st) or not stat.S_ISREG(st.st_mode):
            return True
        observation = Observation.of(st)
        record = self.store.get(relpath)
        if record is not None and record.observation == observation:
            if record.status.is_final:
                with self._lock:
                    first_time = relpath not in self._settled
                    self._settled.add(relpath)
                if first_time:
                    self.counters.add(previously=1)
                return True
            self._hand_over(Pending(relpath, path, record.hashed))  # uncertain: the hash check decides
            return True
        quiet = stability.quiet_for(relpath, observation, time.time())
        if quiet < self.options.quiet_seconds:
            return False
        try:
            complete = looks_complete(path, observation.size)
            if not stability.is_ready(quiet, observation.size, complete):
                return False
            hashed = hash_file(path)
        except FileChanged:
            return False
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._settle_unsent(relpath, "unreadable", f"The file cannot be read: {exc.strerror or exc}.")
            return True
        if Observation(hashed.size, hashed.mtime_ns) != observation:
            return False  # changed since the stat: the next poll restarts its clock
        self.store.record_hashed(relpath, hashed)
        self._hand_over(Pending(relpath, path, hashed))
        return True

    def _hand_over(self, pending: Pending) -> None:
        with self._lock:
            self._handed.add(pending.relpath)
        self.counters.add(sending=1)
        self._check_q.put(pending)

    def _release(self, pending: Pending) -> None:
        with self._lock:
            self._handed.discard(pending.relpath)
        self.counters.add(sending=-1)
        self._wake.set()

    def _back_to_tracker(self, pending: Pending) -> None:
        """The file changed or vanished after hashing: the tracker looks at it afresh."""
        self._dirty.put(pending.path)  # before the release, so a one-shot run never looks finished between
        self._release(pending)

    # ---- settling a file -----------------------------------------------------------------------

    def _settle(self, pendings: list[Pending], outcomes: list[Outcome]) -> None:
        self.store.record_outcomes(outcomes)
        now = time.monotonic()
        for pending, outcome in zip(pendings, outcomes, strict=True):
            counter = {
                FileStatus.SENT: "sent",
                FileStatus.DUPLICATE: "duplicate",
                FileStatus.REJECTED: "rejected",
                FileStatus.FAILED: "failed",
            }[outcome.status]
            self.counters.add(**{counter: 1})
            with self._lock:
                self._settled.add(pending.relpath)
            self._release(pending)
            detail: dict[str, object] = {"sha256": pending.hashed.sha256, "size": pending.hashed.size}
            if outcome.photo_id is not None:
                detail["photo_id"] = outcome.photo_id
            if outcome.error_code:
                detail["error"] = {"code": outcome.error_code, "message": outcome.error_message}
            self.listener(pending.relpath, outcome.status, detail)
        with self.counters.lock:
            self.counters.last_ack = now

    def _settle_unsent(self, relpath: str, code: str, message: str) -> None:
        """A file that failed before it had a hash (unreadable): reported, not recorded."""
        self.counters.add(failed=1)
        self.listener(relpath, FileStatus.FAILED, {"error": {"code": code, "message": message}})

    def _retry_later(self, pendings: list[Pending], error: TransientError) -> None:
        """Back off (shared), then route the files through the hash check again; or give up on them."""
        delay = self._gate.failed(error.retry_after)
        with self.counters.lock:
            self.counters.notice = f"{error.reason}: retrying in {delay:.0f} s"
            self.counters.notice_until = time.monotonic() + delay
        now = time.monotonic()
        give_up: list[Pending] = []
        for pending in pendings:
            pending.failing_since = pending.failing_since or now
            if self.options.retry_for is not None and now - pending.failing_since > self.options.retry_for:
                give_up.append(pending)
            else:
                self._check_q.put(pending)
        if give_up:
            message = f"Gave up after {self.options.retry_for:.0f} s: {error.reason}."
            self._settle(give_up, [Outcome(p.relpath, FileStatus.FAILED, None, "gave_up", message) for p in give_up])

    def _succeeded(self) -> None:
        self._gate.succeeded()
        with self.counters.lock:
            self.counters.notice = None

    # ---- checker: which hashes the server lacks --------------------------------------------------

    def _take(
        self, source: queue.Queue[Pending | None], limit: int, max_bytes: int | None, linger: float
    ) -> list[Pending]:
        try:
            first = source.get(timeout=1.0)
        except queue.Empty:
            return []
        if first is None:
            return []
        taken, size = [first], first.hashed.size
        deadline = time.monotonic() + linger
        while len(taken) < limit:
            try:
                item = source.get(timeout=max(0.0, deadline - time.monotonic())) if linger else source.get_nowait()
            except queue.Empty:
                break
            if item is None:
                source.put(None)  # for the next taker: it is a stop signal
                break
            if max_bytes is not None and size + item.hashed.size > max_bytes:
                source.put(item)
                break
            taken.append(item)
            size += item.hashed.size
        return taken

    def _check(self) -> None:
        while not self.stop_event.is_set():
            pendings = self._take(self._check_q, 500, None, linger=0.02)
            if not pendings:
                continue
            if not self._gate.wait(self.stop_event):
                return
            try:
                present = self.api.check(self.options.event_id, [p.hashed.sha256 for p in pendings])
            except TransientError as exc:
                self._retry_later(pendings, exc)
                continue
            except ApiError as exc:
                self._fail_fatally(exc)
                return
            self._succeeded()
            already = [p for p in pendings if p.hashed.sha256 in present]
            if already:
                self._settle(already, [Outcome(p.relpath, FileStatus.DUPLICATE) for p in already])
            for pending in pendings:
                if pending.hashed.sha256 not in present:
                    self._upload_q.put(pending)

    # ---- uploaders ---------------------------------------------------------------------------------

    def _upload(self) -> None:
        while not self.stop_event.is_set():
            pendings = self._take(self._upload_q, self._files_per_request, self.options.max_request_bytes, linger=0)
            if not pendings:
                continue
            if not self._gate.wait(self.stop_event):
                return
            items, ready = [], []
            for pending in pendings:
                try:
                    data = read_unchanged(pending.path, pending.hashed)
                except (FileChanged, FileNotFoundError):
                    self._back_to_tracker(pending)
                    continue
                except OSError as exc:
                    message = f"The file cannot be read: {exc.strerror or exc}."
                    self._settle([pending], [Outcome(pending.relpath, FileStatus.FAILED, None, "unreadable", message)])
                    continue
                content_type = mimetypes.guess_type(pending.path.name)[0] or "application/octet-stream"
                items.append(UploadItem(pending.path.name, data, content_type))
                ready.append(pending)
            if ready:
                self._send(ready, items)

    def _send(self, pendings: list[Pending], items: list[UploadItem]) -> None:
        self.store.mark_uploading([p.relpath for p in pendings], self.batch_id)
        with self.counters.lock:
            self.counters.first_send = self.counters.first_send or time.monotonic()
        try:
            response = self.api.upload(self.options.event_id, items, self.batch_id)
        except TransientError as exc:
            if exc.status == 429:
                # The server limits upload requests, not files: carry more files in each one.
                self._files_per_request = min(MAX_FILES_PER_REQUEST, self._files_per_request * 2)
            self._retry_later(pendings, exc)
            return
        except ApiError as exc:
            self._fail_fatally(exc)
            return
        self.counters.add(requests=1)
        if response.status_code == 202:
            self._succeeded()
            self._record_answer(pendings, items, response.json())
            return
        code, message = error_of(response)
        if response.status_code == 413 and len(pendings) > 1:
            # Too much in one request for this server: send fewer at a time from now on.
            self._files_per_request = max(1, len(pendings) // 2)
            for pending in pendings:
                self._upload_q.put(pending)
            return
        # The file itself refused (too large, wrong type): final. Anything else is ours to fix: the next run retries.
        refused = len(pendings) == 1 and response.status_code in (413, 415, 422)
        status = FileStatus.REJECTED if refused else FileStatus.FAILED
        self._settle(pendings, [Outcome(p.relpath, status, None, code, message) for p in pendings])

    def _record_answer(self, pendings: list[Pending], items: list[UploadItem], body: dict) -> None:
        answers = body.get("photos") or []
        settled: list[Pending] = []
        outcomes: list[Outcome] = []
        again: list[Pending] = []
        sent_bytes = 0
        for index, pending in enumerate(pendings):
            answer = answers[index] if index < len(answers) and isinstance(answers[index], dict) else {}
            status = answer.get("status")
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            photo_id = answer.get("photo_id") if isinstance(answer.get("photo_id"), int) else None
            if status == "queued":
                outcomes.append(Outcome(pending.relpath, FileStatus.SENT, photo_id))
                sent_bytes += len(items[index].data)
            elif status == "duplicate":
                outcomes.append(Outcome(pending.relpath, FileStatus.DUPLICATE, photo_id))
            elif status == "rejected" and error.get("code") in TRANSIENT_REJECTIONS:
                again.append(pending)  # the server's storage or database failed for this file: "upload it again"
                continue
            elif status == "rejected":
                outcomes.append(
                    Outcome(pending.relpath, FileStatus.REJECTED, None, error.get("code"), error.get("message"))
                )
            else:  # e.g. a per-file storage failure: nothing kept for it on the server; try again later
                again.append(pending)
                continue
            settled.append(pending)
        if settled:
            self._settle(settled, outcomes)
        self.counters.add(bytes_sent=sent_bytes)
        if again:
            self._retry_later(again, TransientError("the server could not store some files"))

    # ---- server side -------------------------------------------------------------------------------

    def _poll_server(self) -> None:
        # The batch endpoint lists every photo of the batch: ask less often as the batch grows.
        while not self.stop_event.wait(self.options.server_poll_seconds + self.counters.sent / 1000):
            self.refresh_server_counts()

    def refresh_server_counts(self) -> None:
        if self.counters.first_send is None:
            return
        try:
            counts = self.api.batch_counts(self.batch_id)
        except (TransientError, ApiError):
            return  # the display keeps the last known figures
        with self.counters.lock:
            self.counters.server = counts
