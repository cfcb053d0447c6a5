"""beanproto_sync.Worker against a real beanstalkd (and a scripted one for the
replies a real server gives only when something went wrong)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sync_helpers import Peer, scripted_server

import beanproto as bp
from beanproto.worker import retry_delay
from beanproto_sync import BuryJob, Client, RetryJob, Worker
from beanproto_sync._transport import SAME, Transport
from conftest import Server, new_tube_name

Job = bp.Job[Any]


def _ours() -> set[threading.Thread]:
    """The live threads, without trio's idle workers, which an earlier async test
    may have left to exit on their own at any time."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    before = _ours()
    yield
    deadline = time.monotonic() + 6  # an abandoned handler may still be finishing
    while _ours() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _ours() - before, threading.enumerate()


@pytest.fixture
def client(server: Server, tube: str) -> Iterator[Client[bytes]]:
    """Puts into the test's tube; asks the server."""
    with Client(server.address, use=tube, timeout=5) as c:
        yield c


def worker_for(server: Server, tube: str, handler: Callable[[Job], Any], **options: Any) -> Worker:
    worker = Worker(server.address, **options)
    worker.add_handler(tube, handler)
    return worker


class Running:
    """``worker.run()`` in a thread, its exception kept."""

    def __init__(self, worker: Worker, **kwargs: Any) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs)
        self.thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self.worker.run(**kwargs)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 10) -> float:
        start = time.monotonic()
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return time.monotonic() - start


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def state_of(client: Client[bytes], job_id: int) -> str:
    try:
        return client.stats_job(job_id).state
    except bp.NotFoundError:
        return "deleted"


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "beanproto.worker" and r.levelno == level]


# -- outcomes ---------------------------------------------------------------------------


def test_a_returning_handler_deletes_the_job(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    seen: list[Job] = []
    job_id = client.put(b"hello")
    worker_for(server, tube, seen.append).run(burst=True)
    assert seen == [bp.Job(job_id, b"hello", server.name)]
    assert state_of(client, job_id) == "deleted"


def test_a_failing_handler_releases_the_job_with_the_backoff_of_its_attempt(
    server: Server, tube: str, client: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    def fail(job: Job) -> None:
        raise ValueError("boom")

    job_id = client.put(b"x", priority=77)
    worker = worker_for(server, tube, fail, retry_delay=3)
    with caplog.at_level(logging.INFO, "beanproto.worker"):
        worker.run(burst=True)
        stats = client.stats_job(job_id)
        assert (stats.state, stats.pri, stats.delay) == ("delayed", 77, retry_delay(1, 3))
        assert stats.delay == 3
        client.kick_job(job_id)  # the second attempt: the delay doubles
        worker.run(burst=True)
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri, stats.delay, stats.reserves) == ("delayed", 77, 6, 2)
    warnings = records(caplog, logging.WARNING)
    assert [r.getMessage() for r in warnings] == [
        f"job {job_id} (tube {tube}) failed, ValueError: boom (attempt 1 of 5, retry in 3 s)",
        f"job {job_id} (tube {tube}) failed, ValueError: boom (attempt 2 of 5, retry in 6 s)",
    ]
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in warnings)


def test_a_job_failing_max_attempts_times_is_buried(
    server: Server, tube: str, client: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def fail(job: Job) -> None:
        calls.append(job.id)
        raise RuntimeError("again")

    job_id = client.put(b"x", priority=3)
    worker = worker_for(server, tube, fail, max_attempts=2, retry_delay=0)
    worker.run(burst=True)  # released at once after the first failure, buried after the second
    assert calls == [job_id, job_id]
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri, stats.reserves) == ("buried", 3, 2)
    (error,) = records(caplog, logging.ERROR)
    assert error.getMessage() == (
        f"job {job_id} (tube {tube}) buried, RuntimeError: again (attempt 2 of 2)"
    )
    assert error.exc_info and error.exc_info[0] is RuntimeError


def test_a_handler_asks_for_a_retry_or_a_bury(
    server: Server, tube: str, client: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    def ask(job: Job) -> None:
        if job.body == b"retry":
            raise RetryJob(7, "later")
        raise BuryJob("poison")

    retry = client.put(b"retry", priority=1)
    bury = client.put(b"bury", priority=2)
    with caplog.at_level(logging.INFO, "beanproto.worker"):
        worker_for(server, tube, ask).run(burst=True)
    stats = client.stats_job(retry)
    assert (stats.state, stats.pri, stats.delay) == ("delayed", 1, 7)
    stats = client.stats_job(bury)
    assert (stats.state, stats.pri) == ("buried", 2)
    (info,) = records(caplog, logging.INFO)
    assert info.getMessage() == (
        f"job {retry} (tube {tube}) retried, RetryJob: later (attempt 1 of 5, retry in 7 s)"
    )
    (warning,) = records(caplog, logging.WARNING)
    assert warning.getMessage() == f"job {bury} (tube {tube}) buried, BuryJob: poison"


def test_a_body_that_does_not_decode_is_buried_and_logged(
    server: Server, tube: str, client: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Job] = []
    bad = client.put(b"\xff\xfe", priority=9)
    good = client.put("café".encode())
    worker_for(server, tube, seen.append, encoding="utf-8").run(burst=True)
    assert seen == [bp.Job(good, "café", server.name)]
    stats = client.stats_job(bad)
    assert (stats.state, stats.pri) == ("buried", 9)
    (error,) = records(caplog, logging.ERROR)
    assert error.getMessage().startswith(
        f"job {bad} (tube {tube}) buried: its body does not decode as utf-8 (UnicodeDecodeError: "
    )


def test_a_body_that_does_not_load_is_buried_and_logged(
    server: Server, tube: str, client: Client[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Job] = []
    bad = client.put(b"{not json", priority=7)
    good = client.put(b'{"to": "ann"}')
    worker_for(server, tube, seen.append, serializer=json).run(burst=True)
    assert seen == [bp.Job(good, {"to": "ann"}, server.name)]
    stats = client.stats_job(bad)
    assert (stats.state, stats.pri) == ("buried", 7)
    assert client.peek(bad).body == b"{not json"
    (error,) = records(caplog, logging.ERROR)
    assert error.getMessage().startswith(
        f"job {bad} (tube {tube}) buried: its body does not load with json (JSONDecodeError: "
    )


# -- burst, many jobs, dispatch ---------------------------------------------------------


def test_burst_returns_once_drained_and_no_handler_runs(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    worker_for(server, tube, lambda job: None).run(burst=True)  # nothing to do
    seen: list[bytes] = []

    def chain(job: Job) -> None:
        # A handler still running makes the idle slots poll again: it may put more.
        time.sleep(0.2)
        seen.append(job.body)
        if job.body == b"first":
            client.put(b"second")

    client.put(b"first")
    worker_for(server, tube, chain, concurrency=3).run(burst=True)
    assert seen == [b"first", b"second"]
    assert client.stats_tube(tube).current_jobs_ready == 0


def test_2000_jobs_through_4_threads_each_handled_exactly_once(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    ids = client.put_many(str(i).encode() for i in range(2000))
    seen: list[int] = []
    lock = threading.Lock()

    def record(job: Job) -> None:
        with lock:
            seen.append(job.id)

    worker_for(server, tube, record, concurrency=4).run(burst=True)
    assert sorted(seen) == ids
    assert client.stats_tube(tube).total_jobs == 2000
    assert client.stats_tube(tube).current_jobs_ready == 0


def test_each_tube_goes_to_its_handler(server: Server, client: Client[bytes]) -> None:
    a, b, c = new_tube_name(), new_tube_name(), new_tube_name()
    seen: list[tuple[str, bytes]] = []
    worker = Worker(server.address, concurrency=2)

    @worker.handler(a)
    def on_a(job: Job) -> None:
        seen.append(("a", job.body))

    worker.add_handler(b, lambda job: seen.append(("b", job.body)))
    for tube in (a, b, c):
        client.use(tube)
        client.put(tube.encode())
    worker.run(burst=True)
    assert sorted(seen) == sorted([("a", a.encode()), ("b", b.encode())])
    assert client.stats_tube(c).current_jobs_ready == 1  # not watched


def test_one_handler_for_several_tubes(server: Server, client: Client[bytes]) -> None:
    tubes = [new_tube_name(), new_tube_name()]
    seen: list[bytes] = []

    def record(job: Job) -> None:
        seen.append(job.body)

    worker = Worker(server.address, handlers=dict.fromkeys(tubes, record))
    assert worker.tubes == tubes
    for tube in tubes:
        client.use(tube)
        client.put(tube.encode())
    worker.run(burst=True)
    assert sorted(seen) == sorted(t.encode() for t in tubes)


def test_one_write_per_job(
    server: Server, tube: str, client: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every write of the slot's thread is counted: its connect-time watch, then one
    # write per job (the delete and the next reserve together), the last reserve's,
    # and the quit.
    writes: list[int] = []
    send, sendall = socket.socket.send, socket.socket.sendall

    def counted() -> None:
        if threading.current_thread().name == "beanproto-worker-0":
            writes.append(1)

    def counting_send(self: socket.socket, data: Any, *args: Any) -> int:
        counted()
        return send(self, data, *args)

    def counting_sendall(self: socket.socket, data: Any, *args: Any) -> None:
        counted()
        sendall(self, data, *args)

    client.put_many([b"x"] * 300)
    monkeypatch.setattr(socket.socket, "send", counting_send)
    monkeypatch.setattr(socket.socket, "sendall", counting_sendall)
    worker_for(server, tube, lambda job: None).run(burst=True)
    monkeypatch.undo()
    assert client.stats_tube(tube).total_jobs == 300
    assert client.stats_tube(tube).current_jobs_ready == 0
    assert 300 <= len(writes) <= 300 + 4


# -- auto-touch -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_handler_outliving_its_ttr_keeps_its_job(
    fresh_server: Callable[..., Server],
) -> None:
    srv = fresh_server()
    tube = new_tube_name()
    calls: list[int] = []
    done = threading.Event()
    checks: list[bp.JobStats] = []

    def slow(job: Job) -> None:
        calls.append(job.id)
        time.sleep(6)
        with Client(srv.address) as c:
            checks.append(c.stats_job(job.id))
        done.set()

    with Client(srv.address, use=tube) as c:
        timeouts = c.stats().job_timeouts
        job_id = c.put(b"long", ttr=2)
        first = Running(worker_for(srv, tube, slow))
        second = Running(worker_for(srv, tube, slow))
        assert done.wait(15)
        first.worker.stop()
        second.worker.stop()
        first.join()
        second.join()
        assert first.error is None and second.error is None
        assert calls == [job_id]
        (stats,) = checks
        assert (stats.state, stats.reserves, stats.timeouts) == ("reserved", 1, 0)
        assert c.stats().job_timeouts == timeouts
        assert state_of(c, job_id) == "deleted"


# -- stopping ---------------------------------------------------------------------------


def test_stop_before_run_makes_run_return_at_once(server: Server, tube: str) -> None:
    worker = worker_for(server, tube, lambda job: None)
    worker.stop()
    assert not worker.running
    start = time.monotonic()
    worker.run()
    assert time.monotonic() - start < 0.5
    assert not worker.running


def test_stop_while_idle_returns_at_once_and_loses_no_job(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    worker = worker_for(server, tube, lambda job: None, concurrency=3)
    running = Running(worker)
    wait_until(lambda: client.stats_tube(tube).current_waiting == 3)
    assert worker.running
    worker.stop()
    assert running.join() < 2
    assert running.error is None
    # Every connection is closed (the server notices it a moment later).
    wait_until(lambda: client.stats_tube(tube).current_watching == 0)
    job_id = client.put(b"x")
    assert state_of(client, job_id) == "ready"


def test_a_stop_while_connecting_starts_no_reserve(
    server: Server, tube: str, client: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    make = Worker._new_transport

    def make_then_stop(self: Worker, address: Any) -> Transport:
        transport = make(self, address)
        self.stop()
        return transport

    monkeypatch.setattr(Worker, "_new_transport", make_then_stop)
    calls: list[Job] = []
    job_id = client.put(b"x")
    worker = worker_for(server, tube, calls.append, concurrency=2)
    worker.run()
    assert calls == []
    assert state_of(client, job_id) == "ready"


def test_a_job_reserved_as_the_worker_stops_goes_back_unrun(
    server: Server, tube: str, client: Client[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Job] = []
    worker = worker_for(server, tube, calls.append)
    request = Transport.request

    def stop_on_a_job(self: Transport, command: Any, result: Any, wait: Any = SAME) -> Any:
        value = request(self, command, result, wait)
        if type(value) is bp.Reserved:
            worker.stop()  # as if stop() came while the reply was on its way
        return value

    monkeypatch.setattr(Transport, "request", stop_on_a_job)
    job_id = client.put(b"x", priority=2)
    worker.run()
    monkeypatch.undo()
    assert calls == []
    wait_until(lambda: client.stats_job(job_id).state == "ready")
    assert client.stats_job(job_id).pri == 2


def test_stop_during_a_handler_lets_it_finish_within_grace(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    started = threading.Event()

    def slow(job: Job) -> None:
        started.set()
        time.sleep(0.5)

    first = client.put(b"1")
    second = client.put(b"2")
    worker = worker_for(server, tube, slow, grace=5)
    running = Running(worker)
    assert started.wait(5)
    worker.stop()
    assert running.join() < 2
    assert running.error is None
    assert state_of(client, first) == "deleted"
    assert state_of(client, second) == "ready"  # no new reserve once stopping


def test_a_failing_handler_during_a_stop_is_retried_as_usual(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    started = threading.Event()

    def fail(job: Job) -> None:
        started.set()
        time.sleep(0.3)
        raise ValueError("late")

    job_id = client.put(b"x", priority=4)
    worker = worker_for(server, tube, fail, retry_delay=9)
    running = Running(worker)
    assert started.wait(5)
    worker.stop()
    running.join()
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri, stats.delay) == ("delayed", 4, 9)


@pytest.mark.parametrize("grace", [0, 0.3])
def test_a_handler_outliving_the_grace_gives_its_job_back(
    server: Server, tube: str, client: Client[bytes], grace: float
) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def stuck(job: Job) -> None:
        started.set()
        release.wait(5)
        finished.set()

    job_id = client.put(b"x", priority=6)
    worker = worker_for(server, tube, stuck)
    running = Running(worker)
    assert started.wait(5)
    worker.stop(grace=grace)
    assert running.join() < grace + 1
    assert running.error is None
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri, stats.delay) == ("ready", 6, 0)
    release.set()  # the abandoned handler ends; its delete goes nowhere
    assert finished.wait(5)
    wait_until(lambda: "beanproto-worker-0" not in {t.name for t in threading.enumerate()})
    assert state_of(client, job_id) == "ready"


def test_a_second_stop_shortens_the_grace(server: Server, tube: str, client: Client[bytes]) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(job: Job) -> None:
        started.set()
        release.wait(5)

    client.put(b"x")
    worker = worker_for(server, tube, stuck)
    running = Running(worker)
    assert started.wait(5)
    worker.stop(grace=30)
    time.sleep(0.2)
    worker.stop(grace=0)
    worker.stop(grace=60)  # a longer grace does not lengthen it again
    assert running.join() < 1.5
    release.set()


def test_a_burst_stopped_while_a_slot_polls(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(job: Job) -> None:
        started.set()
        release.wait(5)

    job_id = client.put(b"x")
    worker = worker_for(server, tube, stuck, concurrency=2)
    running = Running(worker, burst=True)
    assert started.wait(5)
    time.sleep(0.1)  # the other slot found no job, and polls while the handler runs
    worker.stop()
    time.sleep(0.2)
    release.set()
    running.join()
    assert running.error is None
    assert state_of(client, job_id) == "deleted"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_handler_raising_keyboardinterrupt_or_systemexit(
    server: Server, tube: str, client: Client[bytes], exc: type[BaseException]
) -> None:
    def interrupted(job: Job) -> None:
        raise exc

    job_id = client.put(b"x", priority=8)
    worker = worker_for(server, tube, interrupted, retry_delay=9)
    with pytest.raises(exc):
        worker.run()
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri, stats.delay) == ("ready", 8, 0)
    assert not worker.running
    worker.stop()  # the worker can run again: this run returns at once
    worker.run()


def test_two_handlers_interrupted_at_once(server: Server, tube: str, client: Client[bytes]) -> None:
    both = threading.Barrier(2, timeout=5)

    def interrupted(job: Job) -> None:
        both.wait()
        raise KeyboardInterrupt(job.id)

    ids = client.put_many([b"a", b"b"], priority=3)
    worker = worker_for(server, tube, interrupted, concurrency=2)
    with pytest.raises(KeyboardInterrupt) as info:
        worker.run()
    assert info.value.args[0] in ids
    for job_id in ids:
        stats = client.stats_job(job_id)
        assert (stats.state, stats.pri) == ("ready", 3)


def test_stop_from_a_signal_handler(server: Server, tube: str, client: Client[bytes]) -> None:
    worker: Worker

    def on_signal(signum: int, frame: object) -> None:
        worker.stop()

    def signalling(job: Job) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.3)  # the worker is stopping: this handler still finishes

    job_id = client.put(b"x")
    worker = worker_for(server, tube, signalling)
    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        start = time.monotonic()
        worker.run()
        assert time.monotonic() - start < 2
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert state_of(client, job_id) == "deleted"


def test_an_interrupt_in_runs_own_thread_gives_every_job_back(
    server: Server, tube: str, client: Client[bytes]
) -> None:
    release = threading.Event()

    def interrupting(job: Job) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in run()'s thread
        release.wait(5)

    job_id = client.put(b"x", priority=5)
    worker = worker_for(server, tube, interrupting, concurrency=2)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri) == ("ready", 5)
    release.set()


# -- the API ----------------------------------------------------------------------------


def test_registration_errors(server: Server, tube: str) -> None:
    worker = Worker(server.address)
    with pytest.raises(ValueError, match="no handler"):
        worker.run()
    worker.add_handler(tube, lambda job: None)
    with pytest.raises(ValueError, match="has a handler already"):
        worker.add_handler(tube, lambda job: None)

    async def coroutine(job: Job) -> None: ...

    with pytest.raises(TypeError, match=r"async def.*beanproto_anyio\.Worker"):
        worker.add_handler("other", coroutine)
    with pytest.raises(TypeError, match=r"beanproto_anyio\.Worker"):
        worker.handler("other")(coroutine)
    with pytest.raises(TypeError, match="callable"):
        worker.add_handler("other", "not a function")  # type: ignore[type-var]
    with pytest.raises(bp.InvalidArgument):
        worker.handler("bad tube!")
    assert worker.tubes == [tube]


def test_bad_options() -> None:
    address = ("127.0.0.1", 11300)
    for options in (
        {"concurrency": 0},
        {"max_attempts": 0},
        {"retry_delay": -1},
        {"grace": float("nan")},
        {"timeout": 0},
    ):
        with pytest.raises(bp.InvalidArgument):
            Worker(address, **options)
    with pytest.raises(LookupError):
        Worker(address, encoding="no-such-codec")
    with socket.socket() as s, pytest.raises(TypeError, match="connection per slot"):
        Worker(s)  # type: ignore[arg-type]
    worker = Worker(address, concurrency=2, max_attempts=3, retry_delay=2, grace=1)
    assert (worker.options.concurrency, worker.options.max_attempts) == (2, 3)
    assert (worker.options.retry_delay, worker.options.grace) == (2.0, 1.0)
    with pytest.raises(bp.InvalidArgument):
        worker.stop(grace=-1)


def test_running_state_and_repr(server: Server, tube: str, client: Client[bytes]) -> None:
    started, release = threading.Event(), threading.Event()

    def handler(job: Job) -> None:
        started.set()
        release.wait(5)

    worker = worker_for(server, tube, handler, timeout=None)
    assert "idle" in repr(worker) and tube in repr(worker)
    client.put(b"x")
    running = Running(worker)
    assert started.wait(5)
    assert worker.running and "running" in repr(worker)
    with pytest.raises(RuntimeError, match="running already"):
        worker.run()
    with pytest.raises(RuntimeError, match="while the worker runs"):
        worker.add_handler("other", handler)
    release.set()
    worker.stop()
    running.join()
    assert not worker.running


def test_an_unreachable_server_raises_from_run(tube: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = s.getsockname()
    worker = Worker(address)
    worker.add_handler(tube, lambda job: None)
    with pytest.raises(OSError):
        worker.run()
    assert not worker.running


# -- replies a real server gives only when something went wrong ------------------------

STATS = (
    "---\nid: 1\ntube: {tube}\nstate: reserved\npri: 5\nage: 0\ndelay: 0\nttr: 1\n"
    "time-left: 0\nfile: 0\nreserves: 1\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n"
)


def stats_reply(tube: str = "t") -> bytes:
    body = STATS.format(tube=tube).encode()
    return b"OK %d\r\n%s\r\n" % (len(body), body)


def answering(replies: dict[str, list[bytes]], commands: list[str]) -> Callable[[Peer], None]:
    """A script answering each command by its verb, in order (a burst's reserve:
    ``TIMED_OUT`` once its replies ran out); it records the commands."""

    def script(peer: Peer) -> None:
        buf = b""
        peer.sock.settimeout(10)
        while True:
            while b"\r\n" not in buf:
                data = peer.sock.recv(4096)
                if not data:
                    return
                buf += data
            line, buf = buf.split(b"\r\n", 1)
            command = line.decode()
            commands.append(command)
            verb = command.split()[0]
            if verb == "quit":
                return
            queue = replies.get(verb, [])
            if verb == "watch":
                peer.send(b"WATCHING 2\r\n")
            elif verb == "ignore":
                peer.send(b"WATCHING 1\r\n")
            elif queue:
                reply = queue.pop(0)
                if reply == b"CLOSE":
                    peer.sock.shutdown(socket.SHUT_RDWR)
                    return
                peer.send(reply)
            elif verb == "reserve-with-timeout":
                peer.send(b"TIMED_OUT\r\n")
            else:  # pragma: no cover - a test's mistake
                raise AssertionError(f"unexpected command {command!r}")

    return script


def run_against(
    replies: dict[str, list[bytes]], handler: Callable[[Job], Any], **options: Any
) -> list[str]:
    commands: list[str] = []
    with scripted_server(answering(replies, commands)) as address:
        worker = Worker(address, timeout=5, **options)
        worker.add_handler("t", handler)
        worker.run(burst=True)
    return commands


def test_deadline_soon_and_a_delete_answered_not_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replies = {
        "reserve-with-timeout": [b"DEADLINE_SOON\r\n", b"RESERVED 1 1\r\nx\r\n"],
        "delete": [b"NOT_FOUND\r\n"],
    }
    with caplog.at_level(logging.DEBUG, "beanproto.worker"):
        commands = run_against(replies, lambda job: None)
    assert commands == [
        "watch t",
        "ignore default",
        "reserve-with-timeout 0",
        "reserve-with-timeout 0",
        "delete 1",
        "reserve-with-timeout 0",
        "quit",
    ]
    assert "DEADLINE_SOON" in records(caplog, logging.DEBUG)[0].getMessage()
    (warning,) = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        "job 1 (tube t): its reservation was lost (delete answered NOT_FOUND)"
    )


def test_a_release_answered_buried(caplog: pytest.LogCaptureFixture) -> None:
    def fail(job: Job) -> None:
        raise ValueError("x")

    replies = {
        "reserve-with-timeout": [b"RESERVED 1 1\r\nx\r\n"],
        "stats-job": [stats_reply()],
        "release": [b"BURIED\r\n"],  # the server was out of memory
    }
    commands = run_against(replies, fail)
    assert "release 1 5 1" in commands
    assert [r.getMessage() for r in records(caplog, logging.WARNING)][-1] == (
        "job 1 (tube t): release answered Buried"
    )


@pytest.mark.parametrize("fails", [False, True])
def test_a_touch_answered_not_found_is_logged_once(
    fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def slow(job: Job) -> None:
        time.sleep(1)
        if fails:
            raise ValueError("x")

    replies = {
        "reserve-with-timeout": [b"RESERVED 1 1\r\nx\r\n"],
        "stats-job": [stats_reply(), b"NOT_FOUND\r\n"],
        "touch": [b"NOT_FOUND\r\n"],
        "delete": [b"NOT_FOUND\r\n"],
    }
    commands = run_against(replies, slow)
    end = "stats-job 1" if fails else "delete 1"
    assert commands.index("stats-job 1") < commands.index("touch 1")
    assert commands.index("touch 1") < len(commands) - 1 - commands[::-1].index(end)
    (warning,) = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        "job 1 (tube t): its reservation was lost (the server answered NOT_FOUND)"
    )


def test_a_touch_that_fails_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    replies = {
        "reserve-with-timeout": [b"RESERVED 1 1\r\nx\r\n"],
        "stats-job": [b"CLOSE"],  # the server goes away during the check
    }
    with pytest.raises(bp.BrokenConnectionError):
        run_against(replies, lambda job: time.sleep(0.8))
    (warning,) = records(caplog, logging.WARNING)
    assert "its reservation was lost (BrokenConnectionError" in warning.getMessage()


@pytest.mark.parametrize("case", ["failed", "dispatch", "undecodable"])
def test_a_job_whose_stats_job_answers_not_found(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(job: Job) -> None:
        raise ValueError("x")

    reserved = b"RESERVED 1 1\r\n\xff\r\n" if case == "undecodable" else b"RESERVED 1 1\r\nx\r\n"
    replies = {"reserve-with-timeout": [reserved], "stats-job": [b"NOT_FOUND\r\n"]}
    commands: list[str] = []
    with scripted_server(answering(replies, commands)) as address:
        worker = Worker(address, timeout=5, encoding="utf-8")
        worker.add_handler("t", fail)
        if case == "dispatch":
            worker.add_handler("u", lambda job: None)  # a second handler: dispatch by tube
        worker.run(burst=True)
    # The job is not ours any more: nothing ends it, the next reserve goes alone.
    assert commands[-3:] == ["stats-job 1", "reserve-with-timeout 0", "quit"]
    tube = "?" if case == "dispatch" else "t"
    (warning,) = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f"job 1 (tube {tube}): its reservation was lost (stats-job answered NOT_FOUND)"
    )


def test_a_lost_connection_stops_the_worker_and_run_raises() -> None:
    replies = {"reserve-with-timeout": [b"CLOSE"]}
    with pytest.raises(bp.BrokenConnectionError):
        run_against(replies, lambda job: None)


def test_an_unexpected_reserve_reply_stops_the_worker() -> None:
    replies = {"reserve-with-timeout": [b"INTERNAL_ERROR\r\n"]}
    with pytest.raises(bp.InternalServerError):
        run_against(replies, lambda job: None)


# -- the transport's wait in a pipelined exchange --------------------------------------


@pytest.mark.parametrize("together", [False, True])
def test_the_wait_of_an_exchange_is_its_last_commands(together: bool) -> None:
    # The delete is answered at once, the reserve after 1.2 s: past the 0.5 s
    # timeout, within the reserve's wait. Or both at once.
    def script(peer: Peer) -> None:
        peer.read_commands(2)
        if together:
            peer.send(b"DELETED\r\nRESERVED 2 1\r\ny\r\n")
            return
        peer.send(b"DELETED\r\n")
        peer.wait(1.2)
        peer.send(b"RESERVED 2 1\r\ny\r\n")

    with scripted_server(script) as address, Client(address, timeout=0.5) as c:
        events = c._transport.exchange((bp.Delete(1), bp.Reserve()), list, None)
        assert events == [bp.Deleted(), bp.Reserved(2, b"y")]
        assert c._transport._sock is not None and c._transport._sock.gettimeout() == 0.5


def test_an_exchange_whose_last_reply_began_is_bounded_by_the_timeout() -> None:
    def script(peer: Peer) -> None:
        peer.read_commands(2)
        peer.send(b"DELETED\r\nRESERVED 2 5\r\nab")  # and the rest never comes

    with scripted_server(script) as address, Client(address, timeout=0.5) as c:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c._transport.exchange((bp.Delete(1), bp.Reserve()), list, None)
        assert time.monotonic() - start < 1.5
        assert c.closed


def test_an_exchange_with_the_same_timeout_throughout() -> None:
    def script(peer: Peer) -> None:
        peer.read_commands(2)
        peer.send(b"DELETED\r\nTIMED_OUT\r\n")

    with scripted_server(script) as address, Client(address, timeout=0.5) as c:
        events = c._transport.exchange((bp.Delete(1), bp.ReserveWithTimeout(0)), list, SAME)
        assert events == [bp.Deleted(), bp.TimedOut()]
