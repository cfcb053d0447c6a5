"""Scaling over several servers: jobs/s with 1, 2 and 4 beanstalkd behind network latency.

On one machine the CPU, not the servers, is the limit; what a pool or a worker
over several servers is for is the latency of a network, which one connection
waits for and several wait for at once. So each of ``--servers`` private
beanstalkd (1, 2, 4) sits behind its own latency-injecting proxy
(``bench/proxy.py``, in a process of its own: ``--delay`` each way, 2 ms), and
every client talks to the proxies.

Consuming: each rep puts ``--jobs`` jobs spread evenly over the N servers
(directly, not through the proxies; not timed), then times a worker over the N
proxy addresses with one connection per server (``concurrency=1``, which is
per server) and a no-op handler, ``run(burst=True)``, until every tube is empty:

  beanproto_sync.Worker          one thread per server; one round trip per job
  beanproto_anyio.Worker         one task per server, asyncio

Producing: ``--put-jobs`` jobs put through a Pool over the N proxies with
``put_many`` in batches of ``--batch`` (each batch goes to one server, the next
round-robin, in one pipelined exchange):

  beanproto_sync.Pool, 1 thread            one batch at a time
  beanproto_sync.Pool, 1 thread per server N threads sharing the pool
  beanproto_anyio.Pool, 1 task             one batch at a time, asyncio
  beanproto_anyio.Pool, 1 task per server  N tasks sharing the pool, asyncio

A worker's run is timed whole, connecting included (it is part of ``run``); a
producing run from the pool's opening (timed apart, and reported below the table:
a producer keeps its pool) to the last batch's replies.

Reported: jobs/s (median of ``--reps``; the runs of one rep interleaved), the
client's CPU per job (``time.process_time``, every thread), and the ratio of
jobs/s to the same client with one server, against the goals: at least 1.7x
with 2 servers and 3.0x with 4. ``--quick`` is a smoke run (fewer jobs, one
rep).

    python bench/scaling.py [--jobs 1000] [--put-jobs 10000] [--batch 50] [--reps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import anyio

import beanproto
import beanproto_anyio
import beanproto_sync
from _server import start_server
from proxy import start_proxy, stop_proxy

Address = tuple[str, int]
#: A run: (direct addresses, proxy addresses, tube, jobs) -> the timing of its timed part.
Run = Callable[[list[Address], list[Address], str, int], "Timing"]

#: How long the pools took to open, by (client, servers): not in the jobs/s.
opening: dict[tuple[str, int], list[float]] = {}


class Timing:
    """Wall and CPU (this process, every thread) seconds, from start to :meth:`stop`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        return self


GOALS = {2: 1.7, 4: 3.0}


# -- consuming -----------------------------------------------------------------------


def fill(direct: list[Address], tube: str, body: bytes, n: int) -> None:
    """Put ``n`` jobs into ``tube``, spread evenly over the servers, directly."""
    for i, addr in enumerate(direct):
        share = n // len(direct) + (1 if i < n % len(direct) else 0)
        with beanproto_sync.Client(addr, use=tube) as c:
            for start in range(0, share, 5000):
                c.put_many([body] * min(5000, share - start))


def sync_worker(direct: list[Address], proxies: list[Address], tube: str, n: int) -> Timing:
    timing = Timing()
    worker = beanproto_sync.Worker(proxies, concurrency=1)
    worker.add_handler(tube, lambda job: None)
    worker.run(burst=True)
    return timing.stop()


def anyio_worker(direct: list[Address], proxies: list[Address], tube: str, n: int) -> Timing:
    async def nothing(job: beanproto.Job[bytes]) -> None:
        pass

    timing = Timing()
    worker = beanproto_anyio.Worker(proxies, concurrency=1)
    worker.add_handler(tube, nothing)
    anyio.run(functools.partial(worker.run, burst=True), backend="asyncio")
    return timing.stop()


# -- producing -----------------------------------------------------------------------


def _batches(n: int, size: int) -> list[int]:
    return [min(size, n - start) for start in range(0, n, size)]


def sync_pool(body: bytes, batch: int, per_server: bool) -> Run:
    def run(direct: list[Address], proxies: list[Address], tube: str, n: int) -> Timing:
        sizes = _batches(n, batch)
        threads = len(proxies) if per_server else 1
        start = time.perf_counter()
        with beanproto_sync.Pool(proxies, use=tube) as pool:
            opening.setdefault(("beanproto_sync.Pool", len(proxies)), []).append(
                time.perf_counter() - start
            )
            timing = Timing()

            def produce(mine: list[int]) -> None:
                for size in mine:
                    pool.put_many([body] * size)

            workers = [
                threading.Thread(target=produce, args=(sizes[i::threads],)) for i in range(threads)
            ]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            return timing.stop()

    return run


def anyio_pool(body: bytes, batch: int, per_server: bool) -> Run:
    def run(direct: list[Address], proxies: list[Address], tube: str, n: int) -> Timing:
        sizes = _batches(n, batch)
        tasks = len(proxies) if per_server else 1

        async def main() -> Timing:
            start = time.perf_counter()
            async with beanproto_anyio.Pool(proxies, use=tube) as pool:
                opening.setdefault(("beanproto_anyio.Pool", len(proxies)), []).append(
                    time.perf_counter() - start
                )
                timing = Timing()

                async def produce(mine: list[int]) -> None:
                    for size in mine:
                        await pool.put_many([body] * size)

                async with anyio.create_task_group() as tg:
                    for i in range(tasks):
                        tg.start_soon(produce, sizes[i::tasks])
                return timing.stop()

        return anyio.run(main, backend="asyncio")

    return run


# -- measuring -----------------------------------------------------------------------


def counts(direct: list[Address], tube: str) -> list[int]:
    """Ready jobs of ``tube`` per server."""
    out = []
    for addr in direct:
        with beanproto_sync.Client(addr) as c:
            try:
                out.append(c.stats_tube(tube).current_jobs_ready)
            except beanproto.NotFoundError:  # an empty tube nobody watches is gone
                out.append(0)
    return out


def round_trip(addr: Address, n: int = 100) -> float:
    """The median time of a one-line command's round trip to ``addr``, in seconds."""
    with socket.create_connection(addr) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(b"use default\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                got += sock.recv(64)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def servers(n: int, delay: float) -> Iterator[tuple[list[Address], list[Address]]]:
    """``n`` private beanstalkd and a proxy in front of each: their addresses."""
    procs = []
    proxies = []
    direct: list[Address] = []
    behind: list[Address] = []
    try:
        for _ in range(n):
            proc, addr = start_server()
            procs.append(proc)
            direct.append(addr)
            proxy, paddr = start_proxy(addr, delay)
            proxies.append(proxy)
            behind.append(paddr)
        yield direct, behind
    finally:
        for proxy in proxies:
            stop_proxy(proxy)
        for proc in procs:
            proc.terminate()
            proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per consuming run")
    parser.add_argument("--put-jobs", type=int, default=10_000, help="jobs per producing run")
    parser.add_argument("--batch", type=int, default=50, help="put_many batch size")
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.002, help="proxy delay each way (s)")
    parser.add_argument("--servers", default="1,2,4", help="server counts, the first is 1")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer jobs, 1 rep")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.put_jobs, args.reps = 200, 2000, 1
    ns = [int(n) for n in args.servers.split(",")]
    if ns[0] != 1:
        parser.error("--servers must start with 1 (the reference)")
    body = b"x" * args.body
    consumers: dict[str, Run] = {
        "beanproto_sync.Worker(concurrency=1)": sync_worker,
        "beanproto_anyio.Worker(concurrency=1) asyncio": anyio_worker,
    }
    producers: dict[str, Run] = {
        "beanproto_sync.Pool.put_many, 1 thread": sync_pool(body, args.batch, False),
        "beanproto_sync.Pool.put_many, 1 thread per server": sync_pool(body, args.batch, True),
        "beanproto_anyio.Pool.put_many, 1 task": anyio_pool(body, args.batch, False),
        "beanproto_anyio.Pool.put_many, 1 task per server": anyio_pool(body, args.batch, True),
    }
    rates: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    spread: dict[str, list[int]] = {}
    with servers(max(ns), args.delay) as (direct_all, proxies_all):
        rtt = round_trip(proxies_all[0])
        rtt_direct = round_trip(direct_all[0])
        for _ in range(args.reps):
            for n in ns:
                direct, proxies = direct_all[:n], proxies_all[:n]
                for name, run in {**consumers, **producers}.items():
                    tube = f"scaling-{uuid.uuid4().hex[:12]}"
                    consuming = name in consumers
                    jobs = args.jobs if consuming else args.put_jobs
                    if consuming:
                        fill(direct, tube, body, jobs)
                    timing = run(direct, proxies, tube, jobs)
                    left = counts(direct, tube)
                    if consuming and any(left):
                        raise RuntimeError(f"{name} left {left} jobs in {tube}")
                    if not consuming:
                        if sum(left) != jobs:
                            raise RuntimeError(f"{name} put {sum(left)} of {jobs} jobs")
                        spread[f"{name}, {n}"] = left
                    rates.setdefault((n, name), []).append(jobs / timing.wall)
                    cpu.setdefault((n, name), []).append(timing.cpu / jobs)
    med = {key: statistics.median(r) for key, r in rates.items()}
    print(
        f"Consuming {args.jobs} jobs, producing {args.put_jobs} (put_many batches of "
        f"{args.batch}), {args.body}-byte bodies; each server behind a proxy adding "
        f"{args.delay * 1e3:g} ms each way (a round trip {rtt * 1e3:.2f} ms, "
        f"{rtt_direct * 1e3:.2f} ms without); median of {args.reps} reps, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    counts_text = ", ".join(str(n) for n in ns[:-1]) + f" and {ns[-1]}"
    print(f"Clients over {counts_text} servers, each {args.delay * 1e3:g} ms away (each way)\n")
    print("| servers | client | jobs/s | CPU µs/job | × 1 server |")  # noqa: RUF001
    print("|---|---|---:|---:|---:|")
    for n in ns:
        for name in {**consumers, **producers}:
            rate = med[(n, name)]
            ratio = rate / med[(1, name)]
            us = statistics.median(cpu[(n, name)]) * 1e6
            label = "1 server" if n == 1 else f"{n} servers"
            print(f"| {label} | {name} | {rate:,.0f} | {us:.0f} | {ratio:.2f}× |")  # noqa: RUF001
    print()
    goals = ", ".join(f"{GOALS[n]}× with {n}" for n in ns if n in GOALS)  # noqa: RUF001
    print(f"Goals: {goals} servers.\n")
    for name in {**consumers, **producers}:
        verdicts = []
        for n in ns:
            if n in GOALS:
                ratio = med[(n, name)] / med[(1, name)]
                verdict = "met" if ratio >= GOALS[n] else "not met"
                verdicts.append(f"{n} servers {ratio:.2f}× ({verdict})")  # noqa: RUF001
        print(f"- {name}: " + "; ".join(verdicts))
    print()
    print(
        f"A connection that waits for each reply does at most {1 / rtt:,.0f} round trips/s "
        f"through a proxy. Jobs per server after the last rep's producing runs:\n"
    )
    for key, left in spread.items():
        if not key.endswith(", 1"):
            print(f"- {key} servers: {', '.join(str(c) for c in left)}")
    print("\nOpening a pool (connecting and `use` on each server; not timed above), median:\n")
    for (client, n), times in opening.items():
        label = "1 server" if n == 1 else f"{n} servers"
        print(f"- {client}, {label}: {statistics.median(times) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
