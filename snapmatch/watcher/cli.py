"""The ``snapmatch`` command: ``watch`` a folder, ``upload`` it once, or ``login`` to store a token.

Exit status: 0 everything found was settled (or Ctrl-C in watch mode with nothing failed),
1 some photo was rejected or failed, 2 the run could not start or was refused (usage, token, event, lock).
"""

from __future__ import annotations

import argparse
import getpass
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from snapmatch.watcher import config
from snapmatch.watcher.client import Api, ApiError, AuthError, TransientError
from snapmatch.watcher.display import JsonLines, LiveDisplay, Summary
from snapmatch.watcher.run import (
    DEFAULT_CONCURRENCY,
    DEFAULT_FILES_PER_REQUEST,
    MAX_FILES_PER_REQUEST,
    Counters,
    RunOptions,
    Watcher,
)
from snapmatch.watcher.state import FolderLock, FolderLocked, StateStore

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
UPLOAD_RETRY_FOR = 300.0


def _bounded(kind: type, low: float, high: float):  # type: ignore[no-untyped-def]
    def parse(text: str):  # type: ignore[no-untyped-def]
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snapmatch",
        description="Send event photos from a folder to a Snapmatch server, each exactly once.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server_help = (
        "the Snapmatch server, e.g. https://photos.example.com (default: $SNAPMATCH_SERVER, else the last login)"
    )
    sending = argparse.ArgumentParser(add_help=False)
    sending.add_argument("directory", type=Path, metavar="DIR", help="the folder of photos (subfolders included)")
    sending.add_argument("--event", "-e", type=_bounded(int, 1, 2**63 - 1), required=True, help="the event's id")
    sending.add_argument("--server", "-s", help=server_help)
    sending.add_argument("--token", help="API token (default: $SNAPMATCH_TOKEN, else the one `snapmatch login` stored)")
    sending.add_argument(
        "-c",
        "--concurrency",
        type=_bounded(int, 1, 64),
        default=DEFAULT_CONCURRENCY,
        help=f"uploads in parallel (default {DEFAULT_CONCURRENCY})",
    )
    sending.add_argument(
        "--files-per-request",
        type=_bounded(int, 1, MAX_FILES_PER_REQUEST),
        default=DEFAULT_FILES_PER_REQUEST,
        help=f"photos sent together in one request (default {DEFAULT_FILES_PER_REQUEST})",
    )
    sending.add_argument(
        "--quiet-seconds",
        type=_bounded(float, 0.1, 3600),
        default=2.0,
        help="a photo is complete once its size and time stay unchanged this long (default 2)",
    )
    sending.add_argument(
        "--retry-for",
        type=_bounded(float, 0, 7 * 86400),
        help="give up on a photo after this many seconds of failures "
        f"(default: watch never, upload {UPLOAD_RETRY_FOR:.0f})",
    )
    sending.add_argument("--json", action="store_true", help="one JSON object per line on stdout, for scripts")

    watch = commands.add_parser(
        "watch",
        parents=[sending],
        help="send the folder's photos now and every new one as it is complete, until Ctrl-C",
        description="Send what is in DIR and every photo that appears later, until Ctrl-C.",
    )
    watch.set_defaults(handler=run_sending, watch=True, wait=False)
    upload = commands.add_parser(
        "upload",
        parents=[sending],
        help="send the folder's photos once and exit",
        description="Send every photo in DIR that the server does not have, then exit.",
    )
    upload.add_argument("--wait", action="store_true", help="then wait until the server has processed them")
    upload.set_defaults(handler=run_sending, watch=False)

    login = commands.add_parser(
        "login",
        help="sign in and store an API token for the watcher",
        description="Ask for your email and password and store an API token (readable by you only).",
    )
    login.add_argument("--server", "-s", help=server_help)
    login.add_argument("--email", help="your account's email (asked when missing)")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (for scripts)"
    )
    login.add_argument("--name", help="a name for the token (default: this computer's name)")
    login.set_defaults(handler=run_login)
    return parser


def _server(args: argparse.Namespace, store: config.CredentialStore) -> str:
    chosen = args.server or os.environ.get("SNAPMATCH_SERVER") or store.default_server()
    if not chosen:
        raise config.ConfigError("Which server? Pass --server URL (or set SNAPMATCH_SERVER).")
    return config.normalize_server(chosen)


def _token(args: argparse.Namespace, server: str, store: config.CredentialStore) -> str:
    token = args.token or os.environ.get("SNAPMATCH_TOKEN")
    if not token:
        stored = store.get(server)
        token = stored.token if stored else None
    if not token:
        raise config.ConfigError(
            f"No API token for {server}: run `snapmatch login --server {server}` (or set SNAPMATCH_TOKEN)."
        )
    return token


def run_login(args: argparse.Namespace) -> int:
    store = config.CredentialStore()
    server = _server(args, store)
    email = args.email or input("Email: ").strip()
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else getpass.getpass("Password: ")
    name = args.name or f"snapmatch watcher on {platform.node() or 'this computer'}"
    try:
        answer = Api(server, None).create_token(email, password, name)
    except AuthError:
        print("Wrong email or password.", file=sys.stderr)
        return EXIT_REFUSED
    except TransientError as exc:
        print(f"Could not sign in: {exc.reason}. Try again in a moment.", file=sys.stderr)
        return EXIT_REFUSED
    except ApiError as exc:
        print(f"Could not sign in: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    token = answer.get("token")
    if not isinstance(token, str) or not token:
        print("The server's answer holds no token.", file=sys.stderr)
        return EXIT_REFUSED
    store.save(config.StoredToken(server, token, email, answer.get("id"), answer.get("expires_at")))
    expiry = f" (expires {answer['expires_at']})" if answer.get("expires_at") else ""
    print(f"Signed in to {server} as {email}; token saved in {store.path}{expiry}.")
    return EXIT_OK


def run_sending(args: argparse.Namespace) -> int:
    store = config.CredentialStore()
    server = _server(args, store)
    token = _token(args, server, store)
    root = args.directory.expanduser()
    if not root.is_dir():
        raise config.ConfigError(f"{root} is not a folder.")
    root = root.resolve()
    state = config.state_dir()
    lock = FolderLock(state / "locks", root)
    try:
        lock.acquire()
    except FolderLocked as exc:
        raise config.ConfigError(
            f"Another snapmatch watcher (pid {exc.holder_pid}) is already sending {root}; stop it first."
        ) from None
    try:
        return _send(args, server, token, root, StateStore(state / "state.sqlite3", server, args.event, root))
    finally:
        lock.release()


def _send(args: argparse.Namespace, server: str, token: str, root: Path, store: StateStore) -> int:
    retry_for = args.retry_for if args.retry_for is not None else (None if args.watch else UPLOAD_RETRY_FOR)
    options = RunOptions(
        root=root,
        event_id=args.event,
        watch=args.watch,
        concurrency=args.concurrency,
        files_per_request=args.files_per_request,
        quiet_seconds=args.quiet_seconds,
        retry_for=retry_for or None,
    )
    counters = Counters()
    verb = "Watching" if args.watch else "Uploading"
    display = (
        JsonLines(counters)
        if args.json
        else LiveDisplay(counters, f"{verb} {root} → event {args.event} on {server} (Ctrl-C to stop)")
    )
    api = Api(server, token)
    watcher = Watcher(options, api, store, counters, display.file_done)
    interrupted = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted:
            os._exit(130)  # second Ctrl-C: at once; the local state and the hash check cover the rest
        interrupted = True
        watcher.stop()
        display.message("Stopping after the uploads in flight (Ctrl-C again to quit at once)…")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with display:
            if args.json:
                display.emit(
                    {
                        "type": "start",
                        "folder": str(root),
                        "server": server,
                        "event_id": args.event,
                        "batch_id": watcher.batch_id,
                    }
                )
            watcher.start()
            while not (watcher.stop_event.is_set() or watcher.finished.is_set()):
                watcher.stop_event.wait(0.2)
            watcher.stop()
            watcher.join()
            if args.wait and watcher.fatal is None:
                _wait_processed(watcher, lambda: interrupted)
            watcher.refresh_server_counts()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
        api.close()
    summary = _summary(args, server, root, watcher, counters, display.problems, interrupted)
    display.summary(summary)
    if watcher.fatal is not None:
        return EXIT_REFUSED if watcher.fatal.status in (401, 403, 404) else EXIT_FAILED
    return EXIT_OK if summary.ok else EXIT_FAILED


def _wait_processed(watcher: Watcher, interrupted: Callable[[], bool]) -> None:
    """``upload --wait``: poll the batch until nothing in it is queued or processing (or Ctrl-C)."""
    while not interrupted():
        watcher.refresh_server_counts()
        if watcher.counters.first_send is None or watcher.counters.server.in_progress == 0:
            return
        time.sleep(1.0)


def _summary(args, server, root, watcher, counters, problems, interrupted) -> Summary:  # type: ignore[no-untyped-def]
    with counters.lock:
        end = time.monotonic()
        return Summary(
            command=args.command,
            folder=str(root),
            server=server,
            event_id=args.event,
            batch_id=watcher.batch_id,
            seen=counters.seen,
            sent=counters.sent,
            duplicate=counters.duplicate,
            previously=counters.previously,
            rejected=counters.rejected,
            failed=counters.failed,
            unsettled=counters.waiting + counters.sending,
            requests=counters.requests,
            megabytes=round(counters.bytes_sent / 1e6, 3),
            seconds=round(end - counters.started, 3),
            seconds_to_last_ack=round(counters.last_ack - counters.started, 3) if counters.last_ack else None,
            server_processed=counters.server.processed,
            server_failed=counters.server.failed,
            server_in_progress=counters.server.in_progress,
            interrupted=interrupted,
            error=watcher.fatal.message if watcher.fatal else None,
            problems=list(problems),
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except config.ConfigError as exc:
        print(f"snapmatch: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
