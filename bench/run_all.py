"""Run every benchmark in turn and print its output (``make bench``).

Faces (ours vs the face_recognition CLI), RQ overhead per job, upload acknowledgement time, and the
provider limiter, live progress streams. Each script also runs alone: ``python bench/<name>.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "faces_bench.py",
    "matching_bench.py",
    "matching_http.py",
    "rq_overhead.py",
    "upload_ack.py",
    "watcher_bench.py",
    "limiter_bench.py",
    "admin_bench.py",
    "streams_bench.py",
    "gallery_bench.py",
]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"=== {name} ===", flush=True)
        t0 = time.monotonic()
        code = subprocess.call([sys.executable, str(path)], cwd=HERE.parent)
        print(f"=== {name}: exit {code}, {time.monotonic() - t0:.0f} s ===\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed or skipped: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
