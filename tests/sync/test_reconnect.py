"""``reconnect=True`` on the blocking client: a killed server, restarted on its port."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

import beanproto as bp
import beanproto_sync._transport as transport_module
from beanproto.adapter import reconnect_delay, restore_commands
from beanproto_sync import Client
from conftest import RecordingHooks, Server


def test_backoff_numbers() -> None:
    assert [reconnect_delay(n) for n in range(8)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert reconnect_delay(1000) == 5.0
    assert restore_commands("default", ("default",)) == []
    assert restore_commands("x", ("y",)) == [bp.Use("x"), bp.Watch("y"), bp.Ignore("default")]


def test_reconnects_with_use_and_watch_restored(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = fresh_server()
    caplog.set_level(logging.INFO, logger="beanproto.client")
    with Client(srv.address, reconnect=True, timeout=5) as c:
        c.use("x")
        c.watch("y")
        c.ignore("default")
        srv.kill()
        with pytest.raises(bp.BrokenConnectionError, match="reconnecting failed"):
            c.stats()  # retried at once, on a server still down
        assert c.closed
        new = restarted(srv)
        time.sleep(reconnect_delay(1))
        assert c.using() == "x"
        assert not c.closed
        assert c.watching() == ["y"]
        job_id = c.put(b"after")
        assert c.peek_ready().id == job_id
        c.use("y")
        job_id = c.put(b"to reserve")
        assert c.reserve(timeout=0).id == job_id
        assert new.process.poll() is None
    records = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if not r.getMessage().startswith("connected to")  # the first connection's line
    ]
    host, port = srv.address
    assert records[0][0] == "WARNING" and f"{host}:{port} broke" in records[0][1]
    assert records[1][0] == "INFO"
    assert f"reconnecting to {host}:{port} failed (attempt 1)" in records[1][1]
    assert records[1][1].endswith("next attempt in 0.1 s")
    assert ("INFO", f"reconnected to {host}:{port} (attempt 2)") in records


def test_a_put_in_flight_is_not_sent_again(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    with Client(srv.address, use=tube, reconnect=True, timeout=5) as c:
        srv.signal(signal.SIGSTOP)  # the put is written, and waits for its reply
        outcome: list[BaseException] = []

        def put() -> None:
            try:
                c.put(b"in flight")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=put)
        thread.start()
        time.sleep(0.2)
        srv.kill()
        thread.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], bp.BrokenConnectionError)
        restarted(srv)
        c.put(b"next")
        stats = c.stats_tube(tube)
        assert (stats.current_jobs_ready, stats.total_jobs) == (1, 1)
        assert c.peek_ready().body == b"next"


def test_backoff_while_the_server_is_down(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = fresh_server()
    attempts = 0
    connect = socket.create_connection

    def counting(*args: object, **kwargs: object) -> socket.socket:
        nonlocal attempts
        attempts += 1
        return connect(*args, **kwargs)  # type: ignore[arg-type]

    with Client(srv.address, use="x", reconnect=True, timeout=5) as c:
        srv.kill()
        monkeypatch.setattr(socket, "create_connection", counting)
        start = time.monotonic()
        calls = 0
        while time.monotonic() - start < 1.0:
            t0 = time.monotonic()
            with pytest.raises(bp.BrokenConnectionError):
                c.stats()
            assert time.monotonic() - t0 < 0.5  # never sleeps for the backoff
            calls += 1
            time.sleep(0.005)
        # At once, then 0.1, 0.2, 0.4 s later (0.7 s in all); 0.8 s more is past 1 s.
        assert 3 <= attempts <= 5, attempts
        assert calls > 20
        restarted(srv)
        time.sleep(reconnect_delay(attempts))
        before = attempts
        assert c.using() == "x"  # the tube the first connection had, despite failed attempts
        assert attempts == before + 1


def test_close_stops_reconnecting(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = fresh_server()
    c = Client(srv.address, reconnect=True, timeout=5)
    srv.kill()
    with pytest.raises(bp.BrokenConnectionError):
        c.stats()
    restarted(srv)
    c.close()
    monkeypatch.setattr(socket, "create_connection", None)  # any attempt would fail loudly
    with pytest.raises(bp.BrokenConnectionError):
        c.stats()
    assert c.closed


def test_close_while_reconnecting(
    fresh_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() from another thread while a call is reconnecting: the new
    connection is dropped at once."""
    srv = fresh_server()
    c = Client(srv.address, reconnect=True, timeout=5)
    c._transport._fail("broken for the test")
    connect = socket.create_connection

    def closing(*args: object, **kwargs: object) -> socket.socket:
        c.close()  # from this thread, as another thread's would find the lock taken
        return connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", closing)
    with pytest.raises(bp.BrokenConnectionError, match="closed"):
        c.stats()
    assert c.closed


def test_refused_for_a_connected_socket(server: Server) -> None:
    sock = socket.create_connection(server.address)
    with pytest.raises(bp.InvalidArgument, match="cannot reconnect"):
        Client(sock, reconnect=True)
    sock.close()


def test_without_reconnect_a_break_is_final(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server]
) -> None:
    srv = fresh_server()
    with Client(srv.address, timeout=5) as c:
        srv.kill()
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()
        restarted(srv)
        with pytest.raises(bp.BrokenConnectionError):
            c.stats()


def test_a_read_only_call_across_the_break_is_retried(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with Client(srv.address, use=tube, reconnect=True, timeout=5, metrics=hooks) as c:
        del hooks.calls[:]
        srv.kill()
        new = restarted(srv)
        with Client(new.address, use=tube) as other:
            other.put(b"on the new server")
        assert c.stats().pid == new.pid  # the break is found, and the call retried
        assert c.peek_ready().body == b"on the new server"  # with the used tube restored
    assert hooks.pairs() == [
        ("stats", "BROKEN"),
        ("use", "USING"),
        ("stats", "OK"),
        ("peek-ready", "FOUND"),
    ]


def test_a_reserve_across_the_break_is_retried(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    with Client(srv.address, watch=tube, reconnect=True, timeout=5) as c:
        srv.kill()
        new = restarted(srv)
        with Client(new.address, use=tube) as other:
            job_id = other.put(b"job")
        job = c.reserve(timeout=5)
        assert (job.id, job.body) == (job_id, b"job")
        c.delete(job)
        new.kill()
        restarted(new)
        start = time.monotonic()
        with pytest.raises(bp.TimedOutError):
            c.reserve(timeout=1)
        assert time.monotonic() - start < 3


def test_a_put_across_the_break_is_not_sent_again(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    with Client(srv.address, use=tube, reconnect=True, timeout=5) as c:
        srv.kill()
        new = restarted(srv)
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"lost")
        with Client(new.address) as observer:
            assert observer.stats().cmd_put == 0
        c.put(b"next")  # the call after reconnects
        with Client(new.address) as observer:
            assert observer.stats().total_jobs == 1
            assert observer.stats_tube(tube).current_jobs_ready == 1


def test_a_retry_is_made_once(
    fresh_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that breaks again on the retry: the call raises."""
    srv = fresh_server()
    with Client(srv.address, reconnect=True, timeout=5) as c:
        runs = 0

        def breaking(self: object, commands: object, wait: object) -> object:
            nonlocal runs
            runs += 1
            raise bp.BrokenConnectionError("cut for the test")

        monkeypatch.setattr(transport_module.Transport, "_run", breaking)
        with pytest.raises(bp.BrokenConnectionError, match="cut for the test"):
            c.stats()
        assert runs == 2
        runs = 0
        with pytest.raises(bp.BrokenConnectionError, match="cut for the test"):
            c.use("x")  # a call that changes state is not retried
        assert runs == 1
