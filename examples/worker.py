"""Reserve, process and delete jobs from a tube with the blocking client.

Stops after ``--count`` jobs, or when no job arrives for ``--idle`` seconds.

    python examples/worker.py --address 127.0.0.1:11300 --tube emails --count 100
"""

from __future__ import annotations

import argparse

import beanproto
from beanproto_sync import Client


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:11300", help="host:port")
    parser.add_argument("--tube", default="default")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--idle", type=float, default=5, help="give up after this many s")
    args = parser.parse_args()
    done = 0
    with Client(parse_address(args.address), encoding="utf-8", watch=args.tube, timeout=10) as c:
        while done < args.count:
            try:
                job = c.reserve(timeout=args.idle)
            except beanproto.TimedOutError:
                break
            try:
                _ = job.body.upper()  # the work
            except Exception:
                c.bury(job)  # keep it for a human to look at
                continue
            c.delete(job)
            done += 1
    print(f"processed {done} jobs from {args.tube!r}")


if __name__ == "__main__":
    main()
