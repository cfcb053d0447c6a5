"""The blocking client against a real beanstalkd, and against scripted fake servers for
what a real one will not do (trickle, stall, say more than it was asked)."""

from __future__ import annotations

import array
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
from sync_helpers import InterruptAfterWrite, Peer, scripted_server

import beanproto as bp
from beanproto_sync import Client, ConcurrentUseError
from beanproto_sync._transport import Transport
from conftest import Server


@pytest.fixture
def client(server: Server, tube: str) -> Iterator[Client[bytes]]:
    with Client(server.address, use=tube, watch=tube, timeout=10) as c:
        yield c


def test_put_reserve_delete_binary(client: Client[bytes]) -> None:
    body = b"a\r\nb\x00\xff\r\n"
    job_id = client.put(body, priority=10, ttr=30)
    job = client.reserve(timeout=0)
    assert job == bp.Job(job_id, body)
    client.delete(job)
    with pytest.raises(bp.NotFoundError):
        client.delete(job_id)


def test_connect_use_and_watch(server: Server, tube: str) -> None:
    with Client(server.address, use=tube, watch=[tube, "other-" + tube]) as c:
        assert c.using() == tube
        assert sorted(c.watching()) == sorted([tube, "other-" + tube])
    with Client(server.address, watch=[tube, "default"]) as c:
        assert sorted(c.watching()) == sorted(["default", tube])
    with Client(server.address) as c:
        assert c.using() == "default"
        assert c.watching() == ["default"]


def test_invalid_setup_raises_before_connecting(server: Server) -> None:
    with pytest.raises(bp.InvalidArgument):
        Client(server.address, use="bad tube")
    with pytest.raises(bp.InvalidArgument):
        Client(server.address, watch=[])


def test_str_bodies_with_encoding(server: Server, tube: str) -> None:
    with Client(server.address, encoding="utf-8", use=tube, watch=tube) as c:
        c.put("héllo\r\n")
        c.put(b"raw")
        job = c.reserve(timeout=0)
        assert job.body == "héllo\r\n"
        c.delete(job)
        job = c.reserve(timeout=0)
        assert job.body == "raw"
        c.delete(job)
        assert c.put_many(["a", "b"]) != []


@pytest.mark.parametrize("encoding", [None, "utf-8"])
def test_bytes_like_bodies_are_sent_as_their_bytes(
    server: Server, tube: str, encoding: str | None
) -> None:
    # Sized in bytes, not by len(): a buffer of 4-byte items must not desync the server.
    wide = array.array("i", [1, 2, 3])
    bodies: list[Any] = [bytearray(b"a\r\nb"), memoryview(b"xyz")[1:], memoryview(wide)]
    with Client(server.address, encoding=encoding, use=tube, watch=tube, timeout=10) as c:
        with pytest.raises(TypeError, match="bytes-like"):
            c.put(wide)  # not a bytes-like for Put either: sends nothing
        for body in bodies:  # with the default arguments, and others
            for job_id in (c.put(body), c.put(body, priority=5)):
                expected = bytes(body)
                assert c.peek(job_id).body == (expected if encoding is None else expected.decode())
                c.delete(job_id)


def test_str_body_without_encoding_is_a_type_error(client: Client[bytes]) -> None:
    with pytest.raises(TypeError):
        client.put("text")  # type: ignore[arg-type]
    client.put(b"still in sync")


def test_invalid_put_arguments_send_nothing(client: Client[bytes], tube: str) -> None:
    # put checks before it writes: a refusal leaves the connection in sync.
    for args in [(-1, 0, 60), (1, 2**32, 60), (1, 0, True), (1.0, 0, 60)]:
        with pytest.raises((TypeError, bp.InvalidArgument)):
            client.put(b"x", *args)  # type: ignore[arg-type]
    assert client.stats_tube(tube).total_jobs == 0
    job_id = client.put(b"x", 7, 0, 9)
    assert client.stats_job(job_id).pri == 7


def test_reserve_timeouts(client: Client[bytes]) -> None:
    with pytest.raises(bp.TimedOutError):
        client.reserve(timeout=0)
    start = time.monotonic()
    with pytest.raises(bp.TimedOutError):
        client.reserve(timeout=0.2)  # rounded up to 1 s
    assert 0.9 < time.monotonic() - start < 3
    with pytest.raises(bp.InvalidArgument):
        client.reserve(timeout=-1)
    with pytest.raises(ValueError):
        client.reserve(timeout=-0.5)
    with pytest.raises(TypeError):
        client.reserve(timeout="1")  # type: ignore[arg-type]
    client.put(b"x")
    client.delete(client.reserve())


def test_reserve_with_timeout_outlasts_socket_timeout(server: Server, tube: str) -> None:
    with Client(server.address, use=tube, watch=tube, timeout=0.5) as c:
        with pytest.raises(bp.TimedOutError):
            c.reserve(timeout=1)
        assert c.watching() == [tube]
        sock = c._transport._sock
        assert sock is not None and sock.gettimeout() == 0.5  # the wait's timeout is undone
        job_id = c.put(b"job")
        assert c.reserve(timeout=1).id == job_id
        assert sock.gettimeout() == 0.5


@pytest.mark.parametrize("reply", [b"TIMED_OUT\r\n", b"RESERVED 1 1\r\nx\r\n"])
def test_the_next_call_after_a_reserve_has_the_clients_timeout(reply: bytes) -> None:
    # The server answers reserve(timeout=1) after 1.2 s, past the client's 0.5 s
    # timeout (the reserve may wait 1 + 0.5 s); then it stalls: the next call is
    # bounded by 0.5 s again.
    def script(peer: Peer) -> None:
        peer.read_commands()
        peer.wait(1.2)
        peer.send(reply)
        peer.read_commands()

    with scripted_server(script) as address, Client(address, timeout=0.5) as c:
        start = time.monotonic()
        if reply.startswith(b"TIMED_OUT"):
            with pytest.raises(bp.TimedOutError):
                c.reserve(timeout=1)
        else:
            assert c.reserve(timeout=1) == bp.Job(1, b"x")
        assert 1.1 < time.monotonic() - start < 1.5
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c.put(b"x")
        assert 0.4 < time.monotonic() - start < 0.9
        assert c.closed


@pytest.mark.beanstalkd(since="1.12", reason="it uses reserve-job, new in 1.12")
def test_release_bury_kick_touch(client: Client[bytes], tube: str) -> None:
    job_id = client.put(b"x", priority=5)
    job = client.reserve(timeout=0)
    client.touch(job)
    client.release(job, priority=9, delay=0)
    assert client.stats_job(job_id).pri == 9
    job = client.reserve(timeout=0)
    client.bury(job, priority=3)
    assert client.peek_buried() == job
    assert client.stats_job(job).state == "buried"
    assert client.kick(10) == 1
    assert client.peek_ready().id == job_id
    job = client.reserve(timeout=0)
    client.bury(job.id)
    client.kick_job(job)
    job = client.reserve(timeout=0)
    client.release(job, delay=100)
    assert client.peek_delayed().id == job_id
    client.kick_job(job_id)
    assert client.peek(job_id).body == b"x"
    client.delete(job_id)
    for call in (client.touch, client.release, client.bury, client.kick_job, client.stats_job):
        with pytest.raises(bp.NotFoundError):
            call(job_id)
    for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
        with pytest.raises(bp.NotFoundError):
            peek()
    with pytest.raises(bp.NotFoundError):
        client.peek(job_id)
    with pytest.raises(bp.NotFoundError):
        client.reserve_job(job_id)


@pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12")
def test_reserve_job(client: Client[bytes]) -> None:
    job_id = client.put(b"by id")
    job = client.reserve_job(job_id)
    assert job.body == b"by id"
    client.delete(job)


def test_watch_ignore(client: Client[bytes], tube: str) -> None:
    assert client.watch("x-" + tube) == 2
    assert client.ignore("x-" + tube) == 1
    with pytest.raises(bp.NotIgnoredError):
        client.ignore(tube)
    assert client.use("y-" + tube) == "y-" + tube
    assert client.using() == "y-" + tube


def test_stats_tubes_pause(client: Client[bytes], tube: str) -> None:
    client.put(b"x")
    assert tube in client.tubes()
    stats = client.stats()
    assert stats.current_connections is not None and stats.current_connections >= 1
    assert client.stats_tube(tube).current_jobs_ready == 1
    client.pause_tube(tube, 100)
    assert client.stats_tube(tube).pause == 100
    with pytest.raises(bp.TimedOutError):
        client.reserve(timeout=0)
    client.pause_tube(tube, 0)
    client.delete(client.reserve(timeout=0))
    with pytest.raises(bp.NotFoundError):
        client.stats_tube("no-such-" + tube)
    with pytest.raises(bp.NotFoundError):
        client.pause_tube("no-such-" + tube, 1)


def test_deadline_soon(client: Client[bytes]) -> None:
    client.put(b"x", ttr=2)
    job = client.reserve(timeout=0)
    with pytest.raises(bp.DeadlineSoonError):
        client.reserve(timeout=5)
    client.delete(job)


def test_job_too_big(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server("-z", "10")
    with Client(srv.address) as c:
        with pytest.raises(bp.JobTooBigError):
            c.put(b"x" * 11)
        assert c.put(b"x" * 10) > 0


@pytest.mark.beanstalkd(since="1.12", reason="it waits for the draining stat, new in 1.12")
def test_draining(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    with Client(srv.address) as c:
        c.put(b"before")
        srv.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not c.stats().draining:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(bp.DrainingError):
            c.put(b"x")
        with pytest.raises(bp.DrainingError) as info:
            c.put_many([b"a", b"b"])
        assert all(isinstance(o, bp.DrainingError) for o in info.value.outcomes)
        assert c.reserve(timeout=0).body == b"before"


def test_unix_socket(fresh_server: Callable[..., Server], tube: str) -> None:
    srv = fresh_server(unix=True)
    assert srv.unix_path is not None
    with Client(srv.unix_path, use=tube, watch=tube, timeout=5) as c:
        assert srv.unix_path in repr(c)
        ids = c.put_many([b"%d" % i for i in range(1000)])
        job = c.reserve(timeout=0)
        assert job.id == ids[0]
        c.delete_many([job, *ids[1:]])
        assert c.stats_tube(tube).current_jobs_ready == 0


def test_connected_socket(server: Server, tube: str) -> None:
    sock = socket.create_connection(server.address)
    with Client(sock, use=tube) as c:
        assert c.using() == tube
        assert f"{server.address[0]}:{server.address[1]}" in repr(c)
    assert sock.fileno() == -1


def test_tcp_options(client: Client[bytes]) -> None:
    sock = client._transport._sock
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    if hasattr(socket, "TCP_KEEPIDLE"):
        idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        intvl = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        cnt = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
        assert idle + intvl * cnt <= 60


def test_repr_shows_no_body(client: Client[bytes], server: Server) -> None:
    client.put(b"secret-body")
    job = client.reserve(timeout=0)
    assert "secret" not in repr(client) and "secret" not in repr(job)
    assert str(server.address[1]) in repr(client)
    client.delete(job)


def test_close_is_idempotent_and_later_calls_fail(server: Server) -> None:
    c = Client(server.address)
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(bp.BrokenConnectionError):
        c.put(b"x")
    assert "closed" in repr(c)


def test_put_many_large(client: Client[bytes], tube: str) -> None:
    start = time.monotonic()
    ids = client.put_many([b"j"] * 200_000)
    assert len(ids) == 200_000 and ids == sorted(ids)
    assert client.stats_tube(tube).current_jobs_ready == 200_000
    client.delete_many(ids)
    assert client.stats_tube(tube).current_jobs_ready == 0
    assert time.monotonic() - start < 30


def test_put_many_empty(client: Client[bytes]) -> None:
    assert client.put_many([]) == []
    client.delete_many([])


def test_put_many_refusal_in_the_middle(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server("-z", "10")
    with Client(srv.address) as c:
        with pytest.raises(bp.JobTooBigError) as info:
            c.put_many([b"a", b"b", b"x" * 11, b"c", b"y" * 20])
        outcomes = info.value.outcomes
        assert len(outcomes) == 5
        assert all(type(o) is int for o in (outcomes[0], outcomes[1], outcomes[3]))
        assert isinstance(outcomes[2], bp.JobTooBigError)
        assert isinstance(outcomes[4], bp.JobTooBigError)
        assert c.peek_ready().body == b"a"  # still in sync
        with pytest.raises(bp.NotFoundError) as dinfo:
            c.delete_many([outcomes[0], 999_999, outcomes[1]])
        assert dinfo.value.outcomes[0] == outcomes[0]
        assert isinstance(dinfo.value.outcomes[1], bp.NotFoundError)
        assert c.peek_ready().body == b"c"


def test_put_many_rejects_bad_bodies_before_sending(client: Client[bytes], tube: str) -> None:
    with pytest.raises(TypeError):
        client.put_many([b"a", "b"])  # type: ignore[list-item]
    assert client.stats_tube(tube).current_jobs_ready == 0


def _frozen_server_test(srv: Server, tube: str, interrupt: Callable[[Client[bytes]], None]) -> None:
    with Client(srv.address, use=tube, watch=tube, timeout=5) as holder:
        holder.put(b"precious", priority=7)
        job = holder.reserve(timeout=0)
        interrupt(holder)
        with pytest.raises(bp.BrokenConnectionError):
            holder.delete(job)
        with pytest.raises(bp.BrokenConnectionError):
            holder.stats()
    with Client(srv.address, watch=tube, timeout=5) as other:
        again = other.reserve(timeout=0)  # at once: the job is back in ready
        assert again == job
        assert other.stats_job(again).pri == 7
        other.delete(again)


def test_socket_timeout_breaks_and_returns_job(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    srv = fresh_server()
    with Client(srv.address, use=tube, watch=tube, timeout=1) as holder:
        holder.put(b"precious", priority=7)
        job = holder.reserve(timeout=0)
        srv.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                holder.touch(job)
            assert time.monotonic() - start < 3
        finally:
            srv.signal(signal.SIGCONT)
        with pytest.raises(bp.BrokenConnectionError):
            holder.touch(job)
    with Client(srv.address, watch=tube, timeout=5) as other:
        again = other.reserve(timeout=0)
        assert again.id == job.id
        assert other.stats_job(again).pri == 7


def test_keyboard_interrupt_during_reserve(fresh_server: Callable[..., Server], tube: str) -> None:
    srv = fresh_server()

    def on_alarm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def interrupt(holder: Client[bytes]) -> None:
        old = signal.signal(signal.SIGALRM, on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(KeyboardInterrupt):
                holder.reserve()  # waits: the only job is held by this very client
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    _frozen_server_test(srv, tube, interrupt)


@pytest.mark.parametrize("call", ["reserve", "put", "put_many"])
def test_interrupt_after_a_write_closes_the_client(server: Server, tube: str, call: str) -> None:
    # A KeyboardInterrupt right after a command's bytes went out, before its reply
    # was read: the client gives up on the connection (it cannot know what the
    # server did), every later call says so, and closing the socket makes the
    # server put back a job it reserved for the interrupted call.
    sock = InterruptAfterWrite.connect_to(server.address)
    with Client(sock, use=tube, watch=tube, timeout=5) as c:
        held = c.put(b"held", priority=7)
        sock.armed = True
        with pytest.raises(KeyboardInterrupt):
            if call == "reserve":
                c.reserve(timeout=0)
            elif call == "put":
                c.put(b"written")
            else:
                c.put_many([b"written", b"too"])
        assert c.closed and sock.fileno() == -1
        for later in (lambda: c.stats(), lambda: c.put(b"again"), lambda: c.delete(held)):
            with pytest.raises(bp.BrokenConnectionError):
                later()
    with Client(server.address, use=tube, watch=tube, timeout=5) as other:
        job = other.reserve(timeout=5)  # at once: back in ready, if it was reserved
        assert (job.id, job.body) == (held, b"held")
        stats = other.stats_job(job)
        assert stats.pri == 7
        assert stats.reserves == (2 if call == "reserve" else 1)
        other.delete(job)
        # A put was written whole: the server has the job(s).
        bodies = {"reserve": [], "put": [b"written"], "put_many": [b"written", b"too"]}[call]
        for body in bodies:
            job = other.reserve(timeout=0)
            assert job.body == body
            other.delete(job)
        assert other.stats_tube(tube).total_jobs == 1 + len(bodies)


def test_server_goes_away(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    c = Client(srv.address, timeout=5)
    try:
        srv.stop()
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()
    finally:
        c.close()


@contextlib.contextmanager
def _on_alarm(handler: Callable[[], None], after: float) -> Iterator[None]:
    """Within the block, run ``handler`` from a SIGALRM handler in ``after`` seconds."""
    old = signal.signal(signal.SIGALRM, lambda signum, frame: handler())
    try:
        signal.setitimer(signal.ITIMER_REAL, after)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_call_from_a_signal_handler_raises_concurrent_use_error(
    client: Client[bytes], tube: str
) -> None:
    # The handler runs in the thread that is inside reserve(): its calls cannot
    # wait for their turn, so they raise at once, having sent nothing, and the
    # reserve goes on unaffected.
    refused: list[BaseException] = []

    def handler() -> None:
        for call in (lambda: client.put(b"from the handler"), client.stats, client.watching):
            try:
                call()
            except BaseException as exc:
                refused.append(exc)

    with _on_alarm(handler, 0.2):
        start = time.monotonic()
        with pytest.raises(bp.TimedOutError):
            client.reserve(timeout=1)
        assert 0.9 < time.monotonic() - start < 3
    assert [type(exc) for exc in refused] == [ConcurrentUseError] * 3
    assert isinstance(refused[0], RuntimeError) and isinstance(refused[0], bp.Error)
    assert not client.closed
    assert client.watching() == [tube]
    assert client.stats_tube(tube).total_jobs == 0  # the handler's put sent nothing


def test_close_from_a_signal_handler_aborts_the_call(client: Client[bytes]) -> None:
    with _on_alarm(client.close, 0.2):
        start = time.monotonic()
        with pytest.raises(bp.BrokenConnectionError):
            client.reserve(timeout=5)
        assert time.monotonic() - start < 1.2  # at once: the handler did not wait
    assert client.closed
    with pytest.raises(bp.BrokenConnectionError):
        client.stats()


def _points_of_a_call(c: Client[bytes], at: int | None, handler: Callable[[], None]) -> int:
    """Run ``c.put(b"outer")`` in a thread with a trace function standing in for a
    signal handler: it calls ``handler`` in that thread before the ``at``-th line
    the exchange runs (as a signal handler may run between any two bytecodes).
    Returns how many lines the exchange ran; fails if the call never ends."""
    code = Transport.exchange.__code__
    count = 0
    firing = False

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count, firing
        if event == "line" and not firing:
            if count == at:
                firing = True
                handler()
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code is code and not firing else None

    outcome: list[object] = []

    def call() -> None:
        sys.settrace(tracer)
        try:
            outcome.append(c.put(b"outer"))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            sys.settrace(None)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), f"deadlocked, the handler called before line {at} of the exchange"
    assert at is None or firing
    if isinstance(outcome[0], BaseException):
        assert isinstance(outcome[0], bp.BrokenConnectionError), outcome[0]
    return count


@pytest.mark.parametrize("action", ["call", "close"])
def test_a_call_from_a_handler_at_any_point_of_a_call_never_deadlocks(
    server: Server, tube: str, action: str
) -> None:
    # Wherever the handler runs: before the call took the lock, after it, inside
    # it, after it was done but before the lock was given back. A call from the
    # handler runs (the outer one has not begun, or is over) or raises
    # ConcurrentUseError (it is under way); close() from the handler closes the
    # client, and the outer call returns or raises BrokenConnectionError.
    with Client(server.address, use=tube) as c:
        lines = _points_of_a_call(c, None, lambda: None)
    assert lines >= 5
    for at in range(lines):
        with Client(server.address, use=tube, timeout=5) as c:
            inner: list[object] = []

            def handler(c: Client[bytes] = c, inner: list[object] = inner) -> None:
                try:
                    inner.append(c.close() if action == "close" else c.using())
                except ConcurrentUseError as exc:
                    inner.append(exc)

            _points_of_a_call(c, at, handler)
            if action == "close":
                assert c.closed
            else:
                assert inner[0] == tube or isinstance(inner[0], ConcurrentUseError)
                assert c.using() == tube  # still in step


def test_threads_sharing_a_client_take_turns(client: Client[bytes], tube: str) -> None:
    # Two threads put through one client at once, one job at a time and in
    # batches: every call gets its own replies, so every id is distinct and names
    # the body that thread put.
    ids: dict[int, bytes] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def one_by_one() -> None:
        start.wait()
        for i in range(200):
            body = b"one-%d" % i
            ids[client.put(body)] = body

    def in_batches() -> None:
        start.wait()
        for i in range(20):
            bodies = [b"batch-%d-%d" % (i, k) for k in range(10)]
            ids.update(zip(client.put_many(bodies), bodies, strict=True))

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (one_by_one, in_batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(ids) == 400
    assert client.stats_tube(tube).current_jobs_ready == 400
    for job_id, body in ids.items():
        assert client.peek(job_id).body == body
    assert client.using() == tube  # and the client is still in step


def test_a_waiting_reserve_holds_up_another_thread(client: Client[bytes], tube: str) -> None:
    # As on the server, which reads nothing while a reserve waits: the other
    # thread's put waits for its turn, then goes through.
    outcome: list[BaseException] = []

    def wait_for_job() -> None:
        try:
            client.reserve(timeout=1)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=wait_for_job)
    start = time.monotonic()
    t.start()
    time.sleep(0.2)  # the reserve is waiting
    job_id = client.put(b"after the reserve")
    assert time.monotonic() - start > 0.9
    t.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], bp.TimedOutError)
    assert client.peek_ready() == bp.Job(job_id, b"after the reserve")


def test_close_from_another_thread_aborts_reserve(server: Server, tube: str) -> None:
    c = Client(server.address, watch=tube)
    errors: list[BaseException] = []

    def wait_for_job() -> None:
        try:
            c.reserve()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait_for_job)
    t.start()
    time.sleep(0.2)
    c.close()
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], bp.BrokenConnectionError)
    c.close()


def test_put_many_times_out_against_a_frozen_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    srv = fresh_server()
    with Client(srv.address, use=tube, timeout=1) as c:
        srv.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                c.put_many([b"x" * 100] * 300_000)  # ~35 MB: more than the socket buffers
            assert time.monotonic() - start < 5
        finally:
            srv.signal(signal.SIGCONT)
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"x")


# -- a server that says more than it was asked ------------------------------------------------

_OVERSAID: dict[str, tuple[Callable[[Client[bytes]], object], int, bytes, object]] = {
    # (the call, its commands, the replies and more in one segment, its outcome)
    "put": (lambda c: c.put(b"a"), 1, b"INSERTED 1\r\nINSERTED 2\r\n", 1),
    "refused put": (lambda c: c.put(b"a"), 1, b"JOB_TOO_BIG\r\nX", bp.JobTooBigError),
    "put_many": (
        lambda c: c.put_many([b"a", b"b"]),
        2,
        b"INSERTED 1\r\nINSERTED 2\r\nINSERTED 3\r\n",
        [1, 2],
    ),
    "refused delete_many": (
        lambda c: c.delete_many([1]),
        1,
        b"NOT_FOUND\r\nDELETED\r\n",
        bp.NotFoundError,
    ),
    "reserve": (
        lambda c: c.reserve(timeout=0),
        1,
        b"RESERVED 1 1\r\nx\r\nRES",
        bp.Job(1, b"x"),
    ),
}


@pytest.mark.parametrize("name", list(_OVERSAID))
def test_bytes_after_the_replies_owed_close_the_client(name: str) -> None:
    # The replies owed are good and the call has its outcome; the bytes after
    # them were sent unasked, and could pass for the reply to a later call: the
    # client gives up on the connection.
    call, commands, replies, outcome = _OVERSAID[name]

    def script(peer: Peer) -> None:
        if peer.read_commands(commands):
            peer.send(replies)

    with scripted_server(script) as address:
        c = Client(address, timeout=2)
        if isinstance(outcome, type):
            with pytest.raises(outcome):
                call(c)
        else:
            assert call(c) == outcome
        assert c.closed
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"again")
        c.close()


# -- one deadline for a whole exchange ---------------------------------------------------------

_TRICKLED: dict[str, tuple[Callable[[Client[bytes]], object], int, bytes]] = {
    # (the call, the commands it sends, the replies a trickling server owes it)
    "put": (lambda c: c.put(b"a"), 1, b"INSERTED 1\r\n"),
    "put_many of one": (lambda c: c.put_many([b"a"]), 1, b"INSERTED 1\r\n"),
    "put_many": (lambda c: c.put_many([b"a", b"b"]), 2, b"INSERTED 1\r\nINSERTED 2\r\n"),
    "delete_many of one": (lambda c: c.delete_many([1]), 1, b"DELETED\r\n"),
    "delete_many": (lambda c: c.delete_many([1, 2]), 2, b"DELETED\r\nDELETED\r\n"),
    "stats_job": (lambda c: c.stats_job(1), 1, b"OK 50\r\n---\nid: 1\n"),
}


@pytest.mark.parametrize("name", list(_TRICKLED))
def test_a_trickling_server_cannot_stretch_a_call_past_the_timeout(name: str) -> None:
    # One byte every 0.3 s: every recv returns in time, but the call as a whole
    # may take 1 s, the client's timeout, and no more.
    call, commands, replies = _TRICKLED[name]

    def script(peer: Peer) -> None:
        if peer.read_commands(commands):
            peer.trickle(replies, 0.3)

    with scripted_server(script) as address:
        c = Client(address, timeout=1)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            call(c)
        assert 0.9 < time.monotonic() - start < 1.5
        assert c.closed
        start = time.monotonic()
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"again")
        assert time.monotonic() - start < 0.1
        c.close()


@pytest.mark.parametrize("delay", [0.0, 1.5])
def test_a_reserves_reply_once_begun_is_bounded_by_the_timeout(delay: float) -> None:
    # A plain reserve waits for its reply however long it takes (here 1.5 s, past
    # the client's 1 s timeout); once the reply has begun, its rest has 1 s.
    def script(peer: Peer) -> None:
        if peer.read_commands():
            peer.wait(delay)
            peer.send(b"RESERVED 1 5\r\nab")  # and the rest of the body never comes

    with scripted_server(script) as address, Client(address, timeout=1) as c:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c.reserve()
        assert delay + 0.9 < time.monotonic() - start < delay + 1.5
        assert c.closed


def test_a_reserve_trickling_its_reply_is_bounded_by_the_timeout() -> None:
    def script(peer: Peer) -> None:
        if peer.read_commands():
            peer.trickle(b"RESERVED 1 1\r\nx\r\n", 0.3)

    with scripted_server(script) as address, Client(address, timeout=1) as c:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c.reserve()
        # The first byte after 0.3 s, then 1 s for the rest.
        assert 1.2 < time.monotonic() - start < 1.8


def test_a_slow_server_in_time_is_fine() -> None:
    def script(peer: Peer) -> None:
        while peer.read_commands():
            peer.trickle(b"INSERTED 1\r\n", 0.02)

    with scripted_server(script) as address, Client(address, timeout=1) as c:
        for _ in range(3):  # 0.24 s each, 0.72 s in all: each call has its own deadline
            assert c.put(b"x") == 1


def test_close_never_blocks_and_releases_the_connection(
    fresh_server: Callable[..., Server],
) -> None:
    srv = fresh_server()
    with Client(srv.address) as probe:
        c = Client(srv.address)
        assert probe.stats().current_connections == 2
        srv.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            c.close()
            assert time.monotonic() - start < 1.5
        finally:
            srv.signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        while probe.stats().current_connections != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)


class _SlowSocket(socket.socket):
    """A socket whose recv first sleeps: a call that close() cannot hurry."""

    delay = 0.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        time.sleep(self.delay)
        return super().recv(bufsize, flags)


@contextlib.contextmanager
def stuck_call(
    delay: float,
) -> Iterator[tuple[Client[bytes], _SlowSocket, list[BaseException], threading.Thread]]:
    """A client whose ``stats()`` is stuck in its recv (for ``delay`` seconds) in
    another thread: the client, its socket, the errors the call raised, the thread."""
    ours, theirs = socket.socketpair()
    sock = _SlowSocket(fileno=ours.detach())
    c = Client(sock)
    sock.delay = delay
    errors: list[BaseException] = []

    def stuck() -> None:
        try:
            c.stats()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=stuck)
    t.start()
    try:
        yield c, sock, errors, t
    finally:
        t.join(5)
        theirs.close()


def test_close_from_another_thread_gives_up_waiting_after_a_second() -> None:
    with stuck_call(2.5) as (c, sock, errors, thread):
        time.sleep(0.2)  # the call is in its recv
        start = time.monotonic()
        c.close()
        assert 1.0 <= time.monotonic() - start < 2.0
        assert c.closed
        thread.join(5)
        # The call ended on the shut-down socket, and closed it on its way out.
        assert len(errors) == 1 and isinstance(errors[0], bp.BrokenConnectionError)
        assert sock.fileno() == -1
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()


def test_invalid_address_and_timeout_raise_before_connecting() -> None:
    with pytest.raises(TypeError, match="address must be"):
        Client(11300)  # type: ignore[call-overload]
    for timeout in (0, -1.0):
        with pytest.raises(bp.InvalidArgument, match="timeout"):
            Client(("127.0.0.1", 1), timeout=timeout)


def test_an_unconnected_socket_fails_at_its_first_call() -> None:
    with socket.socket() as sock:
        c = Client(sock)
        assert repr(c) == "<beanproto_sync.Client ? open>"
        with pytest.raises(bp.BrokenConnectionError, match="failed"):
            c.stats()
        assert c.closed


def test_a_connected_socket_cannot_be_opened_again(server: Server) -> None:
    c = Client(socket.create_connection(server.address))
    c.close()
    with pytest.raises(bp.BrokenConnectionError, match="cannot reconnect"):
        c._transport.open()


def test_reopening_after_a_break_restores_the_setup(server: Server, tube: str) -> None:
    # What a reconnect will do: open() again, which sends use/watch again.
    c = Client(server.address, use=tube, watch=tube)
    c._transport._fail("broken for the test")
    with pytest.raises(bp.BrokenConnectionError):
        c.using()
    c._transport.open()
    assert (c.using(), c.watching()) == (tube, [tube])
    c.close()


def test_an_os_error_while_connecting_is_a_broken_connection() -> None:
    # The server accepts, then resets the connection during the setup exchange.
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def reset() -> None:
            peer, _ = listener.accept()
            peer.recv(100)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            peer.close()

        t = threading.Thread(target=reset)
        t.start()
        with pytest.raises(bp.BrokenConnectionError) as info:
            Client(listener.getsockname(), use="tube", timeout=5)
        t.join(5)
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_close_of_a_transport_never_opened() -> None:
    transport = Transport(
        ("127.0.0.1", 1), timeout=None, max_body_size=100, max_command_size=224, setup=[]
    )
    assert transport.closed
    transport.close()  # nothing to close, no error
    assert transport.closed


def test_close_while_a_broken_call_is_still_in_progress() -> None:
    # Another thread's call holds the transport, and the connection is already
    # broken: close() leaves the reason as it was and does not wait long.
    with stuck_call(0.5) as (c, _, errors, thread):
        time.sleep(0.1)  # the call is in its recv
        c._transport._broken = "broken for the test"
        c.close()
        thread.join(5)
        assert c.closed and isinstance(errors[0], bp.BrokenConnectionError)
        with pytest.raises(bp.BrokenConnectionError, match="broken for the test"):
            c.stats()


def test_pipeline(client: Client[bytes]) -> None:
    ids = client.put_many([b"a", b"b"])
    replies = client.pipeline(
        [bp.StatsJob(ids[0]), bp.Delete(10**12), bp.ReserveWithTimeout(0), bp.Delete(ids[1])]
    )
    assert type(replies[0]) is bp.JobStats and replies[0].id == ids[0]
    assert replies[1] == bp.NotFound()
    assert replies[2] == bp.Reserved(ids[0], b"a")  # reserved for us: ours to delete
    assert replies[3] == bp.Deleted()
    client.delete(ids[0])
    assert client.pipeline([]) == []
    assert client.pipeline(iter([bp.ListTubeUsed()])) == [bp.Using(client.using())]


def test_pipeline_refuses_what_would_wait_before_sending(client: Client[bytes]) -> None:
    for command in (bp.Reserve(), bp.ReserveWithTimeout(5), bp.Quit()):
        with pytest.raises(bp.InvalidArgument):
            client.pipeline([bp.Stats(), command])
    with pytest.raises(TypeError, match="beanproto commands"):
        client.pipeline([b"stats\r\n"])  # type: ignore[list-item]
    assert not client.closed
    assert client.put(b"still in step") > 0
