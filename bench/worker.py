"""Workers draining a tube on one private beanstalkd: jobs/s, and ratios.

Each rep fills a fresh tube with ``--jobs`` jobs (pipelined puts, not timed),
then times one consumer draining it with a no-op handler, until the tube is
empty:

  greenstalk loop        ``c.delete(c.reserve(timeout=0))`` until TIMED_OUT
                         (two round trips per job): what users write today
  beanproto_sync.Worker  ``concurrency=1``, ``run(burst=True)``: one round trip
                         per job (the delete and the next reserve in one write)
  beanproto_anyio.Worker ``concurrency=16`` (``--tasks``) on asyncio and on trio
  raw pipelined          a hand-written socket client writing ``--batch``
                         reserves in one write, then their deletes in one write:
                         the server's own limit for one connection

Reported: jobs/s (median of ``--reps``), and ratios to greenstalk's loop and to
the raw pipelined rate. Consumers run in turns within each rep, so the
machine's drift falls on all alike.

    python bench/worker.py [--jobs 20000] [--body 100] [--reps 5] [--tasks 16]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import anyio

import beanproto
import beanproto_anyio
import beanproto_sync
from _server import start_server

Address = tuple[str, int]


def fill(addr: Address, tube: str, body: bytes, n: int) -> None:
    with beanproto_sync.Client(addr, use=tube) as c:
        for start in range(0, n, 5000):
            c.put_many([body] * min(5000, n - start))


def ready(addr: Address, tube: str) -> int:
    with beanproto_sync.Client(addr) as c:
        try:
            return c.stats_tube(tube).current_jobs_ready
        except beanproto.NotFoundError:  # an empty tube nobody watches is gone
            return 0


def greenstalk_loop(addr: Address, tube: str, n: int, tasks: int) -> None:
    import greenstalk

    with greenstalk.Client(addr, encoding=None, watch=tube) as c:
        try:
            while True:
                c.delete(c.reserve(timeout=0))
        except greenstalk.TimedOutError:
            pass


def sync_worker(addr: Address, tube: str, n: int, tasks: int) -> None:
    worker = beanproto_sync.Worker(addr, concurrency=1)
    worker.add_handler(tube, lambda job: None)
    worker.run(burst=True)


def anyio_worker(backend: str) -> Callable[[Address, str, int, int], None]:
    def run(addr: Address, tube: str, n: int, tasks: int) -> None:
        async def nothing(job: beanproto.Job[bytes]) -> None:
            pass

        worker = beanproto_anyio.Worker(addr, concurrency=tasks)
        worker.add_handler(tube, nothing)
        anyio.run(functools.partial(worker.run, burst=True), backend=backend)

    return run


def raw_pipelined(batch: int) -> Callable[[Address, str, int, int], None]:
    def run(addr: Address, tube: str, n: int, tasks: int) -> None:
        sock = socket.create_connection(addr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()

        def line() -> bytes:
            while (end := buf.find(b"\r\n")) < 0:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed")
                buf.extend(data)
            out = bytes(buf[:end])
            del buf[: end + 2]
            return out

        t = tube.encode()
        sock.sendall(b"watch %s\r\nignore default\r\n" % t)
        line(), line()
        reserve = b"reserve-with-timeout 0\r\n" * batch
        done = False
        while not done:
            sock.sendall(reserve)
            ids = []
            for _ in range(batch):
                head = line()
                if head == b"TIMED_OUT":
                    done = True
                    continue
                _, job_id, size = head.split()
                while len(buf) < int(size) + 2:
                    buf.extend(sock.recv(65536))
                del buf[: int(size) + 2]
                ids.append(job_id)
            if ids:
                sock.sendall(b"".join(b"delete %s\r\n" % i for i in ids))
                for _ in ids:
                    if line() != b"DELETED":
                        raise RuntimeError("delete failed")
        sock.close()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=16, help="concurrency of the anyio worker")
    parser.add_argument("--batch", type=int, default=1000, help="raw pipelined batch size")
    args = parser.parse_args()
    consumers: dict[str, Callable[[Address, str, int, int], None]] = {
        "greenstalk loop": greenstalk_loop,
        "raw pipelined": raw_pipelined(args.batch),
        "beanproto_sync.Worker(concurrency=1)": sync_worker,
        f"beanproto_anyio.Worker(concurrency={args.tasks}) asyncio": anyio_worker("asyncio"),
        f"beanproto_anyio.Worker(concurrency={args.tasks}) trio": anyio_worker("trio"),
    }
    body = b"x" * args.body
    proc, addr = start_server()
    rates: dict[str, list[float]] = {name: [] for name in consumers}
    try:
        for _ in range(args.reps):
            for name, consume in consumers.items():
                tube = f"bench-{uuid.uuid4().hex[:12]}"
                fill(addr, tube, body, args.jobs)
                start = time.perf_counter()
                consume(addr, tube, args.jobs, args.tasks)
                elapsed = time.perf_counter() - start
                left = ready(addr, tube)
                if left:
                    raise RuntimeError(f"{name} left {left} jobs in {tube}")
                rates[name].append(args.jobs / elapsed)
    finally:
        os.kill(proc.pid, 15)
        proc.wait(5)
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(
        f"{args.jobs} jobs of {args.body} bytes drained per consumer, no-op handler, "
        f"median of {args.reps} reps, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    print("| consumer | jobs/s | × greenstalk loop | × raw pipelined |")  # noqa: RUF001
    print("|---|---:|---:|---:|")
    for name, rate in med.items():
        gs = rate / med["greenstalk loop"]
        raw = rate / med["raw pipelined"]
        print(f"| {name} | {rate:,.0f} | {gs:.2f}× | {raw:.2f}× |")  # noqa: RUF001


if __name__ == "__main__":
    main()
