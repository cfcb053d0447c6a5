"""The lone caller's path and the shared one meet: a call made while the
connection is idle writes and reads in its own coroutine, and tasks that arrive
meanwhile must still be written, answered and failed as in the shared path."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio_helpers import Hook, HookedStream, anyio_backend, hooked  # noqa: F401

import beanproto as bp
from beanproto_anyio import Client, connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


def slow_first_send(stream: HookedStream, seconds: float, sent: list[tuple[int, bytes]]) -> None:
    """Hold the next ``send`` for ``seconds`` (once); record every write and the
    task that made it."""

    async def send(item: bytes) -> None:
        if not sent:
            await anyio.sleep(seconds)
        sent.append((anyio.get_current_task().id, item))
        await stream.inner.send(item)

    stream.send_impl = send


async def test_bytes_buffered_during_a_lone_write_are_written_by_it(
    server: Server, tube: str
) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        sent: list[tuple[int, bytes]] = []
        slow_first_send(stream, 0.1, sent)
        ids: dict[bytes, int] = {}

        async def put(body: bytes) -> None:
            ids[body] = await c.put(body)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(put, b"lone")
                await anyio.sleep(0.05)  # "lone" is being written
                tg.start_soon(put, b"second")
        # The second task found a writer and left its bytes to it.
        [(writer, first), (also_writer, late)] = sent
        assert first.endswith(b"lone\r\n") and late.endswith(b"second\r\n")
        assert also_writer == writer
        assert ids[b"second"] == ids[b"lone"] + 1
        for body, job_id in ids.items():
            assert (await c.peek(job_id)).body == body
        assert not c.closed


def slow_first_receive(stream: HookedStream, seconds: float, then: Hook | None = None) -> None:
    """Hold the next ``receive`` for ``seconds``; run ``then`` before the later ones."""

    async def hook() -> None:
        stream.before_receive = then
        await anyio.sleep(seconds)

    stream.before_receive = hook


@pytest.mark.parametrize("end_of_stream", [False, True])
async def test_a_task_arriving_during_a_lone_read_is_handed_the_reading(
    server: Server, tube: str, end_of_stream: bool
) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube, watch=tube) as c:

        async def the_end() -> None:
            raise anyio.EndOfStream

        slow_first_receive(stream, 0.1, the_end if end_of_stream else None)
        outcomes: dict[str, object] = {}

        async def lone() -> None:
            outcomes["lone"] = await c.using()

        async def second() -> None:
            # The server answers after a second: not in the lone call's read.
            try:
                await c.reserve(timeout=1)
            except (bp.TimedOutError, bp.BrokenConnectionError) as exc:
                outcomes["second"] = exc

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lone)
                await anyio.sleep(0.05)  # the lone call waits for its reply
                tg.start_soon(second)
        assert outcomes["lone"] == tube
        if end_of_stream:
            # The second task took over the reading and met the end.
            assert isinstance(outcomes["second"], bp.BrokenConnectionError)
            assert isinstance(outcomes["second"].__cause__, anyio.EndOfStream)
            assert c.closed and stream.closed
            with pytest.raises(bp.BrokenConnectionError):
                await c.using()
        else:
            assert isinstance(outcomes["second"], bp.TimedOutError)
            assert await c.using() == tube


async def test_a_reply_in_pieces_is_read_to_its_end(server: Server, tube: str) -> None:
    class Trickle(HookedStream):
        async def receive(self, max_bytes: int = 65536) -> bytes:
            return await super().receive(7)

    stream = Trickle(await anyio.connect_tcp(*server.address))
    async with Client(stream, use=tube, watch=tube) as c:
        body = b"x\r\n" * 50
        job_id = await c.put(body)
        assert await c.reserve(timeout=0) == bp.Job(job_id, body)
        await c.delete(job_id)
        assert not c.closed


async def test_random_cancellations_of_a_lone_caller_never_misroute_replies(
    server: Server, tube: str
) -> None:
    # A cancelled call leaves its reply owed, so the next call takes the shared
    # path behind it; then the connection is idle again.
    rng = random.Random(7)
    async with connect(server.address, use=tube) as c:
        checked = cancelled = 0
        for i in range(300):
            body = b"%d" % i
            with anyio.move_on_after(rng.choice([0, 0.00005, 0.0002, 0.001, 1])) as scope:
                job_id = await c.put(body)
                assert (await c.peek(job_id)).body == body
                assert (await c.stats_job(job_id)).id == job_id
                checked += 1
            cancelled += scope.cancelled_caught
        assert checked > 0 and cancelled > 0
        assert not c.closed
