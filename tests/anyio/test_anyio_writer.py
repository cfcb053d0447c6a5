"""The one writer and the one reader: a task that finds the connection idle becomes
both, and tasks that arrive meanwhile must still be written, answered and failed
through it (beanproto_anyio._multiplexer)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio_helpers import Hook, HookedStream, anyio_backend, hooked  # noqa: F401

import beanproto as bp
from beanproto_anyio import Client, connect
from beanproto_anyio._multiplexer import WRITE_GRACE as _WRITE_GRACE

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


async def test_bytes_buffered_during_a_write_are_written_by_the_writer(
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


@pytest.mark.parametrize("shared", [False, True])
async def test_late_bytes_take_as_long_as_they_take(
    server: Server, tube: str, shared: bool
) -> None:
    # The writer writes the bytes others buffered meanwhile (here a batch) like
    # its own: however long that takes. Only a cancelled writer is held to the
    # grace period. (It used to be held to it always, and broke the connection.)
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        writes: list[bytes] = []

        async def send(item: bytes) -> None:
            writes.append(item)
            if len(writes) == 1:
                await anyio.sleep(0.1)  # the first task's own write: the batch comes
            elif len(writes) == 2:
                await anyio.sleep(_WRITE_GRACE + 0.3)  # the batch: slower than the grace
            await stream.inner.send(item)

        stream.send_impl = send
        results: dict[str, object] = {}

        async def single() -> None:
            if shared:  # another call is in flight
                results["single"] = await c.put_many([b"first", b"second"])
            else:
                results["single"] = await c.put(b"first")

        async def batch() -> None:
            results["batch"] = await c.put_many([b"b"] * 200)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(single)
                await anyio.sleep(0.05)  # the first write is in progress
                tg.start_soon(batch)
        assert len(writes) == 2
        batch_ids = results["batch"]
        assert isinstance(batch_ids, list) and len(set(batch_ids)) == 200
        assert not c.closed
        assert (await c.stats_tube(tube)).current_jobs_ready == 200 + (2 if shared else 1)


@pytest.mark.parametrize("late_write", [0.0, _WRITE_GRACE + 0.3])
async def test_a_cancelled_writer_writes_late_bytes_for_the_grace_period(
    server: Server, tube: str, late_write: float
) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        writes: list[bytes] = []
        scope = anyio.CancelScope()

        async def send(item: bytes) -> None:
            writes.append(item)
            if len(writes) == 1:
                await anyio.sleep(0.1)  # the batch comes meanwhile
                scope.cancel()  # ...and the writer is cancelled, its own write done
                with anyio.CancelScope(shield=True):
                    await stream.inner.send(item)
                return
            await anyio.sleep(late_write)
            await stream.inner.send(item)

        stream.send_impl = send
        outcome: dict[str, object] = {}

        async def single() -> None:
            with scope:
                await c.put(b"cancelled")
            outcome["single"] = "cancelled" if scope.cancelled_caught else "done"

        async def batch() -> None:
            try:
                outcome["batch"] = len(await c.put_many([b"b"] * 50))
            except bp.BrokenConnectionError as exc:
                outcome["batch"] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(single)
                await anyio.sleep(0.05)
                tg.start_soon(batch)
        # The cancelled put may still return its id, if its reply was read before
        # it next checked for cancellation; what matters is the others' bytes.
        assert outcome["single"] in ("cancelled", "done")
        if late_write < _WRITE_GRACE:
            assert outcome["batch"] == 50
            assert not c.closed
        else:
            assert isinstance(outcome["batch"], bp.BrokenConnectionError)
            assert "grace period" in str(outcome["batch"])
            assert c.closed


async def test_a_reply_read_after_another_task_broke_the_connection(
    server: Server, tube: str
) -> None:
    # The reader's receive returned the reply, but before it parsed it a writer
    # failed and broke the connection: the reader's call fails like the others,
    # with BrokenConnectionError (it used to leak the core's LocalProtocolError).
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        broken = anyio.Event()

        async def receive(max_bytes: int = 65536) -> bytes:
            data = await stream.inner.receive(max_bytes)  # the put's reply
            await broken.wait()
            return data

        async def failing_send(item: bytes) -> None:
            raise OSError("the network is down")

        stream.receive = receive  # type: ignore[method-assign]
        errors: dict[str, BaseException] = {}

        async def reader() -> None:
            try:
                await c.put(b"read")
            except BaseException as exc:
                errors["reader"] = exc

        async def writer() -> None:
            stream.send_impl = failing_send
            try:
                await c.put_many([b"w"])
            except BaseException as exc:
                errors["writer"] = exc
            broken.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.1)  # the reader holds its reply
                tg.start_soon(writer)
        assert isinstance(errors["writer"], bp.BrokenConnectionError)
        assert isinstance(errors["reader"], bp.BrokenConnectionError)
        assert c.closed


def slow_first_receive(stream: HookedStream, seconds: float, then: Hook | None = None) -> None:
    """Hold the next ``receive`` for ``seconds``; run ``then`` before the later ones."""

    async def hook() -> None:
        stream.before_receive = then
        await anyio.sleep(seconds)

    stream.before_receive = hook


@pytest.mark.parametrize("end_of_stream", [False, True])
async def test_a_task_arriving_during_a_read_is_handed_the_reading(
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
            # The server answers after a second: not in the first call's read.
            try:
                await c.reserve(timeout=1)
            except (bp.TimedOutError, bp.BrokenConnectionError) as exc:
                outcomes["second"] = exc

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lone)
                await anyio.sleep(0.05)  # the first call waits for its reply
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


async def test_random_cancellations_of_one_caller_never_misroute_replies(
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
