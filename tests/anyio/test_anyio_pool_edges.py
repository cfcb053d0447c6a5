"""``beanproto_anyio.Pool`` at its edges, on asyncio and trio: constructor checks, a
closed pool, refusals that keep the link, drain mode, a link left behind on
``use``, servers that break during a call, tasks racing on one server (real
beanstalkd servers, and a scripted one for replies a real server never gives)."""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener
from anyio_helpers import anyio_backend  # noqa: F401

import beanproto as bp
from beanproto.address import describe
from beanproto.pool import key_index
from beanproto_anyio import Pool
from beanproto_sync import Client
from conftest import Server, ready_count

pytestmark = pytest.mark.anyio


def _key_for(index: int, n: int) -> str:
    """A key whose server is ``index`` among ``n``."""
    return next(f"key-{i}" for i in range(1000) if key_index(f"key-{i}", n) == index)


async def _drain_mode(srv: Server) -> None:
    """Put ``srv`` in drain mode (SIGUSR1) and wait until it says so."""
    srv.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    with Client(srv.address, timeout=5) as c:
        while not c.stats().draining:
            assert time.monotonic() < deadline, "the server did not enter drain mode"
            await anyio.sleep(0.01)


def _notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


@contextlib.asynccontextmanager
async def _scripted(replies: list[bytes]) -> AsyncIterator[tuple[str, int]]:
    """A listening socket whose connection gets ``replies``, one per command read
    (a ``put``'s body with its line), then nothing more; yields its address."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        buffered = BufferedByteReceiveStream(stream)
        with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead, OSError):
            async with stream:
                for reply in replies:
                    line = await buffered.receive_until(b"\r\n", 65536)
                    if line.startswith(b"put "):
                        await buffered.receive_exactly(int(line.split()[-1]) + 2)
                    await stream.send(reply)
                await anyio.sleep_forever()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield ("127.0.0.1", port)
        tg.cancel_scope.cancel()


# -- construction ----------------------------------------------------------------------


async def test_watch_may_be_any_iterable_read_once(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    async with Pool(a.address, watch=iter([tube, tube, "default"])) as pool:
        assert pool.watching() == [tube, "default"]
        assert (await pool.stats_tube(tube))[a.name].current_watching == 1
        with Client(a.address, use=tube, timeout=5) as c:
            c.put(b"seen")
        job = await pool.reserve(timeout=1)
        assert job.body == b"seen" and job.server == a.name
        await pool.delete(job)


async def test_tls_needs_tcp_addresses(fresh_server: Callable[..., Server]) -> None:
    a = fresh_server()
    for kwargs in ({"tls": True}, {"ssl_context": ssl.create_default_context()}):
        with pytest.raises(bp.InvalidArgument, match="Unix socket"):
            Pool([a.address, "unix:///nonexistent/beanstalkd.sock"], **kwargs)  # type: ignore[arg-type]


async def test_tls_with_the_default_context_checks_the_certificate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``tls=True`` alone uses the system's trust: a certificate from an unknown CA
    fails the handshake, so the server is down."""
    trustme = pytest.importorskip("trustme")
    caplog.set_level(logging.WARNING, logger="beanproto.pool")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_ctx, standard_compatible=False)

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await stream.aclose()  # pragma: no cover - the handshake fails first

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        with anyio.fail_after(10), pytest.raises(bp.BrokenConnectionError, match="every server"):
            async with Pool(("127.0.0.1", port), tls=True):
                pass  # pragma: no cover
        tg.cancel_scope.cancel()
    down = [r.getMessage() for r in caplog.records if r.name == "beanproto.pool"]
    assert len(down) == 1 and f"server 127.0.0.1:{port} is down" in down[0]
    assert "certificate verify failed" in down[0].lower()


# -- a closed pool ---------------------------------------------------------------------


async def test_every_call_of_a_closed_pool_raises(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    async with Pool(a.address, use=tube) as pool:
        assert not pool.closed
        ref = await pool.put(b"kept")
    assert pool.closed
    assert repr(pool) == f"<beanproto_anyio.Pool {a.name} closed>"
    calls: list[Callable[[], Any]] = [
        lambda: pool.put(b"x"),
        lambda: pool.put_many([b"x"]),
        lambda: pool.reserve(timeout=0),
        lambda: pool.delete(ref),
        lambda: pool.peek(ref),
        lambda: pool.stats(),
        lambda: pool.watch(tube),
        lambda: pool.use(tube),
    ]
    for call in calls:
        with pytest.raises(bp.BrokenConnectionError, match="the pool was closed"):
            await call()
    assert ready_count(a, tube) == 1  # the job is still there; nothing was deleted


async def test_closed_while_a_task_connects(fresh_server: Callable[..., Server], tube: str) -> None:
    """``aclose()`` while a task waits for a new connection's setup: that connection
    is closed as it opens, and the task's call raises."""
    a = fresh_server()
    pool = Pool(a.address, watch=tube)  # not entered: no connection yet
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await pool.stats()
        except bp.BrokenConnectionError as exc:
            outcome.append(exc)

    a.signal(signal.SIGSTOP)  # the connection opens, its `watch` is not answered
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(0.2)
            await pool.aclose()
            a.signal(signal.SIGCONT)
    finally:
        a.signal(signal.SIGCONT)
    assert [str(e) for e in outcome] == ["the pool was closed"]
    with Client(a.address, timeout=5) as c:
        deadline = time.monotonic() + 5
        while c.stats().current_connections > 1:  # only this one: the pool's was closed
            assert time.monotonic() < deadline, "the pool left its connection open"
            await anyio.sleep(0.01)


# -- refusals keep the link ------------------------------------------------------------


async def test_a_refused_call_on_one_server_keeps_its_link(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    async with Pool(a.address, use=tube, watch=tube) as pool:
        ref = await pool.put(b"x")
        await pool.delete(ref)
        with pytest.raises(bp.NotFoundError):
            await pool.delete(ref)
        with pytest.raises(bp.NotFoundError):
            await pool.kick_job(ref)
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} up>"
        again = await pool.put(b"y")
        assert again.server == a.name and again.id == ref.id + 1
        # One connection all along (the other is the test's readiness probe).
        assert (await pool.stats())[a.name].total_connections == 2
        a.kill()
        with pytest.raises(bp.BrokenConnectionError, match=a.name) as info:
            await pool.delete(again)  # the link breaks during the call
        assert "is down" not in str(info.value)
        with pytest.raises(bp.BrokenConnectionError, match=rf"{a.name} is down \(stats-job\)"):
            await pool.stats_job(again)
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} down>"


async def test_a_put_the_server_refuses_names_it_and_keeps_the_link(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server("-z", "10")
    async with Pool(a.address, use=tube) as pool:
        with pytest.raises(bp.JobTooBigError) as info:
            await pool.put(b"x" * 11)
        if hasattr(info.value, "add_note"):
            assert f"server {a.name}" in _notes(info.value)
        with pytest.raises(bp.JobTooBigError):
            await pool.put(b"y" * 20, key="k")  # a keyed put is refused the same way
        assert (await pool.put(b"x" * 10)).server == a.name
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} up>"
        assert (await pool.stats())[a.name].total_connections == 2  # the probe's, the pool's
    assert ready_count(a, tube) == 1


async def test_a_reserve_refused_with_deadline_soon_names_the_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    async with Pool(a.address, use=tube, watch=tube) as pool:
        await pool.put(b"short", ttr=1)
        job = await pool.reserve(timeout=1)
        with pytest.raises(bp.DeadlineSoonError) as info:
            await pool.reserve(timeout=1)
        if hasattr(info.value, "add_note"):
            assert f"server {a.name}" in _notes(info.value)
        await pool.delete(job)  # the link is still up, with the job reserved on it
        with pytest.raises(bp.TimedOutError):
            await pool.reserve(timeout=0)


# -- per-job calls by ref --------------------------------------------------------------


async def test_per_job_calls_take_refs(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube, watch=tube) as pool:
        ref = await pool.put(b"delayed", delay=60, key=_key_for(1, 2))
        assert ref.server == b.name
        peeked = await pool.peek(ref)
        assert (peeked.id, peeked.body, peeked.server) == (ref.id, b"delayed", b.name)
        assert (await pool.stats_job(ref)).state == "delayed"
        await pool.kick_job(ref)
        assert (await pool.stats_job(ref)).state == "ready"
        job = await pool.reserve_job(ref)
        assert (job.id, job.body, job.server) == (ref.id, b"delayed", b.name)
        assert (await pool.stats_job(ref)).state == "reserved"
        with pytest.raises(bp.NotFoundError):
            await pool.reserve_job(ref)  # already reserved
        await pool.delete(job)
        with pytest.raises(bp.NotFoundError):
            await pool.peek(ref)
    assert ready_count(a, tube) == 0 and ready_count(b, tube) == 0


# -- watch and ignore ------------------------------------------------------------------


async def test_watch_and_ignore_edges(fresh_server: Callable[..., Server], tube: str) -> None:
    a = fresh_server()
    async with Pool(a.address, watch=tube) as pool:
        assert await pool.watch(tube) == 1  # already watched: nothing changes
        assert await pool.ignore("default") == 1  # not watched: nothing changes
        with pytest.raises(bp.NotIgnoredError, match="last watched tube"):
            await pool.ignore(tube)
        assert pool.watching() == [tube]
        assert await pool.watch("default") == 2
        assert await pool.ignore(tube) == 1
        assert pool.watching() == ["default"]
        assert (await pool.stats_tube("default"))[a.name].current_watching == 1
        assert await pool.stats_tube(tube) == {}  # nobody watches or uses it now: gone
        with pytest.raises(bp.NotFoundError, match="no server has tube"):
            await pool.pause_tube(tube, 1)


# -- drain mode ------------------------------------------------------------------------


@pytest.mark.beanstalkd(since="1.12", reason="stats draining is new in 1.12")
async def test_draining_servers_are_skipped_then_refuse(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube) as pool:
        await _drain_mode(a)
        refs = [await pool.put(b"x%d" % i) for i in range(4)]
        assert {r.server for r in refs} == {b.name}
        batch = await pool.put_many([b"1", b"2"])
        assert {r.server for r in batch} == {b.name}
        with pytest.raises(bp.DrainingError):
            await pool.put(b"keyed", key=_key_for(0, 2))  # not moved to b
        assert (await pool.put(b"keyed", key=_key_for(1, 2))).server == b.name
        await _drain_mode(b)
        with pytest.raises(bp.DrainingError):
            await pool.put(b"nowhere")
        assert "up" in repr(pool) and "down" not in repr(pool)  # draining is not down
    assert ready_count(a, tube) == 0 and ready_count(b, tube) == 7


# -- servers breaking ------------------------------------------------------------------


async def test_puts_when_every_server_is_down(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube) as pool:
        a.kill()
        b.kill()
        # The first put of each server finds its link broken during the put.
        with pytest.raises(bp.BrokenConnectionError, match="may or may not"):
            await pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="may or may not"):
            await pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            await pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="not moved"):
            await pool.put(b"x", key=_key_for(0, 2))
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} down, {b.name} down>"


async def test_operator_calls_leave_out_a_server_that_breaks(
    fresh_server: Callable[..., Server], tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube) as pool:
        a.kill()
        assert list(await pool.stats()) == [b.name]  # a broke during the call
        assert f"server {a.name} went down" in caplog.text
        assert f"left out (down): {a.name}" in caplog.text
        assert list(await pool.tubes()) == [b.name]  # a is down now: left out at once
        b.kill()
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            await pool.stats()
        with pytest.raises(bp.BrokenConnectionError, match=a.name):
            await pool.delete(bp.JobRef(a.name, 1))


async def test_reserve_when_servers_break(
    fresh_server: Callable[..., Server], tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube, watch=tube) as pool:
        a.kill()
        started = time.monotonic()
        with pytest.raises(bp.TimedOutError, match="no job came in time"):
            await pool.reserve(timeout=0.2)  # a broke during the first poll; b polled on
        assert 0.15 < time.monotonic() - started < 2
        assert f"server {a.name} went down" in caplog.text
        await pool.put(b"on b")
        job = await pool.reserve(timeout=1)
        assert job.server == b.name and job.body == b"on b"
        await pool.delete(job)
        b.kill()
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            await pool.reserve(timeout=1)
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            await pool.reserve()


async def test_two_tasks_on_a_link_that_breaks(
    fresh_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    """Both calls were on the link when it broke: the second finds it already
    dropped, and both leave the server out."""
    caplog.set_level(logging.WARNING, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address]) as pool:
        results: list[object] = []

        async def call() -> None:
            try:
                results.append(sorted(await pool.stats()))
            except Exception as exc:
                results.append(exc)

        a.signal(signal.SIGSTOP)  # the calls wait for its reply
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(call)
                await anyio.sleep(0.2)
                a.kill()
        assert results == [[b.name], [b.name]]
        assert caplog.text.count(f"server {a.name} went down") == 1
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} down, {b.name} up>"


async def test_a_link_another_task_opened_meanwhile(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    """Two tasks call a pool not yet connected: one connects, the other waits for it
    and uses the same connection."""
    a = fresh_server()
    pool = Pool(a.address, use=tube)
    assert repr(pool) == f"<beanproto_anyio.Pool {a.name} idle>"
    refs: list[bp.JobRef] = []

    async def put(body: bytes) -> None:
        refs.append(await pool.put(body))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(put, b"one")
            tg.start_soon(put, b"two")
        assert sorted(r.id for r in refs) == [1, 2]
        # One connection (and the readiness probe's): both puts went over it.
        assert (await pool.stats())[a.name].total_connections == 2
        assert repr(pool) == f"<beanproto_anyio.Pool {a.name} up>"
    finally:
        await pool.aclose()
    assert ready_count(a, tube) == 2


# -- replies a real server never gives -------------------------------------------------


async def test_a_use_left_behind_breaks_before_the_put(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    """The pool's ``use`` was refused by the first server (so the others never
    got it); later puts on those send ``use`` first, and a connection that breaks
    then has sent nothing of the put: a keyed put raises, a round-robin one moves
    on. A ``use`` refused before a put raises, and nothing was put."""
    replies = [
        b"INTERNAL_ERROR\r\n",  # the pool's use
        b"INTERNAL_ERROR\r\n",  # the use before a put
        f"USING {tube}\r\n".encode(),  # the use before the next put
        b"INSERTED 42\r\n",
        b"INSERTED 43\r\n",
    ]
    a, b = fresh_server(), fresh_server()
    async with _scripted(replies) as fake:
        fake_name = describe(fake)
        async with Pool([fake, a.address, b.address]) as pool:
            with pytest.raises(bp.InternalServerError):
                await pool.use(tube)  # refused by the first server: the link is kept
            assert pool.using() == tube
            a.kill()
            b.kill()
            with pytest.raises(bp.BrokenConnectionError, match=a.name) as info:
                await pool.put(b"keyed", key=_key_for(1, 3))
            assert "may or may not" not in str(info.value)  # the put was never sent
            # Round-robin from the first server, which refuses the use: raised.
            with pytest.raises(bp.InternalServerError):
                await pool.put(b"zero")
            # From the second: a is down, b's use breaks, the put lands on the fake.
            assert await pool.put(b"one") == bp.JobRef(fake_name, 42)
            # From the third: b is down now, the fake takes it.
            assert await pool.put(b"two") == bp.JobRef(fake_name, 43)
            assert repr(pool) == (
                f"<beanproto_anyio.Pool {fake_name} up, {a.name} down, {b.name} down>"
            )


async def test_a_body_that_does_not_decode_names_its_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    first, second = fresh_server(), fresh_server()
    with Client(second.address, use=tube) as c:
        c.put(b"\xff not utf-8")
    async with Pool([first.address, second.address], watch=tube, encoding="utf-8") as pool:
        with pytest.raises(bp.BodyDecodeError) as caught:
            await pool.reserve(timeout=0)
        assert caught.value.server == second.name
        await pool.bury(caught.value.ref)
        assert (await pool.stats_tube(tube))[second.name].current_jobs_buried == 1


async def test_settings_a_server_would_not_read_whole_are_refused(server: Server) -> None:
    """A tube name too long for ``max_command_size`` is an ``InvalidArgument``, at
    connection (not "every server is down") and in ``use``/``watch``/``ignore``,
    which then change nothing."""
    long = "a" * 60
    with pytest.raises(bp.InvalidArgument, match="max_command_size=64"):
        Pool([server.address], use=long, max_command_size=64)
    async with Pool([server.address], max_command_size=64) as pool:
        for call in (pool.use, pool.watch, pool.ignore):
            with pytest.raises(bp.InvalidArgument, match="max_command_size=64"):
                await call(long)
        assert pool.using() == "default" and pool.watching() == ["default"]
        assert (await pool.put(b"still fine")).server == server.name
