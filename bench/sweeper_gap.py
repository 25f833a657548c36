"""How long a job popped by an RQ 3 worker on several queues is "queued" in no queue (issue 13, item 12).

A worker listening on several queues pops with BLPOP (rq/queue.py ``dequeue_any``: the intermediate
list is used only with a single queue), and its forked work horse marks the job ``started``. This
script runs a real forking ``rq.Worker`` on Snapmatch's three queues, enqueues trivial jobs one at a
time, and polls the job's status and list membership to time the gap in which the sweeper could
not tell the job from a lost one.

    .venv/bin/python bench/sweeper_gap.py redis://127.0.0.1:6379/15 [jobs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import redis as redis_lib
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job

JOB_SECONDS = 0.2
QUEUES = ["selfies", "maintenance", "photos"]


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/15"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    r = redis_lib.Redis.from_url(url)
    r.flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--name", "gap-bench", *QUEUES],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        queue = Queue("photos", connection=r)
        intermediate = IntermediateQueue.get_intermediate_queue_key(queue.key)
        gaps = []
        for _ in range(count):
            job = queue.enqueue("time.sleep", JOB_SECONDS)
            popped_at = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pipe = r.pipeline(transaction=False)
                pipe.hget(Job.key_for(job.id), "status")
                pipe.lpos(queue.key, job.id)
                pipe.lpos(intermediate, job.id)
                status, in_queue, in_intermediate = pipe.execute()
                now = time.monotonic()
                if status == b"queued" and in_queue is None and in_intermediate is None:
                    popped_at = popped_at or now
                elif status != b"queued":
                    if popped_at is not None:
                        gaps.append((now - popped_at) * 1000)
                    break
            while Job.fetch(job.id, connection=r).get_status() not in ("finished", "failed"):
                time.sleep(0.01)
        print(f"jobs: {count}; seen queued in no list: {len(gaps)}")
        if gaps:
            print(
                f"gap ms: median {statistics.median(gaps):.1f}, max {max(gaps):.1f} (polling adds up to one round trip)"
            )
    finally:
        worker.terminate()
        worker.wait()
        r.flushdb()


if __name__ == "__main__":
    main()
