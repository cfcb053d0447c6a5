"""Reserve, process and delete jobs from a tube with ``beanproto_sync.Worker``.

The worker deletes a job whose handler returns, retries one whose handler
raises (with a growing delay) and buries it after a few attempts; a job whose
body is not UTF-8 is buried at once, never handed back to crash the next
worker. Stops once the tube has no ready job left (``run(burst=True)``).

    python examples/worker.py --address 127.0.0.1:11300 --tube emails
"""

from __future__ import annotations

import argparse
import logging
import threading

import beanproto
from beanproto_sync import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--address",
        default=None,
        help="host:port, beanstalk://host:port or unix:///path "
        "[default: $BEANSTALKD_URL, else 127.0.0.1:11300]",
    )
    parser.add_argument("--tube", default="default")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    done = 0
    lock = threading.Lock()  # handlers run in `concurrency` threads
    worker = Worker(args.address, concurrency=args.concurrency, encoding="utf-8")

    @worker.handler(args.tube)
    def work(job: beanproto.Job[str]) -> None:
        nonlocal done
        _ = job.body.upper()  # the work; raising here retries the job
        with lock:
            done += 1

    worker.run(burst=True)
    print(f"processed {done} jobs from {args.tube!r}")


if __name__ == "__main__":
    main()
