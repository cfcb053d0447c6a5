"""``beanproto_sync.Pool`` at its edges: constructor checks, a closed pool, refusals
that keep the link, drain mode, a link left behind on ``use``, servers that break
during a call (real beanstalkd servers, and a scripted one for replies a real
server never gives)."""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sync_helpers import Peer, scripted_server

import beanproto as bp
from beanproto.address import describe
from beanproto.pool import key_index
from beanproto_sync import Client, Pool
from conftest import Server, free_port, ready_count


def _key_for(index: int, n: int) -> str:
    """A key whose server is ``index`` among ``n``."""
    return next(f"key-{i}" for i in range(1000) if key_index(f"key-{i}", n) == index)


def _drain_mode(srv: Server) -> None:
    """Put ``srv`` in drain mode (SIGUSR1) and wait until it says so."""
    srv.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    with Client(srv.address, timeout=5) as c:
        while not c.stats().draining:
            assert time.monotonic() < deadline, "the server did not enter drain mode"
            time.sleep(0.01)


def _notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


# -- construction ----------------------------------------------------------------------


def test_watch_may_be_any_iterable_read_once(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    with Pool(a.address, watch=iter([tube, tube, "default"]), timeout=5) as pool:
        assert pool.watching() == [tube, "default"]
        assert pool.stats_tube(tube)[a.name].current_watching == 1
        with Client(a.address, use=tube, timeout=5) as c:
            c.put(b"seen")
        job = pool.reserve(timeout=1)
        assert job.body == b"seen" and job.server == a.name
        pool.delete(job)


@pytest.mark.parametrize("timeout", [0, -1, 0.0])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(bp.InvalidArgument, match="positive"):
        Pool(("127.0.0.1", free_port()), timeout=timeout)


def test_tls_needs_tcp_addresses(fresh_server: Callable[..., Server]) -> None:
    a = fresh_server()
    for kwargs in ({"tls": True}, {"ssl_context": ssl.create_default_context()}):
        with pytest.raises(bp.InvalidArgument, match="Unix socket"):
            Pool([a.address, "unix:///nonexistent/beanstalkd.sock"], **kwargs)  # type: ignore[arg-type]


def test_tls_with_the_default_context_to_a_plain_server(
    fresh_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="beanproto.pool")
    a = fresh_server()
    started = time.monotonic()
    with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
        Pool(a.address, tls=True, timeout=1)
    assert time.monotonic() - started < 3
    # The attempt was a TLS handshake (the default context), which a plain server fails.
    assert f"server {a.name} is down" in caplog.text


# -- a closed pool ---------------------------------------------------------------------


def test_every_call_of_a_closed_pool_raises(fresh_server: Callable[..., Server], tube: str) -> None:
    a = fresh_server()
    pool = Pool(a.address, use=tube, timeout=5)
    ref = pool.put(b"kept")
    pool.close()
    assert repr(pool) == f"<beanproto_sync.Pool {a.name} closed>"
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
            call()
    assert ready_count(a, tube) == 1  # the job is still there; nothing was deleted


# -- refusals keep the link ------------------------------------------------------------


def test_a_refused_call_on_one_server_keeps_its_link(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    with Pool(a.address, use=tube, watch=tube, timeout=5) as pool:
        ref = pool.put(b"x")
        pool.delete(ref)
        with pytest.raises(bp.NotFoundError):
            pool.delete(ref)
        with pytest.raises(bp.NotFoundError):
            pool.kick_job(ref)
        assert repr(pool) == f"<beanproto_sync.Pool {a.name} up>"
        again = pool.put(b"y")
        assert again.server == a.name and again.id == ref.id + 1
        # One connection all along (the other is the test's readiness probe).
        assert pool.stats()[a.name].total_connections == 2
        a.kill()
        with pytest.raises(bp.BrokenConnectionError, match=a.name) as info:
            pool.delete(again)  # the link breaks during the call
        assert "is down" not in str(info.value)
        with pytest.raises(bp.BrokenConnectionError, match=rf"{a.name} is down \(stats-job\)"):
            pool.stats_job(again)


def test_a_put_the_server_refuses_names_it_and_keeps_the_link(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server("-z", "10")
    with Pool(a.address, use=tube, timeout=5) as pool:
        with pytest.raises(bp.JobTooBigError) as info:
            pool.put(b"x" * 11)
        if hasattr(info.value, "add_note"):
            assert f"server {a.name}" in _notes(info.value)
        with pytest.raises(bp.JobTooBigError):
            pool.put(b"y" * 20, key="k")  # a keyed put is refused the same way
        assert pool.put(b"x" * 10).server == a.name
        assert repr(pool) == f"<beanproto_sync.Pool {a.name} up>"
        assert pool.stats()[a.name].total_connections == 2  # the probe's, and the pool's
    assert ready_count(a, tube) == 1


def test_a_reserve_refused_with_deadline_soon_names_the_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a = fresh_server()
    with Pool(a.address, use=tube, watch=tube, timeout=5) as pool:
        pool.put(b"short", ttr=1)
        job = pool.reserve(timeout=1)
        with pytest.raises(bp.DeadlineSoonError) as info:
            pool.reserve(timeout=1)
        if hasattr(info.value, "add_note"):
            assert f"server {a.name}" in _notes(info.value)
        pool.delete(job)  # the link is still up, with the job reserved on it
        with pytest.raises(bp.TimedOutError):
            pool.reserve(timeout=0)


# -- per-job calls by ref --------------------------------------------------------------


def test_per_job_calls_take_refs(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, watch=tube, timeout=5) as pool:
        ref = pool.put(b"delayed", delay=60, key=_key_for(1, 2))
        assert ref.server == b.name
        peeked = pool.peek(ref)
        assert (peeked.id, peeked.body, peeked.server) == (ref.id, b"delayed", b.name)
        assert pool.stats_job(ref).state == "delayed"
        pool.kick_job(ref)
        assert pool.stats_job(ref).state == "ready"
        job = pool.reserve_job(ref)
        assert (job.id, job.body, job.server) == (ref.id, b"delayed", b.name)
        assert pool.stats_job(ref).state == "reserved"
        with pytest.raises(bp.NotFoundError):
            pool.reserve_job(ref)  # already reserved
        pool.delete(job)
        with pytest.raises(bp.NotFoundError):
            pool.peek(ref)
    assert ready_count(a, tube) == 0 and ready_count(b, tube) == 0


# -- watch and ignore ------------------------------------------------------------------


def test_watch_and_ignore_edges(fresh_server: Callable[..., Server], tube: str) -> None:
    a = fresh_server()
    with Pool(a.address, watch=tube, timeout=5) as pool:
        assert pool.watch(tube) == 1  # already watched: nothing changes
        assert pool.ignore("default") == 1  # not watched: nothing changes
        with pytest.raises(bp.NotIgnoredError, match="last watched tube"):
            pool.ignore(tube)
        assert pool.watching() == [tube]
        assert pool.watch("default") == 2
        assert pool.ignore(tube) == 1
        assert pool.watching() == ["default"]
        assert pool.stats_tube("default")[a.name].current_watching == 1
        assert pool.stats_tube(tube) == {}  # nobody watches or uses it now: gone


# -- drain mode ------------------------------------------------------------------------


@pytest.mark.beanstalkd(since="1.12", reason="stats draining is new in 1.12")
def test_draining_servers_are_skipped_then_refuse(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        _drain_mode(a)
        refs = [pool.put(b"x%d" % i) for i in range(4)]
        assert {r.server for r in refs} == {b.name}
        batch = pool.put_many([b"1", b"2"])
        assert {r.server for r in batch} == {b.name}
        with pytest.raises(bp.DrainingError):
            pool.put(b"keyed", key=_key_for(0, 2))  # not moved to b
        assert pool.put(b"keyed", key=_key_for(1, 2)).server == b.name
        _drain_mode(b)
        with pytest.raises(bp.DrainingError):
            pool.put(b"nowhere")
        assert "up" in repr(pool) and "down" not in repr(pool)  # draining is not down
    assert ready_count(a, tube) == 0 and ready_count(b, tube) == 7


# -- servers breaking ------------------------------------------------------------------


def test_puts_when_every_server_is_down(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        a.kill()
        b.kill()
        # The first put of each server finds its link broken during the put.
        with pytest.raises(bp.BrokenConnectionError, match="may or may not"):
            pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="may or may not"):
            pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            pool.put(b"x")
        with pytest.raises(bp.BrokenConnectionError, match="not moved"):
            pool.put(b"x", key=_key_for(0, 2))
        assert repr(pool) == f"<beanproto_sync.Pool {a.name} down, {b.name} down>"


def test_operator_calls_leave_out_a_server_that_breaks(
    fresh_server: Callable[..., Server], tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        a.kill()
        assert list(pool.stats()) == [b.name]  # a broke during the call
        assert f"server {a.name} went down" in caplog.text
        assert f"left out (down): {a.name}" in caplog.text
        assert list(pool.tubes()) == [b.name]  # a is down now: left out at once
        b.kill()
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            pool.stats()
        with pytest.raises(bp.BrokenConnectionError, match=a.name):
            pool.delete(bp.JobRef(a.name, 1))


def test_reserve_when_servers_break(
    fresh_server: Callable[..., Server], tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, watch=tube, timeout=5) as pool:
        a.kill()
        started = time.monotonic()
        with pytest.raises(bp.TimedOutError, match="no job came in time"):
            pool.reserve(timeout=0.2)  # a broke during the first poll; b polled on
        assert 0.15 < time.monotonic() - started < 2
        assert f"server {a.name} went down" in caplog.text
        pool.put(b"on b")
        job = pool.reserve(timeout=1)
        assert job.server == b.name and job.body == b"on b"
        pool.delete(job)
        b.kill()
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            pool.reserve(timeout=1)
        with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
            pool.reserve()


def test_two_threads_on_a_link_that_breaks(
    fresh_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    """Both calls were on the link when it broke: the second finds it already dropped."""
    caplog.set_level(logging.WARNING, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], timeout=5) as pool:
        results: list[object] = []

        def call() -> None:
            try:
                results.append(sorted(pool.stats()))
            except BaseException as exc:  # pragma: no cover - reported by the assert
                results.append(exc)

        a.signal(signal.SIGSTOP)  # the calls wait for its reply
        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.15)
        a.kill()
        for t in threads:
            t.join(5)
        assert results == [[b.name], [b.name]]
        assert caplog.text.count(f"server {a.name} went down") == 1
        assert repr(pool) == f"<beanproto_sync.Pool {a.name} down, {b.name} up>"


class _RaceLock:
    """A server's connect lock that lets ``before`` run (once) just before it is taken."""

    def __init__(self, inner: Any, before: Callable[[], None]) -> None:
        self.inner = inner
        self.before: Callable[[], None] | None = before

    def __enter__(self) -> Any:
        before, self.before = self.before, None
        if before is not None:
            before()
        return self.inner.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)


def test_a_link_another_thread_reconnected_meanwhile(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    b.kill()
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        assert repr(pool) == f"<beanproto_sync.Pool {a.name} up, {b.name} down>"
        restarted(b)
        time.sleep(0.15)  # the first retry is due after 0.1 s
        s = pool._servers[1]

        def other_thread_connects() -> None:
            t = threading.Thread(target=pool._link, args=(s,))
            t.start()
            t.join(5)

        s.lock = _RaceLock(s.lock, other_thread_connects)
        ref = pool.put(b"x", key=_key_for(1, 2))
        assert ref.server == b.name
        # One connection (and the readiness probe's): the put used the link the
        # other thread opened.
        assert pool.stats()[b.name].total_connections == 2
        assert caplog.text.count(f"server {b.name} is back") == 1
    assert ready_count(b, tube) == 1


# -- replies a real server never gives -------------------------------------------------


def test_a_use_left_behind_breaks_before_the_put(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    """The pool's ``use`` was refused by the first server (so the others never
    got it); later puts on those send ``use`` first, and a connection that breaks
    then has sent nothing of the put: a keyed put raises, a round-robin one moves
    on. A ``use`` refused before a put raises, and nothing was put."""

    def script(peer: Peer) -> None:
        for _ in range(2):
            assert peer.read_commands()  # the pool's use, then the one before a put
            peer.send(b"INTERNAL_ERROR\r\n")
        assert peer.read_commands()  # use again, before the next put
        peer.send(f"USING {tube}\r\n".encode())
        for id in (42, 43):
            assert peer.read_commands()  # a put
            peer.send(b"INSERTED %d\r\n" % id)

    a, b = fresh_server(), fresh_server()
    with scripted_server(script) as fake:
        fake_name = describe(fake)
        with Pool([fake, a.address, b.address], timeout=5) as pool:
            with pytest.raises(bp.InternalServerError):
                pool.use(tube)  # refused by the first server: the link is kept
            assert pool.using() == tube
            a.kill()
            b.kill()
            with pytest.raises(bp.BrokenConnectionError, match=a.name) as info:
                pool.put(b"keyed", key=_key_for(1, 3))
            assert "may or may not" not in str(info.value)  # the put was never sent
            # Round-robin from the first server, which refuses the use: raised.
            with pytest.raises(bp.InternalServerError):
                pool.put(b"zero")
            # From the second: a is down, b's use breaks, the put lands on the fake.
            assert pool.put(b"one") == bp.JobRef(fake_name, 42)
            # From the third: b is down now, the fake takes it.
            assert pool.put(b"two") == bp.JobRef(fake_name, 43)
            assert repr(pool) == (
                f"<beanproto_sync.Pool {fake_name} up, {a.name} down, {b.name} down>"
            )


def test_a_body_that_does_not_decode_names_its_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    first, second = fresh_server(), fresh_server()
    with Client(second.address, use=tube) as c:
        c.put(b"\xff not utf-8")
    with Pool([first.address, second.address], watch=tube, encoding="utf-8", timeout=5) as pool:
        with pytest.raises(bp.BodyDecodeError) as caught:
            pool.reserve(timeout=0)
        assert caught.value.server == second.name
        pool.bury(caught.value.ref)  # the job is the caller's: bury it on its server
        assert pool.stats_tube(tube)[second.name].current_jobs_buried == 1


def test_a_batch_refused_after_some_inserts_is_not_moved(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    """A server that starts draining in the middle of a ``put_many`` has inserted
    the jobs before the refusal: the batch is not sent again to another server
    (those jobs would exist twice); the refusal names the server."""

    def script(peer: Peer) -> None:
        assert peer.read_commands()  # use
        peer.send(f"USING {tube}\r\n".encode())
        assert peer.read_commands(2)  # the batch
        peer.send(b"INSERTED 7\r\nDRAINING\r\n")

    other = fresh_server()
    with scripted_server(script) as fake, Pool([fake, other.address], use=tube, timeout=5) as pool:
        with pytest.raises(bp.DrainingError) as info:
            pool.put_many([b"a", b"b"])
        assert info.value.outcomes is not None and info.value.outcomes[0] == 7
        if hasattr(info.value, "__notes__"):
            assert info.value.__notes__ == [f"server {describe(fake)}"]
    assert ready_count(other, tube) == 0


def test_settings_a_server_would_not_read_whole_are_refused(server: Server) -> None:
    """A tube name too long for ``max_command_size`` is an ``InvalidArgument``, at
    construction (not "every server is down") and in ``use``/``watch``/``ignore``,
    which then change nothing."""
    long = "a" * 60
    with pytest.raises(bp.InvalidArgument, match="max_command_size=64"):
        Pool([server.address], use=long, max_command_size=64)
    with Pool([server.address], max_command_size=64, timeout=5) as pool:
        for call in (pool.use, pool.watch, pool.ignore):
            with pytest.raises(bp.InvalidArgument, match="max_command_size=64"):
                call(long)
        assert pool.using() == "default" and pool.watching() == ["default"]
        assert pool.put(b"still fine").server == server.name
