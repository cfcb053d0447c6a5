"""The blocking client against a real beanstalkd."""

from __future__ import annotations

import array
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import beanproto as bp
from beanproto_sync import Client, ConcurrentUseError
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
        for body in bodies:  # the defaults' fast path, and the checked one
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
        assert c._sock.gettimeout() == 0.5  # the wait's longer timeout is undone
        # The same when a job comes, its reply read in one step.
        job_id = c.put(b"job")
        assert c.reserve(timeout=1).id == job_id
        assert c._sock.gettimeout() == 0.5


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
    sock = client._sock
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


def test_interrupt_between_a_commands_write_and_its_record(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every command is written before the core records it (Connection._sent):
    # an interrupt in between breaks the connection, and a job the server
    # reserved for the unrecorded reserve goes back to ready when it closes.
    with Client(server.address, use=tube, watch=tube, timeout=5) as c:
        job_id = c.put(b"held", priority=7)

        def interrupted(self: bp.Connection, command: bp.Command) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(bp.Connection, "_sent", interrupted)
        with pytest.raises(KeyboardInterrupt):
            c.reserve(timeout=0)
        monkeypatch.undo()
        with pytest.raises(bp.BrokenConnectionError):  # not ConcurrentUseError
            c.stats()
    with Client(server.address, watch=tube, timeout=5) as other:
        job = other.reserve(timeout=5)
        assert (job.id, job.body) == (job_id, b"held")
        assert other.stats_job(job).pri == 7


def test_interrupt_between_a_puts_write_and_its_record(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A put is written before its command is built and recorded: an interrupt
    # in between leaves bytes out that the core does not know of, so the client
    # must give up on the connection (and give its token back).
    import beanproto_sync._client as sync_client

    def interrupted(*args: object) -> bp.Put:
        raise KeyboardInterrupt

    with Client(server.address, use=tube, watch=tube, timeout=5) as c:
        monkeypatch.setattr(sync_client, "checked_put", interrupted)
        with pytest.raises(KeyboardInterrupt):
            c.put(b"written")
        monkeypatch.undo()
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"again")
        with pytest.raises(bp.BrokenConnectionError):  # not ConcurrentUseError
            c.stats()
    with Client(server.address, watch=tube, timeout=5) as other:
        assert other.reserve(timeout=5).body == b"written"  # the server got it whole


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


def test_concurrent_use_raises(server: Server, tube: str) -> None:
    with Client(server.address, watch=tube, timeout=10) as c:
        done = threading.Event()
        errors: list[BaseException] = []

        def wait_for_job() -> None:
            try:
                c.reserve(timeout=2)
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=wait_for_job)
        t.start()
        time.sleep(0.3)
        with pytest.raises(ConcurrentUseError, match="not thread-safe"):
            c.put(b"x")
        with pytest.raises(RuntimeError):
            c.stats()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], bp.TimedOutError)
        assert c.watching() == [tube]  # the interloper did not break the client


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


def test_two_threads_on_one_client_never_mix_their_exchanges(
    client: Client[bytes], tube: str
) -> None:
    # Every call either runs alone or raises ConcurrentUseError having sent
    # nothing: so each put got its own reply, and the server holds exactly the
    # jobs whose ids were returned.
    ids: list[int] = []
    refused: list[ConcurrentUseError] = []
    start = threading.Barrier(2)

    def produce() -> None:
        start.wait()
        done = 0
        deadline = time.monotonic() + 20
        while done < 500 and time.monotonic() < deadline:
            try:
                ids.append(client.put(b"%d" % done))
                done += 1
            except ConcurrentUseError as exc:
                refused.append(exc)
                time.sleep(0)  # let the other thread finish its call

    threads = [threading.Thread(target=produce) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 1000
    assert len(set(ids)) == len(ids)
    assert client.stats_tube(tube).current_jobs_ready == len(ids)
    assert client.using() == tube  # and the client is still in step


class _SlowSocket(socket.socket):
    """A socket whose recv first sleeps: a call that close() cannot hurry."""

    delay = 0.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        time.sleep(self.delay)
        return super().recv(bufsize, flags)


def test_close_from_another_thread_gives_up_waiting_after_a_second() -> None:
    ours, theirs = socket.socketpair()
    sock = _SlowSocket(fileno=ours.detach())
    c = Client(sock)
    sock.delay = 2.5
    errors: list[BaseException] = []

    def stuck() -> None:
        try:
            c.stats()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=stuck)
    t.start()
    try:
        time.sleep(0.2)  # the call is in its recv
        start = time.monotonic()
        c.close()
        assert 1.0 <= time.monotonic() - start < 2.0
        assert c.closed
        t.join(5)
        # The call ended on the shut-down socket, and closed it on its way out.
        assert len(errors) == 1 and isinstance(errors[0], bp.BrokenConnectionError)
        assert sock.fileno() == -1
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()
    finally:
        t.join(5)
        theirs.close()
