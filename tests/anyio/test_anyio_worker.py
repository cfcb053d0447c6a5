"""beanproto_anyio.Worker against a real beanstalkd, on asyncio and on trio; and the
multiplexer's inline exchange, which the worker's slots use for each job."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest
from anyio_helpers import anyio_backend, hooked  # noqa: F401

import beanproto as bp
import beanproto.worker
import beanproto_anyio
from beanproto.adapter import job_from_event
from beanproto_anyio import BuryJob, Client, RetryJob, Worker, _worker, connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio

LOGGER = "beanproto.worker"


@pytest.fixture
async def producer(server: Server, tube: str) -> AsyncIterator[Client[bytes]]:
    async with connect(server.address, use=tube, watch=tube) as c:
        yield c


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


async def burst(worker: Worker, timeout: float = 10) -> float:
    """Run ``worker`` in burst mode; return how long it took."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        await worker.run(burst=True)
    return time.monotonic() - start


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def gone(c: Client[Any], job_id: int) -> bool:
    try:
        await c.stats_job(job_id)
    except bp.NotFoundError:
        return True
    return False


async def only_the_producer(c: Client[Any], tube: str) -> bool:
    """Whether the producer is the only connection watching ``tube``."""
    return (await c.stats_tube(tube)).current_watching == 1


async def back(c: Client[Any], job_id: int) -> bp.JobStats:
    """The stats of a job given back by closing a connection, once the server
    has seen the close (it may read it a moment after the worker returned)."""
    with anyio.fail_after(5):
        while (stats := await c.stats_job(job_id)).state == "reserved":
            await anyio.sleep(0.01)
    return stats


class Tapped(anyio.abc.ByteStream):
    """A worker's stream: records what is sent, may rewrite what is received."""

    def __init__(self, inner: anyio.abc.ByteStream, wire: Wire) -> None:
        self.inner = inner
        self.wire = wire
        self.sends: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        for old, new in list(self.wire.rewrites.items()):
            if old in data:
                data = data.replace(old, new, 1)
                del self.wire.rewrites[old]
        for reply, delay in list(self.wire.delays.items()):
            if reply in data:
                del self.wire.delays[reply]
                await anyio.sleep(delay)
        return data

    async def send(self, item: bytes) -> None:
        self.sends.append(item)
        if self.wire.before_send is not None:
            self.wire.before_send(item)
        await self.inner.send(item)

    async def send_eof(self) -> None:  # pragma: no cover - the client never sends EOF
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class Wire:
    """Taps every TCP connection opened from now on (``anyio.connect_tcp``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams: list[Tapped] = []
        self.rewrites: dict[bytes, bytes] = {}  # each applied once
        self.delays: dict[bytes, float] = {}  # a reply held back this long, once
        self.before_send: Callable[[bytes], None] | None = None
        real = anyio.connect_tcp

        async def connect_tcp(*args: Any, **kwargs: Any) -> Tapped:
            stream = Tapped(await real(*args, **kwargs), self)
            self.streams.append(stream)
            return stream

        monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)


# -- outcomes ----------------------------------------------------------------------------


async def test_a_job_whose_handler_returns_is_deleted(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    ids = await producer.put_many([b"a", b"b", b"c"])
    seen: list[bp.Job[bytes]] = []
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        seen.append(job)

    await burst(worker)
    assert seen == [bp.Job(i, b, server.name) for i, b in zip(ids, [b"a", b"b", b"c"], strict=True)]
    for job_id in ids:
        assert await gone(producer, job_id)
    assert not worker.running


async def test_a_failing_job_is_released_with_its_priority_and_the_backoff(
    server: Server, tube: str, producer: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    job_id = await producer.put(b"x", priority=42)
    worker = Worker(server.address, retry_delay=3)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        raise ValueError("boom")

    for attempt, delay in [(1, 3), (2, 6)]:
        await burst(worker)  # the job is delayed: the tube has no ready job
        stats = await producer.stats_job(job_id)
        assert (stats.state, stats.pri, stats.delay) == ("delayed", 42, delay)
        assert (stats.reserves, stats.releases) == (attempt, attempt)
        await producer.kick_job(job_id)
    warnings = records(caplog, logging.WARNING)
    assert [r.getMessage() for r in warnings] == [
        f"job {job_id} (tube {tube}) failed, ValueError: boom (attempt 1 of 5, retry in 3 s)",
        f"job {job_id} (tube {tube}) failed, ValueError: boom (attempt 2 of 5, retry in 6 s)",
    ]
    assert all(r.exc_info is not None and r.exc_info[0] is ValueError for r in warnings)


async def test_a_job_failing_max_attempts_times_is_buried(
    server: Server, tube: str, producer: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    job_id = await producer.put(b"x", priority=9)
    calls = 0
    worker = Worker(server.address, max_attempts=2, retry_delay=0)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("still broken")

    await burst(worker)
    assert calls == 2
    stats = await producer.stats_job(job_id)
    assert (stats.state, stats.pri, stats.reserves, stats.buries) == ("buried", 9, 2, 1)
    [error] = records(caplog, logging.ERROR)
    assert error.getMessage() == (
        f"job {job_id} (tube {tube}) buried, RuntimeError: still broken (attempt 2 of 2)"
    )
    assert error.exc_info is not None and error.exc_info[0] is RuntimeError
    assert len(records(caplog, logging.WARNING)) == 1  # the first attempt


async def test_retry_job_and_bury_job(
    server: Server, tube: str, producer: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    retried = await producer.put(b"retry", priority=3)
    buried = await producer.put(b"bury", priority=4)
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        if job.body == b"retry":
            raise RetryJob(7, "later")
        raise BuryJob("bad input")

    await burst(worker)
    stats = await producer.stats_job(retried)
    assert (stats.state, stats.pri, stats.delay) == ("delayed", 3, 7)
    stats = await producer.stats_job(buried)
    assert (stats.state, stats.pri) == ("buried", 4)
    [info] = records(caplog, logging.INFO)
    assert info.getMessage().startswith(f"job {retried} (tube {tube}) retried, RetryJob: later")
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage() == f"job {buried} (tube {tube}) buried, BuryJob: bad input"


async def test_a_body_that_does_not_decode_is_buried(
    server: Server, tube: str, producer: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    bad = await producer.put(b"\xff\xfe", priority=11)
    good = await producer.put("héllo".encode())
    seen: list[bp.Job[str]] = []
    worker = Worker(server.address, encoding="utf-8")

    @worker.handler(tube)
    async def handle(job: bp.Job[str]) -> None:
        seen.append(job)

    await burst(worker)
    assert seen == [bp.Job(good, "héllo", server.name)]
    stats = await producer.stats_job(bad)
    assert (stats.state, stats.pri) == ("buried", 11)
    assert (await producer.peek(bad)).body == b"\xff\xfe"  # never lost
    [error] = records(caplog, logging.ERROR)
    assert error.getMessage().startswith(
        f"job {bad} (tube {tube}) buried: its body does not decode as utf-8 (UnicodeDecodeError: "
    )


async def test_a_body_that_does_not_load_is_buried(
    server: Server, tube: str, producer: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    bad = await producer.put(b"{not json", priority=12)
    good = await producer.put(b'{"to": "ann"}')
    seen: list[bp.Job[Any]] = []
    worker = Worker(server.address, serializer=json)

    @worker.handler(tube)
    async def handle(job: bp.Job[Any]) -> None:
        seen.append(job)

    await burst(worker)
    assert seen == [bp.Job(good, {"to": "ann"}, server.name)]
    stats = await producer.stats_job(bad)
    assert (stats.state, stats.pri) == ("buried", 12)
    assert (await producer.peek(bad)).body == b"{not json"
    [error] = records(caplog, logging.ERROR)
    assert error.getMessage().startswith(
        f"job {bad} (tube {tube}) buried: its body does not load with json (JSONDecodeError: "
    )


async def test_a_plain_function_runs_in_a_thread(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    job_id = await producer.put(b"x")
    threads: list[int] = []

    def handle(job: bp.Job[bytes]) -> None:
        time.sleep(0.05)  # blocks its thread, not the event loop
        threads.append(threading.get_ident())

    worker = Worker(server.address, handlers={tube: handle})
    await burst(worker)
    assert len(threads) == 1 and threads[0] != threading.get_ident()
    assert await gone(producer, job_id)


async def test_handlers_per_tube(server: Server, tube: str) -> None:
    tubes = [tube + "-a", tube + "-b", tube + "-c"]
    seen: list[tuple[str, bytes]] = []

    def recorder(name: str) -> Callable[[bp.Job[bytes]], Awaitable[None]]:
        async def handle(job: bp.Job[bytes]) -> None:
            seen.append((name, job.body))

        return handle

    shared = recorder("shared")
    async with connect(server.address) as c:
        for t in tubes:
            await c.use(t)
            await c.put_many([t.encode()] * 3)
        # Different handlers: each job costs a stats-job, to learn its tube.
        before = (await c.stats()).cmd_stats_job
        worker = Worker(server.address, concurrency=2)
        worker.add_handler(tubes[0], recorder("a"))
        worker.add_handler(tubes[1], shared)
        worker.add_handler(tubes[2], shared)
        await burst(worker)
        assert (await c.stats()).cmd_stats_job - before == 9
        assert sorted(seen) == sorted(
            [("a", tubes[0].encode())] * 3
            + [("shared", tubes[1].encode())] * 3
            + [("shared", tubes[2].encode())] * 3
        )
        # One handler for every tube: no stats-job.
        seen.clear()
        for t in tubes:
            await c.use(t)
            await c.put(t.encode())
        before = (await c.stats()).cmd_stats_job
        worker = Worker(server.address, handlers=dict.fromkeys(tubes, shared))
        await burst(worker)
        assert (await c.stats()).cmd_stats_job == before
        assert sorted(seen) == sorted(("shared", t.encode()) for t in tubes)


async def test_ten_thousand_jobs_through_sixteen_slots(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    ids = await producer.put_many([b"%d" % i for i in range(10_000)])
    handled: Counter[int] = Counter()
    worker = Worker(server.address, concurrency=16)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        assert job.body == b"%d" % (job.id - ids[0])
        handled[job.id] += 1

    await burst(worker, timeout=30)
    assert handled == Counter(ids)
    stats = await producer.stats_tube(tube)
    assert (stats.current_jobs_ready, stats.current_jobs_reserved) == (0, 0)
    await eventually(lambda: only_the_producer(producer, tube))  # every slot closed


async def test_burst_waits_for_running_handlers(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    # One slot's handler runs, and puts another job, while the other slot finds
    # the tube empty: that slot does not exit while a handler runs.
    await producer.put(b"first")
    seen: list[bytes] = []
    worker = Worker(server.address, concurrency=2)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        seen.append(job.body)
        if job.body == b"first":
            await anyio.sleep(0.3)
            await producer.put(b"second")

    await burst(worker)
    assert seen == [b"first", b"second"]
    assert (await producer.stats_tube(tube)).current_jobs_ready == 0


async def test_one_write_per_job(
    server: Server, tube: str, producer: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await producer.put_many([b"x"] * 50)
    wire = Wire(monkeypatch)
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        pass

    await burst(worker)
    [stream] = wire.streams
    setup, first, *steady, quit = stream.sends
    assert setup == b"watch %s\r\nignore default\r\n" % tube.encode()
    assert first == b"reserve-with-timeout 0\r\n"
    assert steady == [b"delete %d\r\nreserve-with-timeout 0\r\n" % i for i in ids]
    assert quit == b"quit\r\n"


# -- long jobs ---------------------------------------------------------------------------


async def test_a_long_handler_keeps_its_job(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    # A 6 s handler on a ttr=2 job, with two workers on the tube: the job is
    # touched in time, so the other worker never receives it.
    timeouts = (await producer.stats()).job_timeouts
    job_id = await producer.put(b"long", ttr=2)
    handled: list[int] = []
    during: list[bp.JobStats] = []

    async def handle(job: bp.Job[bytes]) -> None:
        handled.append(job.id)
        await anyio.sleep(6)
        during.append(await producer.stats_job(job.id))

    workers = [Worker(server.address, handlers={tube: handle}) for _ in range(2)]
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(w.run)
            await eventually(lambda: gone(producer, job_id), timeout=12)
            for w in workers:
                w.stop()
    assert handled == [job_id]
    [stats] = during
    assert (stats.state, stats.timeouts, stats.reserves) == ("reserved", 0, 1)
    assert (await producer.stats()).job_timeouts == timeouts


def lie_once(monkeypatch: pytest.MonkeyPatch, method: str, job_id: int) -> None:
    """The next call of ``Client.<method>`` for ``job_id`` raises NotFoundError
    without asking the server (as if the job's TTR had run out)."""
    real = getattr(Client, method)
    lies = [job_id]

    async def lying(self: Client[Any], job: Any) -> Any:
        if lies and job == lies[0]:
            lies.pop()
            await anyio.sleep(0)
            raise bp.NotFoundError("NOT_FOUND")
        return await real(self, job)

    monkeypatch.setattr(Client, method, lying)


@pytest.mark.parametrize("answered", ["touch", "bury"])
async def test_a_lost_reservation_is_logged(
    server: Server,
    tube: str,
    producer: Client[bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    answered: str,
) -> None:
    # A touch, or the bury at the end, is answered NOT_FOUND: the job's TTR ran
    # out meanwhile. One line, once per job. (beanstalkd may be late to time a
    # job out, so the answers are made up here.)
    monkeypatch.setattr(beanproto.worker, "TOUCH_CHECK_AFTER", 0.05)
    job_id = await producer.put(b"x", ttr=1)
    wire = Wire(monkeypatch)
    lie_once(monkeypatch, "touch", job_id)
    if answered == "bury":
        wire.rewrites[b"BURIED\r\n"] = b"NOT_FOUND\r\n"
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        await anyio.sleep(0.3)  # checked, then touched (a ttr of 1 s is due at once)
        raise BuryJob

    await burst(worker)
    assert (await producer.stats_job(job_id)).state == "buried"
    [lost] = [r for r in records(caplog, logging.WARNING) if "lost" in r.getMessage()]
    assert lost.getMessage() == (
        f"job {job_id} (tube {tube}): its reservation was lost (touch answered NOT_FOUND)"
    )


async def test_a_finish_answered_not_found_is_logged(
    server: Server,
    tube: str,
    producer: Client[bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = await producer.put(b"x")
    wire = Wire(monkeypatch)
    wire.rewrites[b"BURIED\r\n"] = b"NOT_FOUND\r\n"
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        raise BuryJob

    await burst(worker)
    assert (await producer.stats_job(job_id)).state == "buried"
    assert records(caplog, logging.WARNING)[-1].getMessage() == (
        f"job {job_id} (tube {tube}): its reservation was lost (bury answered NOT_FOUND)"
    )


async def test_a_failed_job_whose_stats_job_is_not_found(
    server: Server,
    tube: str,
    producer: Client[bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing is sent for the job (it is not ours): here it is, and it goes
    # back with the connection. (The handler stops the worker, too.)
    job_id = await producer.put(b"x", priority=3)
    lie_once(monkeypatch, "stats_job", job_id)
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        worker.stop()
        raise ValueError

    with anyio.fail_after(5):
        await worker.run()
    [lost] = records(caplog, logging.WARNING)
    assert lost.getMessage() == (
        f"job {job_id} (tube {tube}): its reservation was lost (stats-job answered NOT_FOUND)"
    )
    stats = await back(producer, job_id)
    assert (stats.state, stats.pri, stats.releases) == ("ready", 3, 0)


@pytest.mark.parametrize("undecodable", [False, True])
async def test_stats_job_not_found_after_a_reserve(
    server: Server,
    tube: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    undecodable: bool,
) -> None:
    # The stats-job asked right after a reserve (the tube of a job, or the
    # priority of a job that does not decode) says NOT_FOUND, which only a
    # job whose TTR ran out can: the job is left alone. Here the job is still
    # ours, so the slot's next reserves are answered DEADLINE_SOON until the
    # TTR runs out and the job comes back.
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    body = b"\xff" if undecodable else b"x"
    async with connect(server.address, use=tube) as c:
        job_id = await c.put(body, ttr=1)
    lie_once(monkeypatch, "stats_job", job_id)
    seen: list[int] = []

    async def handle(job: bp.Job[Any]) -> None:
        seen.append(job.id)

    async def other(job: bp.Job[Any]) -> None:  # pragma: no cover - its tube is empty
        pass

    worker = Worker(
        server.address,
        encoding="utf-8" if undecodable else None,
        handlers={tube: handle, tube + "-other": other},
    )
    await burst(worker)
    assert seen == ([] if undecodable else [job_id])
    warnings = [r.getMessage() for r in records(caplog, logging.WARNING)]
    assert warnings[0] == (
        f"job {job_id} (tube {tube} or {tube}-other): its reservation was lost "
        "(stats-job answered NOT_FOUND)"
    )
    assert any("DEADLINE_SOON" in r.getMessage() for r in records(caplog, logging.DEBUG))
    async with connect(server.address, use=tube) as c:
        if undecodable:
            assert (await c.stats_job(job_id)).state == "buried"
        else:
            assert await gone(c, job_id)


# -- stopping ----------------------------------------------------------------------------


async def test_stop_before_run(server: Server, tube: str) -> None:
    worker = Worker(server.address, handlers={tube: lambda job: None})
    worker.stop()
    with anyio.fail_after(1):
        await worker.run()
    assert not worker.running


async def test_stop_while_idle_returns_at_once(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    worker = Worker(server.address, concurrency=3, handlers={tube: lambda job: None})

    async def waiting() -> bool:
        return (await producer.stats_tube(tube)).current_waiting == 3

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await eventually(waiting)
            assert worker.running
            start = time.monotonic()
            worker.stop()
        assert time.monotonic() - start < 0.5
    assert not worker.running
    await eventually(lambda: only_the_producer(producer, tube))
    await producer.put(b"after")  # no slot took it
    assert (await producer.stats_tube(tube)).current_jobs_ready == 1


@pytest.mark.parametrize("coroutine", [True, False])
async def test_stop_lets_a_running_handler_finish(
    server: Server, tube: str, producer: Client[bytes], coroutine: bool
) -> None:
    job_id = await producer.put(b"x")
    started = threading.Event()
    finished: list[int] = []

    async def handle_async(job: bp.Job[bytes]) -> None:
        started.set()
        await anyio.sleep(0.5)
        finished.append(job.id)

    def handle_sync(job: bp.Job[bytes]) -> None:
        started.set()
        time.sleep(0.5)
        finished.append(job.id)

    handler = handle_async if coroutine else handle_sync
    worker = Worker(server.address, concurrency=2, grace=5, handlers={tube: handler})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            while not started.is_set():
                await anyio.sleep(0.01)
            start = time.monotonic()
            worker.stop()
        assert 0.3 < time.monotonic() - start < 2
    assert finished == [job_id]
    assert await gone(producer, job_id)
    await producer.put(b"after")
    assert (await producer.stats_tube(tube)).current_jobs_ready == 1


@pytest.mark.parametrize("coroutine", [True, False])
async def test_a_handler_still_running_after_the_grace_gives_its_job_back(
    server: Server,
    tube: str,
    producer: Client[bytes],
    caplog: pytest.LogCaptureFixture,
    coroutine: bool,
) -> None:
    job_id = await producer.put(b"x", priority=5)
    started = threading.Event()
    release = threading.Event()  # ends the plain function's thread after the test

    async def handle_async(job: bp.Job[bytes]) -> None:
        started.set()
        await anyio.sleep(30)

    def handle_sync(job: bp.Job[bytes]) -> None:
        started.set()
        release.wait(30)

    handler = handle_async if coroutine else handle_sync
    worker = Worker(server.address, handlers={tube: handler})
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                while not started.is_set():
                    await anyio.sleep(0.01)
                start = time.monotonic()
                worker.stop(grace=0.2)
            assert 0.15 < time.monotonic() - start < 1.5
    finally:
        release.set()
    stats = await back(producer, job_id)
    assert (stats.state, stats.pri, stats.reserves, stats.releases) == ("ready", 5, 1, 0)
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f"job {job_id} (tube {tube}) given back: its handler was still running "
        "when the grace period ended"
    )


async def test_a_second_stop_with_a_shorter_grace_wins(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    job_id = await producer.put(b"x")
    started = anyio.Event()

    async def handle(job: bp.Job[bytes]) -> None:
        started.set()
        await anyio.sleep(30)

    worker = Worker(server.address, handlers={tube: handle})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            worker.stop()  # 30 s
            worker.stop(grace=10)
            worker.stop(grace=0)
    assert (await back(producer, job_id)).state == "ready"


async def test_stop_while_a_finish_is_answered(
    server: Server, tube: str, producer: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # stop() comes as the slot writes a job's delete and its next reserve: the
    # reserve is given up only once the delete was answered (the monitor sees to
    # it), so the job is not handled twice.
    job_id = await producer.put(b"x")
    wire = Wire(monkeypatch)
    worker = Worker(server.address, handlers={tube: lambda job: None})

    def stop_on_delete(data: bytes) -> None:
        if data.startswith(b"delete"):
            worker.stop()

    wire.before_send = stop_on_delete
    wire.delays[b"DELETED\r\n"] = 0.3  # the monitor sees the slot wait for it
    with anyio.fail_after(5):
        start = time.monotonic()
        await worker.run()
        assert time.monotonic() - start < 1
    assert await gone(producer, job_id)
    [stream] = wire.streams
    assert stream.sends[-1] == b"delete %d\r\nreserve\r\n" % job_id  # no quit: closed


async def test_a_job_reserved_as_the_worker_stops_goes_back(
    server: Server, tube: str, producer: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = await producer.put_many([b"1", b"2"], priority=6)
    wire = Wire(monkeypatch)
    seen: list[int] = []
    worker = Worker(server.address)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        seen.append(job.id)

    def stop_on_delete(data: bytes) -> None:
        if data.startswith(b"delete"):
            worker.stop()

    wire.before_send = stop_on_delete
    with anyio.fail_after(5):
        await worker.run()
    assert seen == [first]
    assert await gone(producer, first)
    stats = await back(producer, second)
    assert (stats.state, stats.pri, stats.reserves) == ("ready", 6, 1)


async def test_cancelling_run_gives_every_job_back(
    server: Server, tube: str, producer: Client[bytes]
) -> None:
    ids = await producer.put_many([b"1", b"2"], priority=8)
    started = 0

    async def handle(job: bp.Job[bytes]) -> None:
        nonlocal started
        started += 1
        await anyio.sleep(30)

    def blocking(job: bp.Job[bytes]) -> None:  # pragma: no cover - never reserved
        pass

    worker = Worker(server.address, concurrency=3, handlers={tube: handle})
    idle = Worker(server.address, handlers={tube + "-idle": blocking})
    tasks = len(anyio.get_running_tasks())
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                tg.start_soon(idle.run)
                while started < 2:
                    await anyio.sleep(0.01)
                scope.cancel()
        assert scope.cancelled_caught
    assert len(anyio.get_running_tasks()) == tasks
    assert not worker.running and not idle.running
    for job_id in ids:
        # (Reserved again, maybe, by the idle slot before its connection closed.)
        stats = await back(producer, job_id)
        assert (stats.state, stats.pri, stats.releases) == ("ready", 8, 0)
    await eventually(lambda: only_the_producer(producer, tube))


@pytest.mark.parametrize(
    ("error", "coroutine"),
    [(KeyboardInterrupt, True), (SystemExit, True), (KeyboardInterrupt, False)],
)
async def test_a_handler_raising_keyboard_interrupt(
    server: Server,
    tube: str,
    producer: Client[bytes],
    caplog: pytest.LogCaptureFixture,
    error: type[BaseException],
    coroutine: bool,
) -> None:
    # The job goes back at once (priority kept, no delay); the other slot's
    # handler gets its grace and finishes; then run() raises the exception
    # itself, not inside an exception group.
    interrupted = await producer.put(b"interrupt", priority=5)
    other = await producer.put(b"other", priority=6)
    other_started = threading.Event()

    async def handle_async(job: bp.Job[bytes]) -> None:
        if job.body == b"other":
            other_started.set()
            await anyio.sleep(0.3)
            return
        while not other_started.is_set():
            await anyio.sleep(0.01)
        raise error

    def handle_sync(job: bp.Job[bytes]) -> None:
        if job.body == b"other":
            other_started.set()
            time.sleep(0.3)
            return
        other_started.wait(5)
        raise error

    handler = handle_async if coroutine else handle_sync
    worker = Worker(server.address, concurrency=2, handlers={tube: handler})
    with anyio.fail_after(5), pytest.raises(error) as info:
        await worker.run()
    assert type(info.value) is error
    stats = await back(producer, interrupted)
    assert (stats.state, stats.pri, stats.delay, stats.releases) == ("ready", 5, 0, 0)
    assert await gone(producer, other)
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f"job {interrupted} (tube {tube}) given back: its handler raised {error.__name__}"
    )
    assert not worker.running


async def test_a_broken_connection_stops_the_worker(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    srv = fresh_server()
    worker = Worker(srv.address, concurrency=2, handlers={tube: lambda job: None})

    async def kill_server() -> None:
        async with connect(srv.address) as c:
            await eventually(lambda: _waiting(c, 2))
        srv.stop()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_server)
            with pytest.raises(bp.BrokenConnectionError):
                await worker.run()
    assert not worker.running


async def test_an_unreachable_server(tube: str) -> None:
    from conftest import free_port

    worker = Worker(("127.0.0.1", free_port()), concurrency=3, handlers={tube: lambda job: None})
    with anyio.fail_after(5), pytest.raises(OSError):
        await worker.run()
    assert not worker.running


async def _waiting(c: Client[Any], n: int) -> bool:
    return (await c.stats()).current_waiting == n


async def test_an_unexpected_reply_to_a_reserve_is_raised(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(monkeypatch)
    wire.rewrites[b"TIMED_OUT\r\n"] = b"INTERNAL_ERROR\r\n"
    worker = Worker(server.address, handlers={tube: lambda job: None})
    with anyio.fail_after(5), pytest.raises(bp.InternalServerError):
        await worker.run(burst=True)


async def test_a_refused_finish_is_logged(
    server: Server,
    tube: str,
    producer: Client[bytes],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A release answered BURIED: the server was out of memory.
    job_id = await producer.put(b"x")
    wire = Wire(monkeypatch)
    wire.rewrites[b"RELEASED\r\n"] = b"BURIED\r\n"
    calls = 0
    worker = Worker(server.address, retry_delay=0)

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError

    await burst(worker)
    assert calls == 2
    assert await gone(producer, job_id)
    assert records(caplog, logging.WARNING)[-1].getMessage() == (
        f"job {job_id} (tube {tube}): release answered Buried"
    )


# -- registration and options ------------------------------------------------------------


async def test_registration_and_options(server: Server, tube: str) -> None:
    worker = Worker(server.address, concurrency=2, max_attempts=3, retry_delay=0.5, grace=1)
    assert worker.options == beanproto.worker.WorkerOptions(2, 3, 0.5, 1.0)
    with pytest.raises(ValueError, match="no handler"):
        await worker.run()

    @worker.handler(tube)
    async def handle(job: bp.Job[bytes]) -> None:  # pragma: no cover - never run
        pass

    assert worker.add_handler(tube + "-2", handle) is handle
    assert worker.tubes == [tube, tube + "-2"]
    assert repr(worker) == (
        f"<beanproto_anyio.Worker tubes={[tube, tube + '-2']} concurrency=2 idle>"
    )
    with pytest.raises(ValueError, match="has a handler already"):
        worker.add_handler(tube, handle)
    with pytest.raises(ValueError, match="has a handler already"):
        worker.handler(tube)(handle)
    with pytest.raises(bp.InvalidArgument):
        worker.handler("bad tube")
    with pytest.raises(TypeError):
        worker.add_handler(tube + "-3", "not callable")  # type: ignore[type-var]
    for bad in (
        {"concurrency": 0},
        {"max_attempts": 0},
        {"retry_delay": -1},
        {"grace": math.inf},
        {"concurrency": 1.5},
    ):
        with pytest.raises(bp.InvalidArgument):
            Worker(server.address, **bad)
    with pytest.raises(bp.InvalidArgument):
        worker.stop(grace=-1)
    with pytest.raises(TypeError):
        Worker(11300)  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        Worker(server.address, encoding="no-such-encoding")
    assert beanproto_anyio.RetryJob is beanproto.worker.RetryJob
    assert beanproto_anyio.BuryJob is beanproto.worker.BuryJob


async def test_while_running(server: Server, tube: str) -> None:
    worker = Worker(server.address, handlers={tube: lambda job: None})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(0.05)
            assert worker.running
            assert repr(worker).endswith("running>")
            with pytest.raises(RuntimeError, match="running already"):
                await worker.run()
            with pytest.raises(RuntimeError, match="while the worker runs"):
                worker.add_handler(tube + "-2", lambda job: None)
            with pytest.raises(RuntimeError, match="while the worker runs"):
                worker.handler(tube + "-2")(lambda job: None)
            worker.stop()
    # The worker can run again.
    async with connect(server.address, use=tube) as c:
        job_id = await c.put(b"again")
        await burst(worker)
        assert await gone(c, job_id)


# -- the multiplexer's inline exchange ---------------------------------------------------


async def test_an_inline_exchange_writes_once(server: Server, tube: str) -> None:
    async with connect(server.address, use=tube, watch=tube) as c:
        first, second = await c.put_many([b"1", b"2"])
        sends: list[bytes] = []
        inner = c._mux._stream
        real_send = inner.send

        async def send(item: bytes) -> None:
            sends.append(item)
            await real_send(item)

        inner.send = send  # type: ignore[method-assign]
        events = await c._mux.exchange(
            [bp.Delete(first), bp.ReserveWithTimeout(0)], list, inline=True
        )
        assert events == [bp.Deleted(), bp.Reserved(second, b"2")]
        assert sends == [b"delete %d\r\nreserve-with-timeout 0\r\n" % first]
        # Too big to be written inline: written from a task, as any batch.
        big = [bp.Put(b"x" * 40_000, 0, 0, 60), bp.Put(b"y" * 40_000, 0, 0, 60)]
        events = await c._mux.exchange(big, list, inline=True)
        assert [type(e) for e in events] == [bp.Inserted, bp.Inserted]
        await c.delete(second)


async def test_an_inline_exchange_cancelled_while_its_reserve_waits(
    server: Server, tube: str
) -> None:
    # The delete was answered; the reserve waits: cancelling closes the connection.
    async with connect(server.address, use=tube, watch=tube) as c:
        job_id = await c.put(b"x")
        job = await c.reserve(timeout=0)
        with anyio.move_on_after(0.2) as scope:
            await c._mux.exchange([bp.Delete(job.id), bp.Reserve()], list, inline=True)
        assert scope.cancelled_caught
        assert c.closed
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"after")
    async with connect(server.address) as check:
        assert await gone(check, job_id)


async def test_an_inline_exchange_interrupted_at_every_line(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep of tests/test_interrupts.py, over a worker's [finish, reserve].
    import test_interrupts as sweep
    from conftest import new_tube_name

    async def call(c: Client[bytes]) -> bp.Job[bytes]:
        finished = await c.put(b"finished", priority=100)
        return await c._mux.exchange(
            [bp.Delete(finished), bp.ReserveWithTimeout(0)],
            lambda events: job_from_event(events[1], None),
            inline=True,
        )

    monkeypatch.setitem(sweep.ASYNC_CALLS, "inline-exchange", call)
    points = await sweep._async_run(server, new_tube_name(), "inline-exchange", None)
    assert points > 20, points
    for at in range(1, points + 1):
        await sweep._async_run(server, new_tube_name(), "inline-exchange", at)


async def test_an_inline_exchange_while_another_task_writes(server: Server, tube: str) -> None:
    # The task writing already writes the exchange's bytes too.
    stream = await hooked(server.address)
    async with Client(stream, use=tube, watch=tube) as c:
        gate = anyio.Event()
        sends: list[bytes] = []

        async def send(item: bytes) -> None:
            sends.append(item)
            if len(sends) == 1:
                await gate.wait()
            await stream.inner.send(item)

        stream.send_impl = send
        results: dict[str, object] = {}

        async def exchange() -> None:
            commands = [bp.ListTubeUsed(), bp.ListTubesWatched()]
            results["exchange"] = await c._mux.exchange(commands, list, inline=True)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.put, b"x")
                await anyio.sleep(0.05)  # the put is being written
                tg.start_soon(exchange)
                await anyio.sleep(0.05)  # the exchange waits for its replies
                gate.set()
        assert results["exchange"] == [bp.Using(tube), bp.TubeList((tube,))]
        assert len(sends) == 2 and sends[1] == b"list-tube-used\r\nlist-tubes-watched\r\n"


async def test_an_inline_exchange_whose_result_fails_gives_its_job_back(
    server: Server, tube: str
) -> None:
    # Every reply came, but the caller never gets the job: it goes back.
    async with connect(server.address, use=tube, watch=tube) as c:
        finished, ready = await c.put_many([b"finished", b"ready"], priority=4)
        await c.reserve(timeout=0)

        def fails(events: list[bp.Event]) -> None:
            raise RuntimeError("in result")

        commands = [bp.Delete(finished), bp.ReserveWithTimeout(0)]
        with pytest.raises(RuntimeError):
            await c._mux.exchange(commands, fails, inline=True)
        assert c.closed
    async with connect(server.address) as check:
        assert await gone(check, finished)
        stats = await back(check, ready)
        assert (stats.state, stats.pri) == ("ready", 4)


async def test_a_touch_after_its_job_ended(server: Server) -> None:
    # The monitor's touch task runs after the slot moved on: nothing is sent.
    # Or its touch is answered after the job ended, or fails with the
    # connection: nothing is logged, the slot sees to it.
    worker = Worker(server.address, handlers={"default": lambda job: None})
    slot = _worker._Slot(server.address)
    clock = beanproto.worker.TouchClock(anyio.current_time())
    await worker._touch(slot, 5, clock)  # no client, no job

    class FakeClient:
        def __init__(self, error: Exception) -> None:
            self.error = error

        async def stats_job(self, job_id: int) -> bp.JobStats:
            slot.job_id = None  # the job ends meanwhile
            raise self.error

    for error in (bp.NotFoundError("NOT_FOUND"), bp.BrokenConnectionError("closed")):
        slot.client = FakeClient(error)  # type: ignore[assignment]
        slot.job_id = 5
        slot.touching = True
        await worker._touch(slot, 5, clock)
        assert not slot.touching and slot.lost is None
