"""Async clients against one private beanstalkd: beanproto_anyio (asyncio and trio),
aiostalk (asyncio only) and a minimal raw anyio stream client (each backend).

Starts beanstalkd on a free loopback port (stopped by its PID at the end) and, for
``--jobs`` jobs of ``--body`` bytes, times on one connection per client:

  put              sequential put (one round trip per job)
  put, metrics hooks  the same put by a beanproto client given ``metrics=MetricsHooks()``
                   (hooks that do nothing: the cost of measuring each command)
  reserve+delete   sequential reserve-with-timeout 0 + delete (two round trips per job)
  put pipelined    beanproto ``put_many`` in batches of ``--batch`` vs the raw client
                   writing the same batches in one ``send`` and counting reply lines
  64 tasks put     one beanproto client shared by 64 tasks, each putting its share
                   sequentially (automatic pipelining) vs ``raw-shared``: the least a
                   connection shared by 64 tasks can do with anyio (a send lock, one
                   reader task waking each waiter's ``anyio.Event``), and vs the raw
                   pipelined client, which has no tasks to wake

The raw client is the floor of what anyio can do: ``raw-seq`` does one ``send`` and
one ``receive`` per command, ``raw-pipelined`` one ``send`` per batch. aiostalk
cannot be shared by tasks and does not pipeline, so it has no figures there.
Reported: ops/s (wall, median of ``--reps``) and ratios to the raw baseline of the
same backend and kind, and to aiostalk.

    python bench/anyio_bench.py [--jobs 20000] [--body 100] [--reps 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import beanproto_anyio
from _server import start_server
from beanproto.metrics import MetricsHooks

PUT_FMT = b"put 65536 0 60 %d\r\n%b\r\n"
TASKS = 64
Results = dict[tuple[str, str, str], float]  # (backend, client, phase) -> seconds


def _tube() -> str:
    return "bench-" + uuid.uuid4().hex[:8]


# -- the raw anyio client -------------------------------------------------------


class Raw:
    """The least an anyio client can do: bytes out, count bytes in."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream

    @classmethod
    async def connect(cls, addr: tuple[str, int], tube: str) -> Raw:
        stream = await anyio.connect_tcp(*addr)
        t = tube.encode()
        await stream.send(b"use %s\r\nwatch %s\r\nignore default\r\n" % (t, t))
        got = b""
        while got.count(b"\r\n") < 3:
            got += await stream.receive()
        return cls(stream)

    async def line(self, r: bytes) -> bytes:
        while not r.endswith(b"\r\n"):
            r += await self.stream.receive()
        return r

    async def put(self, body: bytes, n: int) -> list[int]:
        send, receive = self.stream.send, self.stream.receive
        cmd = PUT_FMT % (len(body), body)
        ids = []
        for _ in range(n):
            await send(cmd)
            r = await receive()
            if not r.endswith(b"\r\n"):
                r = await self.line(r)
            if not r.startswith(b"INSERTED "):
                raise RuntimeError(f"put: {r!r}")
            ids.append(int(r[9:-2]))
        return ids

    async def consume(self, n: int) -> None:
        send, receive = self.stream.send, self.stream.receive
        for _ in range(n):
            await send(b"reserve-with-timeout 0\r\n")
            r = await receive()
            i = r.find(b"\r\n")
            while i < 0 or len(r) < i + 4 + int(r[:i].split()[2]):
                r += await receive()
                i = r.find(b"\r\n")
            parts = r[:i].split()
            if parts[0] != b"RESERVED":
                raise RuntimeError(f"reserve: {r[:100]!r}")
            await send(b"delete %d\r\n" % int(parts[1]))
            if await self.line(await receive()) != b"DELETED\r\n":
                raise RuntimeError("delete")

    async def put_pipelined(self, body: bytes, n: int, batch: int) -> list[int]:
        ids: list[int] = []
        put = PUT_FMT % (len(body), body)
        done = 0
        async with anyio.create_task_group() as tg:
            while done < n:
                k = min(batch, n - done)
                # Write from a child task while reading, as back-pressure requires.
                tg.start_soon(self.stream.send, put * k)
                lines, chunks = 0, []
                while lines < k:
                    d = await self.stream.receive(256 * 1024)
                    lines += d.count(b"\n")
                    chunks.append(d)
                ids.extend(int(line[9:]) for line in b"".join(chunks).split(b"\r\n")[:-1])
                done += k
        return ids


async def raw_shared(addr: tuple[str, int], body: bytes, n: int) -> None:
    """64 tasks sharing one raw connection: each sends its put under a lock and
    sleeps on an ``anyio.Event`` until the one reader task hands it its reply."""
    raw = await Raw.connect(addr, _tube())
    stream = raw.stream
    cmd = PUT_FMT % (len(body), body)
    waiters: deque[anyio.Event] = deque()
    lock = anyio.Lock()
    left = [n]

    async def reader() -> None:
        buf = b""
        while left[0]:
            buf += await stream.receive()
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                if not line.startswith(b"INSERTED "):
                    raise RuntimeError(f"put: {line!r}")
                left[0] -= 1
                waiters.popleft().set()

    async def share(k: int) -> None:
        for _ in range(k):
            event = anyio.Event()
            async with lock:
                waiters.append(event)
                await stream.send(cmd)
            await event.wait()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for i in range(TASKS):
                tg.start_soon(share, n // TASKS + (1 if i < n % TASKS else 0))
    finally:
        await stream.aclose()


# -- one run per backend ----------------------------------------------------------


async def _bp_put(c: beanproto_anyio.Client[bytes], body: bytes, n: int) -> None:
    put = c.put
    for _ in range(n):
        await put(body)


async def _bp_consume(c: beanproto_anyio.Client[bytes], n: int) -> None:
    reserve, delete = c.reserve, c.delete
    for _ in range(n):
        await delete(await reserve(0))


async def _bp_put_many(c: beanproto_anyio.Client[bytes], body: bytes, n: int, batch: int) -> None:
    for start in range(0, n, batch):
        ids = await c.put_many([body] * min(batch, n - start))
        assert len(ids) == min(batch, n - start)


async def _bp_shared(c: beanproto_anyio.Client[bytes], body: bytes, n: int) -> None:
    async def share(k: int) -> None:
        put = c.put
        for _ in range(k):
            await put(body)

    async with anyio.create_task_group() as tg:
        for i in range(TASKS):
            tg.start_soon(share, n // TASKS + (1 if i < n % TASKS else 0))


async def _aiostalk(addr: tuple[str, int], body: bytes, n: int, timed: Any) -> None:
    import aiostalk

    tube = _tube()
    async with aiostalk.Client(addr, encoding=None, use=tube, watch=tube) as c:

        async def put() -> None:
            for _ in range(n):
                await c.put(body)

        async def consume() -> None:
            for _ in range(n):
                await c.delete(await c.reserve(timeout=0))

        await timed("aiostalk", "put", put)
        await timed("aiostalk", "reserve+delete", consume)


async def one_rep(
    addr: tuple[str, int], body: bytes, n: int, batch: int, backend: str, results: Results
) -> None:
    async def timed(client: str, phase: str, fn: Callable[[], Awaitable[Any]]) -> None:
        gc.collect()
        t0 = time.perf_counter()
        await fn()
        results[(backend, client, phase)] = time.perf_counter() - t0

    raw = await Raw.connect(addr, _tube())
    try:
        await timed("raw", "put", lambda: raw.put(body, n))
        await timed("raw", "reserve+delete", lambda: raw.consume(n))
        await timed("raw", "put pipelined", lambda: raw.put_pipelined(body, n, batch))
    finally:
        await raw.stream.aclose()
    await timed("raw-shared", f"{TASKS} tasks put", lambda: raw_shared(addr, body, n))

    tube = _tube()
    async with beanproto_anyio.connect(addr, use=tube, watch=tube) as c:
        await timed("beanproto_anyio", "put", lambda: _bp_put(c, body, n))
        await timed("beanproto_anyio", "reserve+delete", lambda: _bp_consume(c, n))
        await timed("beanproto_anyio", "put pipelined", lambda: _bp_put_many(c, body, n, batch))
        await timed("beanproto_anyio", f"{TASKS} tasks put", lambda: _bp_shared(c, body, n))
        stats = await c.stats_tube(tube)
        assert stats.current_jobs_ready == 2 * n, stats.current_jobs_ready
    async with beanproto_anyio.connect(addr, use=_tube(), metrics=MetricsHooks()) as c:
        await timed("beanproto_anyio", "put, metrics hooks", lambda: _bp_put(c, body, n))

    if backend == "asyncio":
        await _aiostalk(addr, body, n, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000, help="pipelined batch size")
    args = parser.parse_args()
    body = b"x" * (args.body - 2) + b"\r\n"
    n = args.jobs
    reps: list[Results] = []
    proc, addr = start_server()
    try:
        for _ in range(args.reps):
            results: Results = {}
            for backend in ("asyncio", "trio"):
                anyio.run(one_rep, addr, body, n, args.batch, backend, results, backend=backend)
            reps.append(results)
    finally:
        os.kill(proc.pid, 15)
        proc.wait(5)
    ops = {key: statistics.median(n / r[key] for r in reps) for key in reps[0]}
    print(
        f"{n} jobs of {args.body} bytes, median of {args.reps} reps, "
        f"Python {sys.version.split()[0]}, anyio {anyio_version()}, {os.cpu_count()} CPUs\n"
    )
    print("| backend | phase | client | ops/s | × raw | × raw-shared | × aiostalk |")  # noqa: RUF001
    print("|---|---|---|---:|---:|---:|---:|")
    shared = f"{TASKS} tasks put"
    phases = ("put", "put, metrics hooks", "reserve+delete", "put pipelined", f"{TASKS} tasks put")
    raw_of = {"put": "put", "put, metrics hooks": "put", "reserve+delete": "reserve+delete"}
    for backend in ("asyncio", "trio"):
        for phase in phases:
            base_phase = raw_of.get(phase, "put pipelined")
            base = ops[(backend, "raw", base_phase)]
            for client in ("raw", "raw-shared", "aiostalk", "beanproto_anyio"):
                key = (backend, client, phase)
                if key not in ops:
                    continue
                v = ops[key]
                name = client
                if client == "raw":
                    name = "raw-pipelined" if "pipelined" in phase else "raw-seq"
                aio = ops.get(("asyncio", "aiostalk", raw_of.get(phase, "put")))
                vs_aio = f"{v / aio:.2f}×" if aio and backend == "asyncio" else "—"  # noqa: RUF001
                vs_shared = "—"
                if phase == shared:
                    vs_shared = f"{v / ops[(backend, 'raw-shared', phase)]:.2f}×"  # noqa: RUF001
                print(
                    f"| {backend} | {phase} | {name} | {v:,.0f} | {v / base:.2f}× "  # noqa: RUF001
                    f"| {vs_shared} | {vs_aio} |"
                )


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


if __name__ == "__main__":
    main()
