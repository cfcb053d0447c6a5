"""Async clients against one private beanstalkd: beanproto_anyio (asyncio and trio),
aiostalk (asyncio only) and a minimal raw anyio stream client (each backend).

Starts beanstalkd on a free loopback port (stopped by its PID at the end) and, for
``--jobs`` jobs of ``--body`` bytes, times on one connection per client:

  put              sequential put (one round trip per job)
  put, metrics hooks  the same put by a beanproto client given ``metrics=MetricsHooks()``
                   (hooks that do nothing: the cost of measuring each command), in
                   the same turns as the others
  reserve+delete   sequential reserve-with-timeout 0 + delete (two round trips per job)
  put pipelined    beanproto ``put_many`` in batches of ``--batch`` vs the raw client
                   writing the same batches in one ``send`` and counting reply lines
  64 tasks put     one beanproto client shared by 64 tasks, each putting its share
                   sequentially (automatic pipelining) vs ``raw-shared``: the plain way
                   to share a raw connection (a send lock, one reader task waking each
                   waiter's ``anyio.Event``); vs ``raw-coalesced``: the least code that
                   shares one the way beanproto does (tasks' bytes coalesced into one
                   ``send``, the first free task reading for all; :class:`Coalesced`),
                   the ceiling for a shared anyio client; and vs the raw pipelined
                   client, which has no tasks to wake

The raw client is the floor of what anyio can do: ``raw-seq`` does one ``send`` and
one ``receive`` per command, ``raw-pipelined`` one ``send`` per batch. aiostalk
cannot be shared by tasks and does not pipeline, so it has no figures there.
Reported: ops/s (wall), client CPU µs per op (``time.process_time``), and ratios of
ops/s to the raw baseline of the same backend and kind, and to aiostalk; median of
``--reps`` runs, each backend in its own ``anyio.run`` per rep. The sequential phases
run in turns of ``--block`` jobs, the clients alternating block by block on their own
open connections (the order rotating from block to block), so the machine's drift
during a phase falls on all alike; each client's time is the sum of its blocks. The
pipelined and shared phases run once per client, who goes first rotating from rep to
rep. Below the table, beanproto_anyio's ratio to its baseline in each phase is also
given rep by rep: its spread, and in how many reps it reached the floor set for it.

    python bench/anyio_bench.py [--jobs 20000] [--body 100] [--reps 3] [--block 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
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
# (backend, client, phase) -> (wall seconds, client CPU seconds)
Results = dict[tuple[str, str, str], tuple[float, float]]


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


class _Slot:
    __slots__ = ("reply", "wakeup")

    def __init__(self) -> None:
        self.reply: int | None = None
        self.wakeup: anyio.Event | None = None


class Coalesced:
    """The least code that lets many tasks share one raw connection the way
    beanproto_anyio's multiplexer does: each task queues its bytes and its slot;
    the first to find nobody writing writes everything queued in one ``send``,
    the first to find nobody reading reads and fills the slots of the replies, in
    order, waking their tasks (``anyio.Event``); a task that got its reply hands
    the reading on to the longest-sleeping task still waiting. No validation, no
    typed events, no cancellation rules: the ceiling for a shared anyio client."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.out: list[bytes] = []
        self.owed: deque[_Slot] = deque()  # in wire order
        self.sleepers: deque[_Slot] = deque()
        self.writing = self.reading = False
        self.rest = b""

    async def put(self, cmd: bytes) -> int:
        slot = _Slot()
        self.owed.append(slot)
        self.out.append(cmd)
        if not self.writing:
            self.writing = True
            try:
                while self.out:
                    data = b"".join(self.out)
                    self.out.clear()
                    await self.stream.send(data)
            finally:
                self.writing = False
        while slot.reply is None:
            if self.reading:
                wakeup = slot.wakeup = anyio.Event()
                self.sleepers.append(slot)
                await wakeup.wait()
                continue
            self.reading = True
            try:
                lines = (self.rest + await self.stream.receive()).split(b"\r\n")
            finally:
                self.reading = False
            self.rest = lines.pop()
            for line in lines:
                if not line.startswith(b"INSERTED "):
                    raise RuntimeError(f"put: {line!r}")
                owner = self.owed.popleft()
                owner.reply = int(line[9:])
                if owner.wakeup is not None:
                    owner.wakeup.set()
        while self.sleepers and not self.reading:
            sleeper = self.sleepers.popleft()
            if sleeper.reply is None and sleeper.wakeup is not None:
                sleeper.wakeup.set()
                break
        return slot.reply


async def raw_coalesced(addr: tuple[str, int], body: bytes, n: int) -> None:
    """64 tasks sharing one raw connection through :class:`Coalesced`."""
    raw = await Raw.connect(addr, _tube())
    shared = Coalesced(raw.stream)
    cmd = PUT_FMT % (len(body), body)

    async def share(k: int) -> None:
        for _ in range(k):
            await shared.put(cmd)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(TASKS):
                tg.start_soon(share, n // TASKS + (1 if i < n % TASKS else 0))
    finally:
        await raw.stream.aclose()


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


async def _aio_put(c: Any, body: bytes, n: int) -> None:
    put = c.put
    for _ in range(n):
        await put(body)


async def _aio_consume(c: Any, n: int) -> None:
    reserve, delete = c.reserve, c.delete
    for _ in range(n):
        await delete(await reserve(timeout=0))


async def one_rep(
    addr: tuple[str, int],
    body: bytes,
    n: int,
    batch: int,
    block: int,
    rep: int,
    backend: str,
    results: Results,
) -> None:
    """One rep on one backend: every (client, phase) once.

    The sequential phases run in blocks of ``block`` jobs, the clients taking
    turns block by block (``block=0``: each client's ``n`` jobs in one go), so
    that the machine's drift over a phase falls on every client alike."""

    async def timed(client: str, phase: str, fn: Callable[[], Awaitable[Any]]) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        await fn()
        w1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = results.get((backend, client, phase), (0.0, 0.0))
        results[(backend, client, phase)] = (wall + w1 - w0, cpu + c1 - c0)

    # The connections stay open across the blocks and are closed, whatever happens.
    async with contextlib.AsyncExitStack() as stack:
        raw = await Raw.connect(addr, _tube())
        stack.push_async_callback(raw.stream.aclose)
        tube = _tube()
        bp = await stack.enter_async_context(beanproto_anyio.connect(addr, use=tube, watch=tube))
        bpm = await stack.enter_async_context(
            beanproto_anyio.connect(addr, use=_tube(), metrics=MetricsHooks())
        )
        # (client, row's phase, run k jobs); each client's reserve+delete takes
        # back, block for block, the jobs its put left in its own tube.
        sequential: dict[str, list[tuple[str, str, Callable[[int], Awaitable[Any]]]]] = {
            "put": [
                ("raw", "put", partial(raw.put, body)),
                ("beanproto_anyio", "put", partial(_bp_put, bp, body)),
                ("beanproto_anyio", "put, metrics hooks", partial(_bp_put, bpm, body)),
            ],
            "reserve+delete": [
                ("raw", "reserve+delete", raw.consume),
                ("beanproto_anyio", "reserve+delete", partial(_bp_consume, bp)),
            ],
        }
        if backend == "asyncio":
            import aiostalk

            t = _tube()
            aio = await stack.enter_async_context(
                aiostalk.Client(addr, encoding=None, use=t, watch=t)
            )
            sequential["put"].append(("aiostalk", "put", partial(_aio_put, aio, body)))
            sequential["reserve+delete"].append(
                ("aiostalk", "reserve+delete", partial(_aio_consume, aio))
            )
        sizes = [block] * (n // block) + ([n % block] if n % block else []) if block else [n]
        for runners in sequential.values():
            gc.collect()
            for i, size in enumerate(sizes):
                # Rotate who goes first, from block to block and from rep to rep.
                r = (i + rep) % len(runners)
                for client, phase, fn in runners[r:] + runners[:r]:
                    await timed(client, phase, partial(fn, size))

        async def long(client: str, phase: str, fn: Callable[[], Awaitable[Any]]) -> None:
            gc.collect()
            await timed(client, phase, fn)

        shared = f"{TASKS} tasks put"
        groups: list[list[tuple[str, str, Callable[[], Awaitable[Any]]]]] = [
            [
                ("raw", "put pipelined", lambda: raw.put_pipelined(body, n, batch)),
                ("beanproto_anyio", "put pipelined", lambda: _bp_put_many(bp, body, n, batch)),
            ],
            [
                ("raw-shared", shared, lambda: raw_shared(addr, body, n)),
                ("raw-coalesced", shared, lambda: raw_coalesced(addr, body, n)),
                ("beanproto_anyio", shared, lambda: _bp_shared(bp, body, n)),
            ],
        ]
        for group in groups:
            # One run each; who goes first rotates from rep to rep.
            r = rep % len(group)
            for client, phase, fn in group[r:] + group[:r]:
                await long(client, phase, fn)
        # Its sequential puts were all reserved and deleted; the pipelined and
        # shared puts are left.
        stats = await bp.stats_tube(tube)
        assert stats.current_jobs_ready == 2 * n, stats.current_jobs_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000, help="pipelined batch size")
    parser.add_argument(
        "--block",
        type=int,
        default=1000,
        help="jobs per turn in the sequential phases (0: each client's jobs in one go)",
    )
    args = parser.parse_args()
    body = b"x" * (args.body - 2) + b"\r\n"
    n = args.jobs
    reps: list[Results] = []
    proc, addr = start_server()
    try:
        for rep in range(args.reps):
            results: Results = {}
            for backend in ("asyncio", "trio"):
                anyio.run(
                    one_rep,
                    addr,
                    body,
                    n,
                    args.batch,
                    args.block,
                    rep,
                    backend,
                    results,
                    backend=backend,
                )
            reps.append(results)
    finally:
        os.kill(proc.pid, 15)
        proc.wait(5)
    ops = {key: statistics.median(n / r[key][0] for r in reps) for key in reps[0]}
    cpu = {key: statistics.median(r[key][1] / n * 1e6 for r in reps) for key in reps[0]}
    print(
        f"{n} jobs of {args.body} bytes, median of {args.reps} reps, "
        + (f"sequential phases in turns of {args.block} jobs, " if args.block else "")
        + f"Python {sys.version.split()[0]}, anyio {anyio_version()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| backend | phase | client | ops/s | CPU µs/op | × raw | × raw-shared "  # noqa: RUF001
        "| × raw-coalesced | × aiostalk |"  # noqa: RUF001
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    shared = f"{TASKS} tasks put"
    phases = ("put", "put, metrics hooks", "reserve+delete", "put pipelined", f"{TASKS} tasks put")
    raw_of = {"put": "put", "put, metrics hooks": "put", "reserve+delete": "reserve+delete"}
    for backend in ("asyncio", "trio"):
        for phase in phases:
            base_phase = raw_of.get(phase, "put pipelined")
            base = ops[(backend, "raw", base_phase)]
            for client in ("raw", "raw-shared", "raw-coalesced", "aiostalk", "beanproto_anyio"):
                key = (backend, client, phase)
                if key not in ops:
                    continue
                v = ops[key]
                name = client
                if client == "raw":
                    name = "raw-pipelined" if "pipelined" in phase else "raw-seq"
                aio = ops.get(("asyncio", "aiostalk", raw_of.get(phase, "put")))
                vs_aio = f"{v / aio:.2f}×" if aio and backend == "asyncio" else "—"  # noqa: RUF001
                vs_shared = vs_coalesced = "—"
                if phase == shared:
                    vs_shared = f"{v / ops[(backend, 'raw-shared', phase)]:.2f}×"  # noqa: RUF001
                    vs_coalesced = f"{v / ops[(backend, 'raw-coalesced', phase)]:.2f}×"  # noqa: RUF001
                print(
                    f"| {backend} | {phase} | {name} | {v:,.0f} | {cpu[key]:.1f} "
                    f"| {v / base:.2f}× | {vs_shared} | {vs_coalesced} | {vs_aio} |"  # noqa: RUF001
                )
    print(
        "\nbeanproto_anyio against its baseline rep by rep (both ran in the same rep, on "
        "the same server; the sequential phases in alternating turns):\n"
    )
    for backend in ("asyncio", "trio"):
        for phase, base, goal in (
            ("put", "raw", 0.9),
            ("reserve+delete", "raw", 0.9),
            ("put pipelined", "raw", 0.8),
            (shared, "raw-coalesced", 0.8),
            (shared, "raw", 0.8),
        ):
            print(_paired(backend, phase, base, goal, reps))


def _paired(backend: str, phase: str, base: str, goal: float, reps: list[Results]) -> str:
    """How the medians' ratio holds rep by rep: the spread of the per-rep ratios
    of ops/s (and in how many reps they reached ``goal``) and of client CPU per
    op, for one backend and phase, against the ``base`` client (for the shared
    phase, ``raw`` means the raw pipelined run)."""
    bp = (backend, "beanproto_anyio", phase)
    raw = (backend, base, phase if base != "raw" or phase in _SEQUENTIAL else "put pipelined")
    ops = sorted(r[raw][0] / r[bp][0] for r in reps)
    cpu = sorted(r[bp][1] / r[raw][1] for r in reps)
    met = sum(x >= goal for x in ops)
    name = "raw-pipelined" if raw[2] == "put pipelined" else "raw-seq" if base == "raw" else base
    return (
        f"- {backend} {phase} against {name}: ops/s {statistics.median(ops):.3f}× "  # noqa: RUF001
        f"(reps {ops[0]:.3f} to {ops[-1]:.3f}; at least {goal}× in {met} of {len(reps)}); "  # noqa: RUF001
        f"CPU per op {statistics.median(cpu):.3f}× ({cpu[0]:.3f} to {cpu[-1]:.3f})"  # noqa: RUF001
    )


_SEQUENTIAL = ("put", "reserve+delete")


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


if __name__ == "__main__":
    main()
