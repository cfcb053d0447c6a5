"""``metrics=`` on the blocking client: one report per command, with the wire name
and the reply's first word; nothing measured (not even the clock) without hooks;
and what the ``beanproto.client`` logger says."""

from __future__ import annotations

import logging
import signal
import socket
import time
import types
from collections.abc import Callable

import pytest

import beanproto as bp
import beanproto_sync._transport as transport_module
from beanproto.metrics import MetricsHooks
from beanproto_sync import Client
from conftest import RecordingHooks, Server


def test_the_setup_of_connecting_is_reported(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with Client(server.address, use=tube, watch=tube, metrics=hooks, timeout=5):
        pass
    assert hooks.pairs() == [("use", "USING"), ("watch", "WATCHING"), ("ignore", "WATCHING")]


def test_outcomes(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with Client(server.address, use=tube, watch=tube, metrics=hooks, timeout=5) as c:
        del hooks.calls[:]
        job_id = c.put(b"x")
        job = c.reserve(timeout=0)
        c.delete(job)
        with pytest.raises(bp.TimedOutError):
            c.reserve(timeout=0)
        with pytest.raises(bp.NotFoundError):
            c.delete(job_id)
        c.stats()
        assert c.tubes()
    assert hooks.pairs() == [
        ("put", "INSERTED"),
        ("reserve-with-timeout", "RESERVED"),
        ("delete", "DELETED"),
        ("reserve-with-timeout", "TIMED_OUT"),
        ("delete", "NOT_FOUND"),
        ("stats", "OK"),
        ("list-tubes", "OK"),
    ]
    for _, _, duration, name in hooks.calls:
        assert 0 <= duration < 5
        assert name == server.name


def test_batches_report_each_command(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with Client(server.address, use=tube, metrics=hooks, timeout=5) as c:
        del hooks.calls[:]
        ids = c.put_many([b"a", b"b", b"c"])
        assert hooks.pairs() == [("put", "INSERTED")] * 3
        durations = [d for _, _, d, _ in hooks.calls]
        assert durations == sorted(durations)  # each from the batch's write to its reply
        del hooks.calls[:]
        with pytest.raises(bp.NotFoundError):
            c.delete_many([*ids, 2**63])
        assert hooks.pairs() == [("delete", "DELETED")] * 3 + [("delete", "NOT_FOUND")]
        del hooks.calls[:]
        c.pipeline([bp.Stats(), bp.Peek(2**63), bp.ListTubeUsed()])
        assert hooks.pairs() == [
            ("stats", "OK"),
            ("peek", "NOT_FOUND"),
            ("list-tube-used", "USING"),
        ]


def test_a_large_batch(server: Server, tube: str) -> None:
    """Written in slices while replies are read: still one report per command."""
    hooks = RecordingHooks()
    with Client(server.address, use=tube, metrics=hooks, timeout=10) as c:
        del hooks.calls[:]
        ids = c.put_many([b"x" * 1000] * 2000)
        c.delete_many(ids)
    assert hooks.pairs() == [("put", "INSERTED")] * 2000 + [("delete", "DELETED")] * 2000


def test_broken(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with Client(srv.address, metrics=hooks, timeout=5) as c:
        srv.kill()
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()  # nothing sent: nothing reported
    assert hooks.pairs() == [("stats", "BROKEN")]


def test_interrupted_by_the_socket_timeout(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with Client(srv.address, metrics=hooks, timeout=0.3) as c:
        srv.signal(signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                c.stats()
        finally:
            srv.signal(signal.SIGCONT)
    assert hooks.pairs() == [("stats", "INTERRUPTED")]
    assert hooks.calls[0][2] >= 0.25


def test_interrupted_by_an_exception(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in the middle of the exchange (as KeyboardInterrupt would be)."""

    class Boom(BaseException):
        pass

    def failing(self: object, data: bytes, events: object, n: int) -> None:
        raise Boom

    hooks = RecordingHooks()
    with Client(server.address, use=tube, metrics=hooks, timeout=5) as c:
        del hooks.calls[:]
        monkeypatch.setattr(transport_module.Transport, "_deliver", failing)
        with pytest.raises(Boom):
            c.put(b"x")
        assert c.closed
    assert hooks.pairs() == [("put", "INTERRUPTED")]


def test_a_connected_socket_is_named_socket(server: Server) -> None:
    hooks = RecordingHooks()
    with Client(socket.create_connection(server.address), metrics=hooks, timeout=5) as c:
        c.stats()
    assert [name for _, _, _, name in hooks.calls] == ["socket"]


def test_a_hook_that_raises_closes_the_connection(server: Server, tube: str) -> None:
    """The job reserved for that call goes back to the ready queue."""

    class Raising(MetricsHooks):
        def command(self, name: str, outcome: str, duration: float, server: str) -> None:
            if outcome == "RESERVED":
                raise RuntimeError("hook failed")

    with Client(server.address, use=tube, watch=tube, timeout=5) as plain:
        plain.put(b"x", priority=7)
        c = Client(server.address, watch=tube, metrics=Raising(), timeout=5)
        with pytest.raises(RuntimeError, match="hook failed"):
            c.reserve(timeout=0)
        assert c.closed
        deadline = time.monotonic() + 5
        while plain.stats_tube(tube).current_jobs_reserved:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        job = plain.reserve(timeout=0)
        assert (job.body, plain.stats_job(job).pri) == (b"x", 7)
        plain.delete(job)


def test_without_hooks_the_clock_is_not_read(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_clock() -> float:
        raise AssertionError("the clock was read")

    fake_time = types.SimpleNamespace(monotonic=time.monotonic, perf_counter=no_clock)
    monkeypatch.setattr(transport_module, "time", fake_time)
    with Client(server.address, use=tube, watch=tube, timeout=5) as c:
        assert type(c._transport) is transport_module.Transport
        job_id = c.put(b"x")
        c.delete(c.reserve(timeout=0))
        c.delete_many(c.put_many([b"a"] * 500 + [b"b" * 60_000]))
        with pytest.raises(bp.NotFoundError):
            c.delete(job_id)
        c.pipeline([bp.Stats()])
    # ...and with hooks it is: the fake clock is the one the reports come from.
    with pytest.raises(AssertionError, match="the clock was read"):
        Client(server.address, metrics=MetricsHooks(), use=tube, timeout=5)


def test_logging(
    fresh_server: Callable[..., Server], caplog: pytest.LogCaptureFixture, tube: str
) -> None:
    srv = fresh_server()
    caplog.set_level(logging.DEBUG, logger="beanproto.client")
    with Client(srv.address, use=tube, reconnect=True, timeout=5) as c:
        for _ in range(10):
            c.put(b"x")  # nothing per command
        srv.kill()
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"lost")
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    name = srv.name
    assert records[0] == ("INFO", f"connected to {name}")
    assert records[1][0] == "WARNING"
    assert records[1][1].startswith(f"connection to {name} broke: ")
    assert len(records) == 2
