"""Fault injection: a TCP proxy between the sync client and a private beanstalkd
cuts the connection after N bytes in either direction, delays, or stalls. Over
many seeded runs, the invariants:

* every ``put`` either returned an id that exists on the server (holding the
  body that was sent) or raised;
* no call returns a reply meant for another: each body encodes its sequence
  number, and every id returned is checked against the body through another
  connection; every job reserved or peeked carries the body of its id;
* every job reserved through a cut connection is back in the ready queue (or
  deleted) afterwards, with its priority unchanged;
* a call never takes longer than the client's timeout (plus a small slack), and
  once a connection is given up every later call raises BrokenConnectionError.

The same workload drives the sync client (its ``timeout``) and the anyio client
on asyncio and trio (each call in ``anyio.fail_after``). The anyio client may
stay in sync after a cancelled call (it drops the abandoned reply); then the
next call must get its own reply, or BrokenConnectionError.

And a server restart under a running producer and worker: both surface
BrokenConnectionError, and a new client works at once.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from robust_helpers import FaultProxy, Faults

import beanproto as bp
import beanproto_anyio

if sys.version_info < (3, 11):
    pass
from beanproto_sync import Client
from conftest import Server, beanstalkd_binary, launch, new_tube_name, start_server

SEEDS = range(50)
TIMEOUT = 0.4
SLACK = 0.35


@pytest.fixture(scope="module")
def backend() -> Iterator[Server]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(backend: Server) -> Iterator[FaultProxy]:
    with FaultProxy(backend.address) as p:
        yield p


@dataclass
class Run:
    seed: int
    tube: str
    truth: Client[bytes]  # a direct connection, for checking
    sent: dict[bytes, int] = field(default_factory=dict)  # body -> priority, every put tried
    ids: dict[int, bytes] = field(default_factory=dict)  # id -> body, for every id returned
    deleted: set[int] = field(default_factory=set)
    held: dict[int, int] = field(default_factory=dict)  # reserved by the client: id -> priority
    seq: int = 0

    def body(self) -> bytes:
        self.seq += 1
        return b"seed %d seq %d" % (self.seed, self.seq)

    def learn(self, job_id: int, body: bytes) -> None:
        """A reply tied ``job_id`` to ``body``: check it against every other."""
        assert body in self.sent, (job_id, body)
        known = self.ids.setdefault(job_id, body)
        assert known == body, f"job {job_id}: {body!r}, but earlier {known!r}"
        for other_id, other_body in self.ids.items():
            assert other_body != body or other_id == job_id, (job_id, other_id, body)


class Adapter:
    """One interface over both clients for the workload: ``await call(name, *args)``."""

    def __init__(self, client: Any, is_async: bool) -> None:
        self.client = client
        self.is_async = is_async

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            if not self.is_async:
                return getattr(self.client, name)(*args, **kwargs)
            with anyio.fail_after(TIMEOUT):
                return await getattr(self.client, name)(*args, **kwargs)
        finally:
            took = time.monotonic() - start
            assert took < TIMEOUT + SLACK, f"{name} took {took:.2f} s (timeout {TIMEOUT} s)"

    @property
    def closed(self) -> bool:
        return bool(self.client.closed)


CLEAN_ERRORS = (bp.BrokenConnectionError, bp.RemoteProtocolError, TimeoutError)


async def workload(run: Run, call: Adapter, rng: random.Random) -> BaseException | None:
    """Random operations until the connection fails; returns the failure."""
    for _ in range(40):
        op = rng.choice(["put", "put", "put_many", "reserve", "reserve", "peek", "finish", "stats"])
        try:
            if op == "put":
                body = run.body()
                pri = rng.randrange(0, 2**32)
                run.sent[body] = pri
                job_id = await call("put", body, priority=pri, ttr=60)
                assert isinstance(job_id, int)
                run.learn(job_id, body)
            elif op == "put_many":
                bodies = [run.body() for _ in range(rng.randrange(1, 30))]
                for b in bodies:
                    run.sent[b] = 7
                ids = await call("put_many", bodies, priority=7)
                for job_id, b in zip(ids, bodies, strict=True):
                    run.learn(job_id, b)
            elif op == "reserve":
                job = await call("reserve", 0)
                run.learn(job.id, job.body)
                run.held[job.id] = run.sent[job.body]
            elif op == "peek" and run.ids:
                job_id = rng.choice(sorted(run.ids))
                if job_id in run.deleted:
                    continue
                job = await call("peek", job_id)
                assert job.id == job_id
                run.learn(job.id, job.body)
            elif op == "finish" and run.held:
                job_id = rng.choice(sorted(run.held))
                if rng.random() < 0.5:
                    await call("delete", job_id)
                    run.deleted.add(job_id)
                else:
                    await call("release", job_id, priority=run.held[job_id])
                del run.held[job_id]
            elif op == "stats":
                assert isinstance(await call("stats"), bp.ServerStats)
        except bp.TimedOutError:
            pass  # reserve(timeout=0) with nothing ready
        except CLEAN_ERRORS as exc:
            return exc
    return None


async def after_failure(run: Run, call: Adapter) -> None:
    """Once a call failed: the sync client is closed for good; the anyio client
    is closed too, or in sync (the next call gets its own reply)."""
    if not call.is_async:
        assert call.closed
    body = run.body()
    run.sent[body] = 0
    try:
        job_id = await call("put", body, priority=0)
    except CLEAN_ERRORS as exc:
        assert call.is_async or isinstance(exc, bp.BrokenConnectionError), repr(exc)
        return
    assert call.is_async and not call.closed
    run.learn(job_id, body)


def check_server_side(run: Run) -> None:
    truth = run.truth
    # Every id a put returned exists (unless the client deleted it), with its body.
    for job_id, body in run.ids.items():
        if job_id in run.deleted:
            with pytest.raises(bp.NotFoundError):
                truth.peek(job_id)
            continue
        assert truth.peek(job_id).body == body
    # Every job the client held is back in ready, priority unchanged. The server
    # notices the closed connection asynchronously: poll briefly.
    deadline = time.monotonic() + 3
    for job_id, pri in run.held.items():
        while True:
            stats = truth.stats_job(job_id)
            if stats.state == "ready" or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert stats.state == "ready", (job_id, stats.state)
        assert stats.pri == pri
    # No job is left reserved by the closed client (including jobs reserved for a
    # call that was cancelled and never saw them).
    while True:
        try:
            reserved = truth.stats_tube(run.tube).current_jobs_reserved
        except bp.NotFoundError:
            reserved = 0
        if reserved == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert reserved == 0
    # Nothing but what was sent is in the tube; empty it for the next seed.
    while True:
        try:
            job = truth.reserve(timeout=0)
        except bp.TimedOutError:
            break
        assert job.body in run.sent
        truth.delete(job)


RUNS = [("sync", seed) for seed in SEEDS] + [
    (backend, seed) for backend in ("asyncio", "trio") for seed in SEEDS[::3]
]


@pytest.mark.parametrize(("kind", "seed"), RUNS, ids=[f"{k}-{s}" for k, s in RUNS])
def test_faults_keep_the_invariants(
    backend: Server, proxy: FaultProxy, kind: str, seed: int
) -> None:
    rng = random.Random(seed)
    tube = new_tube_name()
    faults = Faults.random(rng)
    proxy.next_faults = faults
    with Client(backend.address, use=tube, watch=tube, timeout=5) as truth:
        run = Run(seed, tube, truth)
        if kind == "sync":
            anyio.run(_sync_session, run, proxy, rng)
        else:
            anyio.run(_anyio_session, run, proxy, rng, backend=kind)
        proxy.kill_all()
        check_server_side(run)


async def _sync_session(run: Run, proxy: FaultProxy, rng: random.Random) -> None:
    start = time.monotonic()
    try:
        client = Client(proxy.address, use=run.tube, watch=run.tube, timeout=TIMEOUT)
    except CLEAN_ERRORS:
        assert time.monotonic() - start < TIMEOUT + SLACK
        return
    with client:
        call = Adapter(client, is_async=False)
        if await workload(run, call, rng) is not None:
            await after_failure(run, call)


async def _anyio_session(run: Run, proxy: FaultProxy, rng: random.Random) -> None:
    async with AsyncExitStack() as stack:
        try:
            with anyio.fail_after(TIMEOUT):
                client = await stack.enter_async_context(
                    beanproto_anyio.connect(proxy.address, use=run.tube, watch=run.tube)
                )
        except CLEAN_ERRORS:
            return
        call = Adapter(client, is_async=True)
        if await workload(run, call, rng) is not None:
            await after_failure(run, call)


def test_the_proxy_does_cut(backend: Server, proxy: FaultProxy) -> None:
    """The faults are real: a cut after 5 bytes up breaks the very first put."""
    tube = new_tube_name()
    proxy.next_faults = Faults()
    client = Client(proxy.address, use=tube, timeout=TIMEOUT)
    proxy.kill_all()
    with pytest.raises(bp.BrokenConnectionError):
        client.put(b"x")
    proxy.next_faults = Faults(stall_down_after=0)
    client = Client(proxy.address, timeout=TIMEOUT)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.stats()
    assert time.monotonic() - start < TIMEOUT + SLACK
    client.close()
    proxy.kill_all()


# -- server restart ----------------------------------------------------------------------


def _restart(server: Server) -> Server:
    port = server.port
    assert port is not None
    server.process.kill()
    server.stop()  # reaps it and closes its log
    deadline = time.monotonic() + 10
    while True:
        try:
            proc = launch([beanstalkd_binary(), "-l", "127.0.0.1", "-p", str(port)], server.address)
            return Server(proc, "127.0.0.1", port)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_server_restart_under_producer_and_worker() -> None:
    server = start_server()
    tube = new_tube_name()
    errors: dict[str, BaseException] = {}
    progress = {"put": 0, "done": 0}
    started = threading.Barrier(3)

    def producer() -> None:
        with Client(server.address, use=tube, timeout=2) as c:
            started.wait()
            try:
                while True:
                    c.put(b"job")
                    progress["put"] += 1
                    time.sleep(0.001)
            except BaseException as exc:
                errors["producer"] = exc

    def worker() -> None:
        with Client(server.address, watch=tube, timeout=2) as c:
            started.wait()
            try:
                while True:
                    try:
                        job = c.reserve(timeout=1)
                    except bp.TimedOutError:
                        continue
                    c.delete(job)
                    progress["done"] += 1
            except BaseException as exc:
                errors["worker"] = exc

    threads = [threading.Thread(target=f, daemon=True) for f in (producer, worker)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.3)
    assert progress["put"] > 0
    kill_time = time.monotonic()
    restarted = _restart(server)
    try:
        for t in threads:
            t.join(5)
            assert not t.is_alive()
        assert time.monotonic() - kill_time < 5
        assert set(errors) == {"producer", "worker"}
        for who, exc in errors.items():
            assert isinstance(exc, bp.BrokenConnectionError), (who, repr(exc))
        # A new client works at once.
        with Client(restarted.address, use=tube, watch=tube, timeout=2) as c:
            job_id = c.put(b"after the restart")
            assert c.reserve(timeout=0) == bp.Job(job_id, b"after the restart")
    finally:
        restarted.stop()
