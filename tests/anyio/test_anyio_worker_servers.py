"""beanproto_anyio.Worker over several servers (asyncio and trio): fairness, dead
servers, reconnects, the job's server, and the metrics hooks."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio_helpers import anyio_backend  # noqa: F401

import beanproto as bp
from beanproto.address import describe
from beanproto.worker import BuryJob
from beanproto_anyio import Worker, connect
from conftest import RecordingHooks, free_port

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio

Job = bp.Job[Any]


async def put_bodies(address: Any, tube: str, bodies: list[bytes]) -> list[int]:
    async with connect(address, use=tube) as c:
        return await c.put_many(bodies)


async def seen_in(seen: list[Any], item: Any, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while item not in seen:
            await anyio.sleep(0.02)


async def test_a_busy_server_never_holds_up_a_quiet_one(
    server: Server, fresh_server: Callable[..., Server], tube: str
) -> None:
    other = fresh_server()
    await put_bodies(server.address, tube, [b"a%d" % i for i in range(2000)])
    await put_bodies(other.address, tube, [b"b%d" % i for i in range(20)])
    seen: list[tuple[bytes, str | None]] = []

    async def handle(job: Job) -> None:
        seen.append((job.body, job.server))

    worker = Worker([server.address, other.address], handlers={tube: handle})
    with anyio.fail_after(30):
        await worker.run(burst=True)
    assert len(seen) == 2020
    order = [body for body, _ in seen]
    last_b = max(i for i, body in enumerate(order) if body.startswith(b"b"))
    five_hundredth_a = [i for i, body in enumerate(order) if body.startswith(b"a")][499]
    assert last_b < five_hundredth_a
    assert {s for body, s in seen if body.startswith(b"b")} == {other.name}


async def test_a_dead_server_is_skipped(
    server: Server, tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    await put_bodies(server.address, tube, [b"x", b"y"])
    dead = ("127.0.0.1", free_port())
    seen: list[bytes] = []

    async def handle(job: Job) -> None:
        seen.append(job.body)

    worker = Worker([dead, server.address], concurrency=2, handlers={tube: handle})
    with caplog.at_level(logging.WARNING, "beanproto.worker"), anyio.fail_after(10):
        await worker.run(burst=True)
    assert sorted(seen) == [b"x", b"y"]
    assert f"server {describe(dead)}: cannot connect" in caplog.text


async def test_one_server_alone_still_fails_the_worker(tube: str) -> None:
    worker = Worker(("127.0.0.1", free_port()), handlers={tube: lambda job: None})
    with pytest.raises(OSError), anyio.fail_after(10):
        await worker.run(burst=True)


async def test_a_killed_server_is_reconnected_in_the_background(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed twice and restarted: each time its slots reconnect, and each
    "reconnected after N failed attempts" counts the attempts since that loss."""
    first, second = fresh_server(), fresh_server()
    seen: list[tuple[bytes, str | None]] = []

    async def handle(job: Job) -> None:
        seen.append((job.body, job.server))

    worker = Worker([first.address, second.address], concurrency=2, handlers={tube: handle})
    caplog.set_level(logging.DEBUG, "beanproto.worker")
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            await put_bodies(second.address, tube, [b"before"])
            await seen_in(seen, (b"before", second.name))
            for round_ in range(2):
                second.kill()
                await put_bodies(first.address, tube, [b"meanwhile %d" % round_])
                await seen_in(seen, (b"meanwhile %d" % round_, first.name))
                second = restarted(second)
                await put_bodies(second.address, tube, [b"after %d" % round_])
                await seen_in(seen, (b"after %d" % round_, second.name))
        finally:
            worker.stop()
    # Each reconnection counts the failed attempts since its slot's loss: summed
    # over the slots and the rounds, as many as were logged.
    lines = [r.getMessage() for r in caplog.records]
    lines = [line for line in lines if line.startswith(f"server {second.name}:")]
    counts = [re.search(r"reconnected after (\d+) failed attempts", line) for line in lines]
    reported = [int(found[1]) for found in counts if found]
    assert len(reported) == 2 * 2  # two slots, two rounds
    assert sum(reported) == sum("reconnecting failed" in line for line in lines)


async def test_a_stop_while_reconnecting_returns_at_once(server: Server, tube: str) -> None:
    worker = Worker([server.address, ("127.0.0.1", free_port())], handlers={tube: lambda job: None})
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await anyio.sleep(0.5)  # the dead server's slot is between attempts
        started = time.monotonic()
        worker.stop()
    assert time.monotonic() - started < 2


async def test_each_job_ends_on_its_own_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    first, second = fresh_server(), fresh_server()
    ids = await put_bodies(first.address, tube, [b"one"])
    assert ids == await put_bodies(second.address, tube, [b"two"])

    def bury(job: Job) -> None:
        raise BuryJob("check")

    addresses = f"{first.name},{second.name}"
    worker = Worker(addresses, handlers={tube: bury})
    with anyio.fail_after(10):
        await worker.run(burst=True)
    for srv in (first, second):
        async with connect(srv.address) as c:
            assert (await c.stats_tube(tube)).current_jobs_buried == 1


async def test_metrics_hooks_see_each_job_outcome(server: Server, tube: str) -> None:
    await put_bodies(server.address, tube, [b"ok", b"ok", b"fail", b"bury", b"bad\xff"])
    async with connect(server.address, use=tube) as c:
        await c.put(b"slow", ttr=1)
    recorder = RecordingHooks()

    async def handle(job: Job) -> None:
        if job.body == "fail":
            raise ValueError("boom")
        if job.body == "bury":
            raise BuryJob("asked")
        if job.body == "slow":
            await anyio.sleep(1.6)  # past its TTR: the worker touches it

    worker = Worker(
        server.address,
        metrics=recorder,
        retry_delay=60,
        concurrency=2,
        encoding="utf-8",
        handlers={tube: handle},
    )
    with anyio.fail_after(15):
        await worker.run(burst=True)
    where = server.name
    counts = Counter((o, f) for t, o, _, f, s in recorder.jobs if t == tube and s == where)
    assert counts[("deleted", False)] == 3
    assert counts[("released", True)] == 1
    assert counts[("buried", False)] == 1
    assert counts[("buried", True)] == 1  # the body that does not decode
    assert counts[("touched", False)] >= 1
    assert len(recorder.jobs) == sum(counts.values())
    assert max(d for _, _, d, _, _ in recorder.jobs) >= 1.5
    # The commands went through the hooks too: a delete per deleted job, ...
    commands = Counter(recorder.pairs())
    assert commands["delete", "DELETED"] == 3
    assert commands["release", "RELEASED"] == 1
    assert commands["bury", "BURIED"] == 2
    assert commands["reserve-with-timeout", "RESERVED"] == 6
    assert commands["touch", "TOUCHED"] >= 1
