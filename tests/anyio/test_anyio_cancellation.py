"""Cancellation and interruption: no reply reaches the wrong caller, no job is lost.

Each documented outcome of ``beanproto_anyio.Client`` (see its docstring) has a test.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio_helpers import HookedStream, anyio_backend, hooked  # noqa: F401

import beanproto as bp
from beanproto_anyio import Client, connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


def delay_first_receive(stream: HookedStream, seconds: float) -> None:
    """Hold back the next reply for ``seconds`` (once)."""

    async def hook() -> None:
        stream.before_receive = None
        await anyio.sleep(seconds)

    stream.before_receive = hook


@pytest.mark.parametrize("timeout", [None, 30])
async def test_cancelled_reserve_releases_the_connection(
    server: Server, tube: str, timeout: int | None
) -> None:
    async with connect(server.address, watch=tube) as waiter:
        with anyio.move_on_after(0.5) as scope:
            await waiter.reserve(timeout)
        assert scope.cancelled_caught
        assert waiter.closed
        async with connect(server.address, use=tube) as producer:
            job_id = await producer.put(b"job", priority=42)
        async with connect(server.address, watch=tube) as third:
            with anyio.fail_after(1):
                job = await third.reserve()
            assert job.id == job_id
            assert (await third.stats_job(job)).pri == 42
            await third.delete(job)
        with pytest.raises(bp.BrokenConnectionError):
            await waiter.stats()


async def test_cancelled_reserve_returns_jobs_the_client_held(server: Server, tube: str) -> None:
    async with connect(server.address, use=tube, watch=tube) as holder:
        await holder.put(b"precious", priority=7)
        job = await holder.reserve(timeout=0)
        with anyio.move_on_after(0.3):
            await holder.reserve()  # waits: the only job is held by this very client
        with pytest.raises(bp.BrokenConnectionError):
            await holder.delete(job)
    async with connect(server.address, watch=tube) as other:
        with anyio.fail_after(1):
            again = await other.reserve()
        assert again == job
        assert (await other.stats_job(again)).pri == 7
        await other.delete(again)


async def test_cancelled_reserve_fails_calls_queued_behind_it(server: Server, tube: str) -> None:
    async with connect(server.address, watch=tube) as c:
        errors: list[BaseException] = []

        async def queued_put() -> None:
            try:
                await c.put(b"behind the reserve")
            except BaseException as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(0.5):
                async with anyio.create_task_group() as inner:
                    inner.start_soon(c.reserve)
                    await anyio.sleep(0.1)
                    tg.start_soon(queued_put)
                    await anyio.sleep_forever()
        assert len(errors) == 1 and isinstance(errors[0], bp.BrokenConnectionError)


async def test_aclose_from_another_task_aborts_a_waiting_reserve(server: Server, tube: str) -> None:
    async with connect(server.address, watch=tube) as c:
        errors: list[BaseException] = []

        async def wait_for_job() -> None:
            try:
                await c.reserve()
            except BaseException as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_job)
                await anyio.sleep(0.2)
                await c.aclose()
        assert len(errors) == 1 and isinstance(errors[0], bp.BrokenConnectionError)


async def test_cancelled_before_writing_leaves_no_trace(server: Server, tube: str) -> None:
    async with connect(server.address, use=tube, watch=tube) as c:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await c.put(b"never sent")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await c.put_many([b"never sent"] * 10)
        assert not c.closed
        job_id = await c.put(b"sent")
        assert (await c.stats_tube(tube)).current_jobs_ready == 1
        assert (await c.reserve(timeout=0)).id == job_id


async def test_cancelled_put_waiting_for_its_reply_stays_in_sync(server: Server, tube: str) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube, watch=tube) as c:
        first = await c.put(b"first")
        delay_first_receive(stream, 0.3)
        with anyio.move_on_after(0.1) as scope:
            await c.put(b"cancelled")
        assert scope.cancelled_caught and not c.closed
        last = await c.put(b"last")
        assert last == first + 2  # the cancelled put was inserted; its reply was dropped
        assert (await c.peek(last)).body == b"last"
        assert (await c.peek(first + 1)).body == b"cancelled"
        assert (await c.stats_tube(tube)).current_jobs_ready == 3


async def test_cancelled_poll_without_a_job_stays_in_sync(server: Server, tube: str) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube, watch=tube) as c:
        delay_first_receive(stream, 0.3)
        with anyio.move_on_after(0.1) as scope:
            await c.reserve(timeout=0)
        assert scope.cancelled_caught
        job_id = await c.put(b"x")
        assert (await c.reserve(timeout=0)).id == job_id
        assert not c.closed


@pytest.mark.parametrize(
    "how",
    [
        "poll",
        pytest.param(
            "reserve_job",
            marks=pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12"),
        ),
    ],
)
async def test_cancelled_poll_that_got_a_job_closes_and_returns_it(
    server: Server, tube: str, how: str
) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube, watch=tube) as c:
        job_id = await c.put(b"job", priority=9)
        delay_first_receive(stream, 0.3)
        with anyio.move_on_after(0.1) as scope:
            if how == "poll":
                await c.reserve(timeout=0)
            else:
                await c.reserve_job(job_id)
        assert scope.cancelled_caught
        with pytest.raises(bp.BrokenConnectionError):
            # The first call reads the dropped job's reply and closes the
            # connection (its own reply may have come in the same read).
            for _ in range(2):
                await c.stats()
        assert c.closed
    async with connect(server.address, watch=tube) as other:
        with anyio.fail_after(1):
            job = await other.reserve()
        assert job.id == job_id
        assert (await other.stats_job(job)).pri == 9
        await other.delete(job)


async def test_cancelled_in_the_middle_of_a_write_breaks(server: Server, tube: str) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:

        async def half_then_hang(item: bytes) -> None:
            await stream.inner.send(item[: len(item) // 2])
            await anyio.sleep_forever()

        stream.send_impl = half_then_hang
        with anyio.move_on_after(0.2) as scope:
            await c.put(b"x" * 100)
        assert scope.cancelled_caught
        assert c.closed and stream.closed
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"y")


async def test_keyboard_interrupt_while_waiting_breaks(server: Server, tube: str) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:

        async def interrupt() -> None:
            stream.before_receive = None
            raise KeyboardInterrupt

        stream.before_receive = interrupt
        with pytest.raises(KeyboardInterrupt):
            await c.put(b"x")
        assert c.closed
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"y")


async def test_stream_error_is_chained(server: Server) -> None:
    stream = await hooked(server.address)
    async with Client(stream) as c:

        async def broken(item: bytes) -> None:
            raise anyio.BrokenResourceError("peer reset")

        stream.send_impl = broken
        with pytest.raises(bp.BrokenConnectionError) as info:
            await c.put(b"x")
        assert isinstance(info.value.__cause__, anyio.BrokenResourceError)


@pytest.mark.parametrize("size", [100_000, 2_000])
@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02, 0.1, 0.3])
async def test_put_many_cancelled_part_way_is_in_sync_or_broken(
    fresh_server: Callable[..., Server], tube: str, delay: float, size: int
) -> None:
    srv = fresh_server()
    async with connect(srv.address, use=tube) as c:
        first = await c.put(b"first")
        with anyio.move_on_after(delay):
            await c.put_many([b"x" * 100] * size)
        broken = False
        try:
            last = await c.put(b"last")
        except bp.BrokenConnectionError:
            assert c.closed
            broken = True
        else:  # in sync: every id the server gave out since `first` is in the tube
            assert (await c.peek(last)).body == b"last"
            assert (await c.stats_tube(tube)).current_jobs_ready == last - first + 1
    async with connect(srv.address, use=tube) as check:
        with anyio.fail_after(10):  # the server has finished with the old connection
            while (await check.stats()).current_connections != 1:
                await anyio.sleep(0.01)
        ready = (await check.stats_tube(tube)).current_jobs_ready
        assert ready is not None
        # Every job the server inserted is in the tube. beanstalkd assigns an id
        # when it parses a put's line, so a put whose body was cut off by the
        # close used up one id without a job.
        gap = await check.put(b"check") - (first + ready)
        assert gap == 0 or (broken and gap == 1)


async def test_random_cancellations_never_misroute_replies(server: Server, tube: str) -> None:
    rng = random.Random(4)
    async with connect(server.address, use=tube) as c:
        checked = 0

        async def worker(n: int) -> None:
            nonlocal checked
            for i in range(40):
                body = b"%d/%d" % (n, i)
                with anyio.move_on_after(rng.choice([0, 0.0005, 0.002, 1])):
                    try:
                        job_id = await c.put(body)
                        assert (await c.peek(job_id)).body == body
                        assert (await c.stats_job(job_id)).id == job_id
                        checked += 1
                    except bp.BrokenConnectionError:
                        return

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(worker, n)
        assert checked > 0
        assert not c.closed  # nothing here needs to break the connection
