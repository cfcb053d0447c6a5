"""``connect(..., reconnect=True)``: a killed server, restarted on its port, on
asyncio and on trio."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import pytest
from anyio_helpers import HookedStream, anyio_backend  # noqa: F401

import beanproto as bp
from beanproto.adapter import reconnect_delay
from beanproto_anyio import Client, connect
from conftest import RecordingHooks

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


async def _break(c: Client[Any]) -> None:
    """Break the connection as a failed call does: state first, then the stream."""
    c._mux._break("broken for the test")
    await anyio.aclose_forcefully(c._mux.stream)


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ``anyio.connect_tcp`` call (a connection attempt) is listed here."""
    calls: list[object] = []
    connect_tcp = anyio.connect_tcp

    async def counting(*args: Any, **kwargs: Any) -> anyio.abc.SocketStream:
        calls.append(args)
        return await connect_tcp(*args, **kwargs)

    monkeypatch.setattr(anyio, "connect_tcp", counting)
    return calls


async def test_reconnects_with_use_and_watch_restored(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = fresh_server()
    caplog.set_level(logging.INFO, logger="beanproto.client")
    with anyio.fail_after(10):
        async with connect(srv.address, reconnect=True) as c:
            await c.use("x")
            await c.watch("y")
            await c.ignore("default")
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError, match="reconnecting failed"):
                await c.stats()  # retried at once, on a server still down
            assert c.closed
            restarted(srv)
            await anyio.sleep(reconnect_delay(1))
            assert await c.using() == "x"
            assert not c.closed
            assert await c.watching() == ["y"]
            job_id = await c.put(b"after")
            assert (await c.peek_ready()).id == job_id
            assert await c.put_many([b"a", b"b"]) == [job_id + 1, job_id + 2]
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
    assert len(records) == 3  # closing is no break


async def test_a_put_in_flight_is_not_sent_again(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    outcome: list[BaseException] = []
    with anyio.fail_after(10):
        async with connect(srv.address, use=tube, reconnect=True) as c:
            srv.signal(signal.SIGSTOP)  # the put is written, and waits for its reply

            async def put() -> None:
                try:
                    await c.put(b"in flight")
                except bp.BrokenConnectionError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(put)
                await anyio.sleep(0.2)
                srv.kill()
            assert len(outcome) == 1
            restarted(srv)
            await c.put(b"next")
            stats = await c.stats_tube(tube)
            assert (stats.current_jobs_ready, stats.total_jobs) == (1, 1)
            assert (await c.peek_ready()).body == b"next"


async def test_concurrent_calls_share_one_attempt(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    attempts: list[object],
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use="x", reconnect=True) as c:
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
            restarted(srv)
            await anyio.sleep(reconnect_delay(1))
            del attempts[:]
            results: list[str] = []

            async def using() -> None:
                results.append(await c.using())

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(using)
            assert results == ["x"] * 5
            assert len(attempts) == 1


async def test_backoff_while_the_server_is_down(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    attempts: list[object],
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use="x", reconnect=True) as c:
            srv.kill()
            del attempts[:]
            start = time.monotonic()
            calls = 0
            while time.monotonic() - start < 1.0:
                t0 = time.monotonic()
                with pytest.raises(bp.BrokenConnectionError):
                    await c.stats()
                assert time.monotonic() - t0 < 0.5  # never sleeps for the backoff
                calls += 1
                await anyio.sleep(0.005)
            # At once, then 0.1, 0.2, 0.4 s later (0.7 s in all); 0.8 s more is past 1 s.
            assert 3 <= len(attempts) <= 5, attempts
            assert calls > 20
            restarted(srv)
            await anyio.sleep(reconnect_delay(len(attempts)))
            before = len(attempts)
            assert await c.using() == "x"  # restored despite the failed attempts
            assert len(attempts) == before + 1


async def test_aclose_stops_reconnecting(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    attempts: list[object],
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, reconnect=True) as c:
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
            restarted(srv)
            await c.aclose()
            del attempts[:]
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
            assert c.closed and not attempts


async def test_aclose_while_reconnecting(
    fresh_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use="x", reconnect=True) as c:
            await _break(c)
            connect_tcp = anyio.connect_tcp

            async def closing(*args: Any, **kwargs: Any) -> anyio.abc.SocketStream:
                stream = await connect_tcp(*args, **kwargs)
                await c.aclose()  # as another task might, while the setup is sent
                return stream

            monkeypatch.setattr(anyio, "connect_tcp", closing)
            with pytest.raises(bp.BrokenConnectionError, match="closed"):
                await c.stats()
            assert c.closed


async def test_a_failed_setup_counts_as_a_failed_attempt(
    fresh_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use="x", reconnect=True) as c:
            await _break(c)
            connect_tcp = anyio.connect_tcp
            streams: list[HookedStream] = []

            async def failing(*args: Any, **kwargs: Any) -> HookedStream:
                stream = HookedStream(await connect_tcp(*args, **kwargs))

                async def send(data: bytes) -> None:
                    raise anyio.BrokenResourceError

                stream.send_impl = send
                streams.append(stream)
                return stream  # type: ignore[return-value]

            monkeypatch.setattr(anyio, "connect_tcp", failing)
            with pytest.raises(bp.BrokenConnectionError, match="reconnecting failed"):
                await c.stats()
            assert streams[0].closed
            with pytest.raises(bp.BrokenConnectionError, match="next attempt"):
                await c.stats()  # too soon: at once, without an attempt
            assert len(streams) == 1
            monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)
            await anyio.sleep(reconnect_delay(1))
            assert await c.using() == "x"


async def test_a_cancelled_attempt_closes_its_stream(
    fresh_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use="x", reconnect=True) as c:
            await _break(c)
            connect_tcp = anyio.connect_tcp
            streams: list[HookedStream] = []

            async def hanging(*args: Any, **kwargs: Any) -> HookedStream:
                stream = HookedStream(await connect_tcp(*args, **kwargs))

                async def send(data: bytes) -> None:
                    await anyio.sleep_forever()

                stream.send_impl = send
                streams.append(stream)
                return stream  # type: ignore[return-value]

            monkeypatch.setattr(anyio, "connect_tcp", hanging)
            with anyio.move_on_after(0.2):
                await c.stats()
            assert streams[0].closed and c.closed
            monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)
            assert await c.using() == "x"  # a cancellation is no failed attempt


async def test_without_reconnect_a_break_is_final(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server]
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address) as c:
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
            restarted(srv)
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()


async def test_a_batch_reconnects_too(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, reconnect=True) as c:
            await _break(c)
            ids = await c.put_many([b"a", b"b"])  # nothing to restore: default, default
            assert await c.using() == "default"
            assert [(await c.peek(i)).body for i in ids] == [b"a", b"b"]
            await c.delete_many(ids)


async def test_a_read_only_call_across_the_break_is_retried(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with anyio.fail_after(10):
        async with connect(srv.address, use=tube, reconnect=True, metrics=hooks) as c:
            del hooks.calls[:]
            srv.kill()
            new = restarted(srv)
            async with connect(new.address, use=tube) as other:
                await other.put(b"on the new server")
            assert (await c.stats()).pid == new.pid  # the break is found, the call retried
            assert (await c.peek_ready()).body == b"on the new server"  # the tube restored
    assert hooks.pairs() == [
        ("stats", "BROKEN"),
        ("use", "USING"),
        ("stats", "OK"),
        ("peek-ready", "FOUND"),
    ]


async def test_a_reserve_across_the_break_is_retried(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, watch=tube, reconnect=True) as c:
            srv.kill()
            new = restarted(srv)
            async with connect(new.address, use=tube) as other:
                job_id = await other.put(b"job")
            job = await c.reserve(timeout=5)
            assert (job.id, job.body) == (job_id, b"job")
            await c.delete(job)
            new.kill()
            restarted(new)
            start = time.monotonic()
            with pytest.raises(bp.TimedOutError):
                await c.reserve(timeout=1)
            assert time.monotonic() - start < 3


async def test_a_put_across_the_break_is_not_sent_again(
    fresh_server: Callable[..., Server], restarted: Callable[[Server], Server], tube: str
) -> None:
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, use=tube, reconnect=True) as c:
            srv.kill()
            new = restarted(srv)
            with pytest.raises(bp.BrokenConnectionError):
                await c.put(b"lost")
            async with connect(new.address) as observer:
                assert (await observer.stats()).cmd_put == 0
            await c.put(b"next")  # the call after reconnects
            async with connect(new.address) as observer:
                assert (await observer.stats()).total_jobs == 1
                assert (await observer.stats_tube(tube)).current_jobs_ready == 1


async def test_a_retry_is_made_once(fresh_server: Callable[..., Server]) -> None:
    """A connection that breaks again on the retry: the call raises; a call that
    changes state is not retried at all."""
    srv = fresh_server()
    with anyio.fail_after(10):
        async with connect(srv.address, reconnect=True) as c:
            real = c._opener
            assert real is not None
            opened: list[HookedStream] = []

            async def breaking() -> Any:
                stream = HookedStream(await real())

                async def send(data: bytes) -> None:
                    raise anyio.BrokenResourceError

                stream.send_impl = send
                opened.append(stream)
                return stream

            c._opener = breaking
            await _break(c)
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()  # opened, broke: retried once, broke again
            assert len(opened) == 2
            await anyio.sleep(reconnect_delay(2))
            with pytest.raises(bp.BrokenConnectionError):
                await c.use("x")
            assert len(opened) == 3
