"""The multiplexer's rarer paths (beanproto_anyio._multiplexer): failures that meet
another task's write, read, sleep or close, and what every caller then sees."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from anyio_helpers import HookedStream, anyio_backend, hooked  # noqa: F401

import beanproto as bp
from beanproto_anyio import Client, connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


async def outcome(results: dict[str, object], name: str, call: Awaitable[Any]) -> None:
    """Await ``call`` in a task; record its result or whatever it raised (a
    ``KeyboardInterrupt`` must not escape an asyncio task)."""
    try:
        results[name] = await call
    except BaseException as exc:
        results[name] = exc


async def assert_unusable(c: Client[Any], stream: HookedStream) -> None:
    assert c.closed and stream.closed
    with pytest.raises(bp.BrokenConnectionError):
        await c.put(b"later")
    with pytest.raises(bp.BrokenConnectionError):
        await c.put_many([b"later"])


async def assert_no_jobs(server: Server, tube: str) -> None:
    """No job reached ``tube``: it disappears once the client's connection is gone
    (a tube holding a job never does)."""
    async with connect(server.address) as check:
        with anyio.fail_after(2):
            while True:
                try:
                    await check.stats_tube(tube)
                except bp.NotFoundError:
                    return
                await anyio.sleep(0.01)


async def test_a_batch_whose_read_fails_at_once_writes_nothing(server: Server, tube: str) -> None:
    # The batch's first read fails before its writer task ran: the connection is
    # broken and the output cleared, so the writer finds nothing to write.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        sent: list[bytes] = []

        async def record(item: bytes) -> None:
            sent.append(item)
            await stream.inner.send(item)

        async def reset() -> None:
            raise anyio.BrokenResourceError("connection reset")

        stream.send_impl = record
        stream.before_receive = reset
        with anyio.fail_after(5), pytest.raises(bp.BrokenConnectionError) as info:
            await c.put_many([b"a", b"b"])
        assert isinstance(info.value.__cause__, anyio.BrokenResourceError)
        assert sent == []
        await assert_unusable(c, stream)
    await assert_no_jobs(server, tube)


async def test_a_batch_written_by_a_task_that_ran_before_its_writer(
    server: Server, tube: str
) -> None:
    # A task woken just before a batch is submitted runs before the batch's
    # writer task (on asyncio, whose run queue is FIFO; on trio in either order)
    # and writes the batch's bytes with its own, at once: the stream's send does
    # not block. The batch's writer then finds nothing left and must not fail.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        sent: list[bytes] = []
        to_pump, pumped = anyio.create_memory_object_stream[bytes](100)

        async def buffered_send(item: bytes) -> None:
            sent.append(item)
            to_pump.send_nowait(item)

        async def pump() -> None:
            async with pumped:
                async for item in pumped:
                    try:
                        await stream.inner.send(item)
                    except anyio.ClosedResourceError:
                        return  # the client broke the connection: the test fails

        go = anyio.Event()
        results: dict[str, object] = {}

        async def woken() -> None:
            await go.wait()
            await outcome(results, "woken", c.put(b"w"))

        stream.send_impl = buffered_send
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                tg.start_soon(woken)
                await anyio.sleep(0.05)  # both wait
                go.set()
                batch = await c.put_many([b"a", b"b"])
                with anyio.fail_after(1):
                    while "woken" not in results:
                        await anyio.sleep(0.01)
                to_pump.close()
        stream.send_impl = None
        lines = b"".join(sent).split(b"\r\n")  # put <pri> <delay> <ttr> 1, body, ...
        assert lines[1::2] == [b"a", b"b", b"w"]
        assert all(line.startswith(b"put ") for line in lines[0:-1:2]) and lines[-1] == b""
        assert batch[1] == batch[0] + 1 and results["woken"] == batch[1] + 1
        assert not c.closed
        for job_id, body in zip([*batch, batch[1] + 1], [b"a", b"b", b"w"], strict=True):
            assert (await c.peek(job_id)).body == body


async def test_a_write_failing_after_aclose_from_another_task(server: Server, tube: str) -> None:
    # aclose() closes the stream under a write in progress; the write then fails
    # with a stream error, which must not leak: the call reports the close.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        writing = anyio.Event()
        closed = anyio.Event()

        async def send(item: bytes) -> None:
            writing.set()
            await closed.wait()
            await stream.inner.send(item)  # closed meanwhile: ClosedResourceError

        stream.send_impl = send
        results: dict[str, object] = {}
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outcome, results, "put", c.put(b"x"))
                await writing.wait()
                await c.aclose()
                assert stream.closed
                closed.set()
        error = results["put"]
        assert isinstance(error, bp.BrokenConnectionError)
        assert "the client was closed" in str(error)
        await assert_unusable(c, stream)


async def test_keyboard_interrupt_in_the_writers_send(server: Server, tube: str) -> None:
    # The writer's send raises KeyboardInterrupt while a second task, whose bytes
    # it was to write, waits for its reply: the writer gets the interrupt, the
    # other task BrokenConnectionError, and nothing more is written.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        sent: list[bytes] = []

        async def interrupted(item: bytes) -> None:
            sent.append(item)
            await anyio.sleep(0.1)  # the second task arrives
            raise KeyboardInterrupt

        stream.send_impl = interrupted
        results: dict[str, object] = {}
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outcome, results, "writer", c.put(b"first"))
                await anyio.sleep(0.05)
                tg.start_soon(outcome, results, "other", c.put(b"second"))
        assert isinstance(results["writer"], KeyboardInterrupt)
        other = results["other"]
        assert isinstance(other, bp.BrokenConnectionError)
        assert isinstance(other.__cause__, KeyboardInterrupt)
        assert len(sent) == 1 and sent[0].endswith(b"first\r\n")
        await assert_unusable(c, stream)
    await assert_no_jobs(server, tube)


async def test_a_stream_that_returns_no_bytes_has_ended(server: Server, tube: str) -> None:
    # anyio streams raise EndOfStream, but a ByteStream may return b"" instead.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        assert await c.using() == tube

        async def receive(max_bytes: int = 65536) -> bytes:
            await anyio.lowlevel.checkpoint()
            return b""

        stream.receive = receive  # type: ignore[method-assign]
        with anyio.fail_after(5), pytest.raises(bp.BrokenConnectionError) as info:
            await c.using()
        assert "closed the connection" in str(info.value)
        await assert_unusable(c, stream)


async def test_a_protocol_error_reaches_the_sleeping_task_it_belongs_to(
    server: Server, tube: str
) -> None:
    # The oldest call's task sleeps while a newer call's task reads; the reply
    # the reader gets for the oldest call is garbage. The error goes to the
    # oldest call, whose task is woken; the reader's call is failed as broken.
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        sends = 0
        both_written = anyio.Event()

        async def send(item: bytes) -> None:
            nonlocal sends
            sends += 1
            if sends == 1:
                await anyio.sleep(0.1)  # the second task buffers its command, reads
            await stream.inner.send(item)
            if sends == 2:
                # The first task wrote the second's bytes; it goes to sleep next,
                # before the reader runs again.
                both_written.set()

        async def receive(max_bytes: int = 65536) -> bytes:
            await both_written.wait()
            return b"BOGUS\r\n"

        stream.send_impl = send
        stream.receive = receive  # type: ignore[method-assign]
        results: dict[str, object] = {}
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outcome, results, "oldest", c.put(b"x"))
                await anyio.sleep(0.05)  # the put is being written
                tg.start_soon(outcome, results, "reader", c.using())
        assert sends == 2
        oldest = results["oldest"]
        assert isinstance(oldest, bp.RemoteProtocolError)
        assert "'put'" in str(oldest) and "BOGUS" in str(oldest)
        reader = results["reader"]
        assert isinstance(reader, bp.BrokenConnectionError)
        assert reader.__cause__ is oldest
        await assert_unusable(c, stream)


class InterruptOnce:
    """Wraps a client's Connection: once armed, its ``at``-th ``next_event``
    raises KeyboardInterrupt (as a signal handler would, mid-parse)."""

    def __init__(self, conn: bp.Connection, at: int) -> None:
        self.conn = conn
        self.at = at
        self.armed = False

    def next_event(self) -> Any:
        if self.armed:
            self.at -= 1
            if self.at == 0:
                self.armed = False
                raise KeyboardInterrupt
        return self.conn.next_event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.mark.parametrize("at", [1, 2])
async def test_keyboard_interrupt_while_handing_out_replies(
    server: Server, tube: str, at: int
) -> None:
    # The reader is interrupted while it hands out replies, before any (at=1) or
    # after its own (at=2): it gets the interrupt, the sleeping task
    # BrokenConnectionError, and the client is closed (a reply may have been
    # taken off the queue and given to no one).
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        conn = InterruptOnce(c._mux._conn, at)
        c._mux._conn = conn  # type: ignore[assignment]
        read = anyio.Event()

        async def hold_first_read() -> None:
            stream.before_receive = None
            await read.wait()  # the second task sleeps meanwhile
            conn.armed = True

        stream.before_receive = hold_first_read
        results: dict[str, object] = {}
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outcome, results, "reader", c.put(b"first"))
                await anyio.sleep(0.05)
                tg.start_soon(outcome, results, "sleeper", c.put(b"second"))
                await anyio.sleep(0.05)
                read.set()
        assert isinstance(results["reader"], KeyboardInterrupt)
        sleeper = results["sleeper"]
        assert isinstance(sleeper, bp.BrokenConnectionError)
        assert isinstance(sleeper.__cause__, KeyboardInterrupt)
        assert not conn.armed
        await assert_unusable(c, stream)


async def test_a_poll_cancelled_as_its_job_arrives_returns_the_job(
    server: Server, tube: str
) -> None:
    # A reserve(timeout=0) sleeps while another task reads. Its task is cancelled
    # just before the reader hands it its job (both replies came in one read):
    # the job is not lost, the connection is closed so the server releases it,
    # and the reader still gets its own reply.
    async with connect(server.address, use=tube) as producer:
        job_id = await producer.put(b"job", priority=5)
    stream = await hooked(server.address)
    async with Client(stream, watch=tube) as c:
        poll_scope = anyio.CancelScope()
        reading = anyio.Event()
        poll_written = anyio.Event()
        sends = 0

        async def send(item: bytes) -> None:
            nonlocal sends
            sends += 1
            await stream.inner.send(item)
            if sends == 2:
                poll_written.set()  # the poll goes to sleep next

        async def receive(max_bytes: int = 65536) -> bytes:
            reading.set()
            await poll_written.wait()
            data = b""
            while data.count(b"\r\n") < 3:  # USING default, RESERVED <id> 3, job
                data += await stream.inner.receive(max_bytes)
            poll_scope.cancel()
            return data

        async def poll() -> None:
            with poll_scope:
                results["poll"] = await c.reserve(timeout=0)

        stream.send_impl = send
        stream.receive = receive  # type: ignore[method-assign]
        results: dict[str, object] = {}
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(outcome, results, "reader", c.using())
                await reading.wait()
                tg.start_soon(poll)
        assert results["reader"] == "default"
        assert poll_scope.cancelled_caught and "poll" not in results
        await assert_unusable(c, stream)
    async with connect(server.address, watch=tube) as other:
        with anyio.fail_after(5):
            job = await other.reserve(timeout=2)
        assert job == bp.Job(job_id, b"job")
        assert (await other.stats_job(job)).pri == 5
        await other.delete(job)


async def test_aclose_closes_when_the_quit_cannot_be_sent(server: Server, tube: str) -> None:
    stream = await hooked(server.address)
    async with Client(stream, use=tube) as c:
        await c.put(b"x")
        sent: list[bytes] = []

        async def broken(item: bytes) -> None:
            sent.append(item)
            raise anyio.BrokenResourceError("connection reset")

        stream.send_impl = broken
        with anyio.fail_after(5):
            await c.aclose()
        assert sent == [b"quit\r\n"]
        await assert_unusable(c, stream)
        assert sent == [b"quit\r\n"]  # later calls write nothing


async def test_an_invalid_max_body_size_leaves_no_connection(
    fresh_server: Callable[..., Server],
) -> None:
    srv = fresh_server()
    with anyio.fail_after(5):
        for bad, error in ((-1, bp.InvalidArgument), (1.5, TypeError)):
            with pytest.raises(error):
                async with connect(srv.address, max_body_size=bad):  # type: ignore[arg-type]
                    pytest.fail("connected with an invalid max_body_size")
        async with connect(srv.address) as check:
            while (await check.stats()).current_connections != 1:
                await anyio.sleep(0.01)
