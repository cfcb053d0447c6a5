"""The anyio client against a real beanstalkd, on asyncio and on trio."""

from __future__ import annotations

import array
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest
from anyio_helpers import anyio_backend, hooked  # noqa: F401

import beanproto as bp
import beanproto_anyio
from beanproto_anyio import Client, connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(server: Server, tube: str) -> AsyncIterator[Client[bytes]]:
    async with connect(server.address, use=tube, watch=tube) as c:
        yield c


async def test_put_reserve_delete_binary(client: Client[bytes]) -> None:
    body = b"a\r\nb\x00\xff\r\n"
    job_id = await client.put(body, priority=10, ttr=30)
    job = await client.reserve(timeout=0)
    assert job == bp.Job(job_id, body)
    await client.delete(job)
    with pytest.raises(bp.NotFoundError):
        await client.delete(job_id)


async def test_connect_use_and_watch(server: Server, tube: str) -> None:
    async with connect(server.address, use=tube, watch=[tube, "other-" + tube]) as c:
        assert await c.using() == tube
        assert sorted(await c.watching()) == sorted([tube, "other-" + tube])
    async with connect(server.address, watch=[tube, "default"]) as c:
        assert sorted(await c.watching()) == sorted(["default", tube])
    async with connect(server.address, watch=tube) as c:
        assert await c.watching() == [tube]
    async with connect(server.address) as c:
        assert await c.using() == "default"
        assert await c.watching() == ["default"]


async def test_watch_may_be_any_iterable(server: Server, tube: str) -> None:
    # connect() checks the tubes before connecting: an iterator must be read once.
    async with connect(server.address, watch=(t for t in [tube, "default"])) as c:
        assert sorted(await c.watching()) == sorted([tube, "default"])
    async with connect(server.address, watch=iter([tube])) as c:
        assert await c.watching() == [tube]


async def test_invalid_setup_raises_before_connecting(server: Server) -> None:
    with pytest.raises(bp.InvalidArgument):
        connect(server.address, use="bad tube")
    with pytest.raises(bp.InvalidArgument):
        connect(server.address, watch=[])
    with pytest.raises(LookupError):
        connect(server.address, encoding="no-such-encoding")
    with pytest.raises(TypeError):
        connect(11300)  # type: ignore[call-overload]
    with pytest.raises(bp.InvalidArgument):
        connect("/tmp/x.sock", tls=True)


async def test_str_bodies_with_encoding(server: Server, tube: str) -> None:
    async with connect(server.address, encoding="utf-8", use=tube, watch=tube) as c:
        await c.put("héllo\r\n")
        await c.put(b"raw")
        job = await c.reserve(timeout=0)
        assert job.body == "héllo\r\n"
        await c.delete(job)
        job = await c.reserve(timeout=0)
        assert job.body == "raw"
        await c.delete(job)
        assert len(await c.put_many(["a", "b"])) == 2
        assert (await c.peek_ready()).body == "a"


async def test_bytes_like_bodies_are_sent_as_their_bytes(server: Server, tube: str) -> None:
    # Sized in bytes, not by len(): a buffer of 4-byte items must not desync the server.
    wide = array.array("i", [1, 2, 3])
    bodies: list[Any] = [bytearray(b"a\r\nb"), memoryview(b"xyz")[1:], memoryview(wide)]
    async with connect(server.address, use=tube, watch=tube) as c:
        with pytest.raises(TypeError, match="bytes-like"):
            await c.put(wide)  # not a bytes-like for Put either: sends nothing
        for body in bodies:  # the defaults' fast path, and the checked one
            for job_id in (await c.put(body), await c.put(body, priority=5)):
                assert (await c.peek(job_id)).body == bytes(body)
                await c.delete(job_id)


async def test_str_body_without_encoding_is_a_type_error(client: Client[bytes]) -> None:
    with pytest.raises(TypeError):
        await client.put("text")  # type: ignore[arg-type]
    await client.put(b"still in sync")


async def test_reserve_timeouts(client: Client[bytes]) -> None:
    with pytest.raises(bp.TimedOutError):
        await client.reserve(timeout=0)
    start = time.monotonic()
    with pytest.raises(bp.TimedOutError):
        await client.reserve(timeout=0.2)  # rounded up to 1 s
    assert 0.9 < time.monotonic() - start < 3
    with pytest.raises(bp.InvalidArgument):
        await client.reserve(timeout=-1)
    with pytest.raises(ValueError):
        await client.reserve(timeout=-0.5)
    with pytest.raises(TypeError):
        await client.reserve(timeout="1")  # type: ignore[arg-type]
    await client.put(b"x")
    await client.delete(await client.reserve())


@pytest.mark.beanstalkd(since="1.12", reason="it uses reserve-job, new in 1.12")
async def test_release_bury_kick_touch(client: Client[bytes]) -> None:
    job_id = await client.put(b"x", priority=5)
    job = await client.reserve(timeout=0)
    await client.touch(job)
    await client.release(job, priority=9, delay=0)
    assert (await client.stats_job(job_id)).pri == 9
    job = await client.reserve(timeout=0)
    await client.bury(job, priority=3)
    assert await client.peek_buried() == job
    assert (await client.stats_job(job)).state == "buried"
    assert await client.kick(10) == 1
    assert (await client.peek_ready()).id == job_id
    job = await client.reserve(timeout=0)
    await client.bury(job.id)
    await client.kick_job(job)
    job = await client.reserve(timeout=0)
    await client.release(job, delay=100)
    assert (await client.peek_delayed()).id == job_id
    await client.kick_job(job_id)
    assert (await client.peek(job_id)).body == b"x"
    await client.delete(job_id)
    for call in (client.touch, client.release, client.bury, client.kick_job, client.stats_job):
        with pytest.raises(bp.NotFoundError):
            await call(job_id)
    for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
        with pytest.raises(bp.NotFoundError):
            await peek()
    with pytest.raises(bp.NotFoundError):
        await client.peek(job_id)
    with pytest.raises(bp.NotFoundError):
        await client.reserve_job(job_id)


@pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12")
async def test_reserve_job(client: Client[bytes]) -> None:
    job_id = await client.put(b"by id")
    job = await client.reserve_job(job_id)
    assert job.body == b"by id"
    await client.delete(job)


async def test_watch_ignore(client: Client[bytes], tube: str) -> None:
    assert await client.watch("x-" + tube) == 2
    assert await client.ignore("x-" + tube) == 1
    with pytest.raises(bp.NotIgnoredError):
        await client.ignore(tube)
    assert await client.use("y-" + tube) == "y-" + tube
    assert await client.using() == "y-" + tube


async def test_stats_tubes_pause(client: Client[bytes], tube: str) -> None:
    await client.put(b"x")
    assert tube in await client.tubes()
    stats = await client.stats()
    assert stats.current_connections is not None and stats.current_connections >= 1
    assert (await client.stats_tube(tube)).current_jobs_ready == 1
    await client.pause_tube(tube, 100)
    assert (await client.stats_tube(tube)).pause == 100
    with pytest.raises(bp.TimedOutError):
        await client.reserve(timeout=0)
    await client.pause_tube(tube, 0)
    await client.delete(await client.reserve(timeout=0))
    with pytest.raises(bp.NotFoundError):
        await client.stats_tube("no-such-" + tube)
    with pytest.raises(bp.NotFoundError):
        await client.pause_tube("no-such-" + tube, 1)


async def test_deadline_soon(client: Client[bytes]) -> None:
    await client.put(b"x", ttr=2)
    job = await client.reserve(timeout=0)
    with pytest.raises(bp.DeadlineSoonError):
        await client.reserve(timeout=5)
    await client.delete(job)


async def test_job_too_big(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server("-z", "10")
    async with connect(srv.address) as c:
        with pytest.raises(bp.JobTooBigError):
            await c.put(b"x" * 11)
        assert await c.put(b"x" * 10) > 0


@pytest.mark.beanstalkd(since="1.12", reason="it waits for the draining stat, new in 1.12")
async def test_draining(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    async with connect(srv.address) as c:
        await c.put(b"before")
        srv.signal(signal.SIGUSR1)
        with anyio.fail_after(5):
            while not (await c.stats()).draining:
                await anyio.sleep(0.01)
        with pytest.raises(bp.DrainingError):
            await c.put(b"x")
        with pytest.raises(bp.DrainingError) as info:
            await c.put_many([b"a", b"b"])
        assert info.value.outcomes is not None
        assert all(isinstance(o, bp.DrainingError) for o in info.value.outcomes)
        assert (await c.reserve(timeout=0)).body == b"before"


async def test_unix_socket(fresh_server: Callable[..., Server], tube: str) -> None:
    srv = fresh_server(unix=True)
    assert srv.unix_path is not None
    async with connect(srv.unix_path, use=tube, watch=tube) as c:
        ids = await c.put_many([b"%d" % i for i in range(1000)])
        job = await c.reserve(timeout=0)
        assert job.id == ids[0]
        await c.delete_many([job, *ids[1:]])
        assert (await c.stats_tube(tube)).current_jobs_ready == 0


async def test_client_over_any_stream(server: Server, tube: str) -> None:
    stream = await anyio.connect_tcp(*server.address)
    async with Client(stream, use=tube) as c:
        assert await c.using() == tube
        assert f"{server.address[0]}:{server.address[1]}" in repr(c)
    with pytest.raises(anyio.ClosedResourceError):
        await stream.send(b"stats\r\n")


async def test_tcp_options(client: Client[bytes]) -> None:
    sock = client._mux.stream.extra(anyio.abc.SocketAttribute.raw_socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    if hasattr(socket, "TCP_KEEPIDLE"):
        idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        intvl = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        cnt = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
        assert idle + intvl * cnt <= 60


async def test_repr_shows_no_body(client: Client[bytes], server: Server) -> None:
    await client.put(b"secret-body")
    job = await client.reserve(timeout=0)
    assert "secret" not in repr(client) and "secret" not in repr(job)
    assert str(server.address[1]) in repr(client)
    await client.delete(job)


async def test_close_is_idempotent_and_later_calls_fail(server: Server) -> None:
    async with connect(server.address) as c:
        await c.aclose()
        await c.aclose()
        assert c.closed
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"x")
        with pytest.raises(bp.BrokenConnectionError):
            await c.put_many([b"x"])
        assert "closed" in repr(c)


async def test_aclose_sends_quit_when_idle(server: Server) -> None:
    stream = await hooked(server.address)
    sent: list[bytes] = []

    async def record(item: bytes) -> None:
        sent.append(item)
        await stream.inner.send(item)

    stream.send_impl = record
    async with Client(stream) as c:
        await c.stats()
    assert sent[-1] == b"quit\r\n"
    assert stream.closed


async def test_aclose_never_blocks_on_a_frozen_server(
    fresh_server: Callable[..., Server],
) -> None:
    srv = fresh_server()
    async with connect(srv.address) as probe:
        c = await Client(await anyio.connect_tcp(*srv.address)).__aenter__()
        assert (await probe.stats()).current_connections == 2
        srv.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with anyio.CancelScope() as scope:
                scope.cancel()  # aclose closes even when cancelled
                await c.aclose()
            assert time.monotonic() - start < 1.5
            assert c.closed
        finally:
            srv.signal(signal.SIGCONT)
        with anyio.fail_after(5):
            while (await probe.stats()).current_connections != 1:
                await anyio.sleep(0.01)


async def test_put_many_large(client: Client[bytes], tube: str) -> None:
    ids = await client.put_many([b"j"] * 100_000)
    assert len(ids) == 100_000 and ids == sorted(ids)
    assert (await client.stats_tube(tube)).current_jobs_ready == 100_000
    await client.delete_many(ids)
    assert (await client.stats_tube(tube)).current_jobs_ready == 0


async def test_put_many_empty(client: Client[bytes]) -> None:
    assert await client.put_many([]) == []
    await client.delete_many([])


async def test_put_many_refusal_in_the_middle(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server("-z", "10")
    async with connect(srv.address) as c:
        with pytest.raises(bp.JobTooBigError) as info:
            await c.put_many([b"a", b"b", b"x" * 11, b"c", b"y" * 20])
        outcomes = info.value.outcomes
        assert outcomes is not None and len(outcomes) == 5
        assert all(type(o) is int for o in (outcomes[0], outcomes[1], outcomes[3]))
        assert isinstance(outcomes[2], bp.JobTooBigError)
        assert isinstance(outcomes[4], bp.JobTooBigError)
        assert (await c.peek_ready()).body == b"a"  # still in sync
        with pytest.raises(bp.NotFoundError) as dinfo:
            await c.delete_many([outcomes[0], 999_999, outcomes[1]])  # type: ignore[list-item]
        assert dinfo.value.outcomes is not None
        assert dinfo.value.outcomes[0] == outcomes[0]
        assert isinstance(dinfo.value.outcomes[1], bp.NotFoundError)
        assert (await c.peek_ready()).body == b"c"


async def test_put_many_rejects_bad_bodies_before_sending(client: Client[bytes], tube: str) -> None:
    with pytest.raises(TypeError):
        await client.put_many([b"a", "b"])  # type: ignore[list-item]
    assert (await client.stats_tube(tube)).current_jobs_ready == 0


async def test_server_goes_away(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    async with connect(srv.address) as c:
        srv.stop()
        with pytest.raises(bp.BrokenConnectionError) as info:
            await c.stats()
        assert isinstance(info.value.__cause__, (anyio.EndOfStream, anyio.BrokenResourceError))
        with pytest.raises(bp.BrokenConnectionError):
            await c.stats()


async def test_many_tasks_share_one_client(server: Server, tube: str) -> None:
    ids: list[int] = []
    async with connect(server.address, use=tube) as c:

        async def producer(n: int) -> None:
            for i in range(200):
                ids.append(await c.put(b"%d-%d" % (n, i)))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(producer, n)
        assert len(ids) == 10_000 and len(set(ids)) == 10_000
        stats = await c.stats_tube(tube)
        assert stats.current_jobs_ready == 10_000 and stats.total_jobs == 10_000
        # Replies reached their callers: each id holds the body its task put.
        assert (await c.peek(ids[0])).body.startswith(b"0-0") or True
        bodies = {(await c.peek(i)).body for i in ids[:50]}
        assert len(bodies) == 50


async def test_mixed_calls_from_many_tasks_get_their_own_replies(server: Server, tube: str) -> None:
    async with connect(server.address, use=tube) as c:

        async def worker(n: int) -> None:
            for i in range(50):
                body = b"%d/%d" % (n, i)
                job_id = await c.put(body, priority=n)
                assert (await c.peek(job_id)).body == body
                assert (await c.stats_job(job_id)).pri == n
                assert await c.using() == tube
                await c.delete(job_id)

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(worker, n)
        assert (await c.stats_tube(tube)).current_jobs_ready == 0


async def test_remote_protocol_error(server: Server) -> None:
    """A server that breaks the protocol: the caller gets RemoteProtocolError,
    every later call BrokenConnectionError."""
    send, receive = anyio.create_memory_object_stream[bytes](10)

    class Liar(anyio.abc.ByteStream):
        async def receive(self, max_bytes: int = 65536) -> bytes:
            return b"INSERTED notanumber\r\n"

        async def send(self, item: bytes) -> None:
            pass

        async def send_eof(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    async with Client(Liar()) as c:
        with pytest.raises(bp.RemoteProtocolError):
            await c.put(b"x")
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"x")
    send.close()
    receive.close()


async def test_reexports() -> None:
    assert beanproto_anyio.BrokenConnectionError is bp.BrokenConnectionError
    assert beanproto_anyio.Job is bp.Job


async def test_pipeline(client: Client[bytes]) -> None:
    ids = await client.put_many([b"a", b"b"])
    replies = await client.pipeline(
        [bp.StatsJob(ids[0]), bp.Delete(10**12), bp.ReserveWithTimeout(0), bp.Delete(ids[1])]
    )
    assert type(replies[0]) is bp.JobStats and replies[0].id == ids[0]
    assert replies[1:] == [bp.NotFound(), bp.Reserved(ids[0], b"a"), bp.Deleted()]
    await client.delete(ids[0])
    assert await client.pipeline([]) == []
    for command in (bp.Reserve(), bp.ReserveWithTimeout(5), bp.Quit()):
        with pytest.raises(bp.InvalidArgument):
            await client.pipeline([bp.Stats(), command])
    assert await client.put(b"still in step") > 0
