"""``metrics=`` on the anyio client, on asyncio and trio: one report per command,
with the wire name and the reply's first word; nothing measured (not even the
clock) without hooks; and what the ``beanproto.client`` logger says."""

from __future__ import annotations

import logging
import signal
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio_helpers import anyio_backend  # noqa: F401

import beanproto as bp
import beanproto_anyio._multiplexer as multiplexer_module
from beanproto.metrics import MetricsHooks
from beanproto_anyio import Client, connect
from conftest import RecordingHooks

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


async def test_the_setup_of_connecting_is_reported(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(server.address, use=tube, watch=tube, metrics=hooks):
            pass
    assert hooks.pairs() == [("use", "USING"), ("watch", "WATCHING"), ("ignore", "WATCHING")]


async def test_outcomes(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(server.address, use=tube, watch=tube, metrics=hooks) as c:
            del hooks.calls[:]
            job_id = await c.put(b"x")
            job = await c.reserve(timeout=0)
            await c.delete(job)
            with pytest.raises(bp.TimedOutError):
                await c.reserve(timeout=0)
            with pytest.raises(bp.NotFoundError):
                await c.delete(job_id)
            await c.stats()
            assert await c.tubes()
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


async def test_batches_report_each_command(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(10):
        async with connect(server.address, use=tube, metrics=hooks) as c:
            del hooks.calls[:]
            ids = await c.put_many([b"a", b"b", b"c"])
            assert hooks.pairs() == [("put", "INSERTED")] * 3
            durations = [d for _, _, d, _ in hooks.calls]
            assert durations == sorted(durations)  # each from the batch's write to its reply
            del hooks.calls[:]
            with pytest.raises(bp.NotFoundError):
                await c.delete_many([*ids, 2**63])
            assert hooks.pairs() == [("delete", "DELETED")] * 3 + [("delete", "NOT_FOUND")]
            del hooks.calls[:]
            await c.pipeline([bp.Stats(), bp.Peek(2**63), bp.ListTubeUsed()])
            expected = [("stats", "OK"), ("peek", "NOT_FOUND"), ("list-tube-used", "USING")]
            assert hooks.pairs() == expected
            del hooks.calls[:]
            ids = await c.put_many([b"x" * 1000] * 2000)  # written by a child task
            await c.delete_many(ids)
            assert hooks.pairs() == [("put", "INSERTED")] * 2000 + [("delete", "DELETED")] * 2000


async def test_tasks_sharing_a_client(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(server.address, use=tube, metrics=hooks) as c:
            del hooks.calls[:]
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(c.put, b"x")
    assert hooks.pairs() == [("put", "INSERTED")] * 20


async def test_broken(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(srv.address, metrics=hooks) as c:
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()  # nothing sent: nothing reported
    assert hooks.pairs() == [("stats", "BROKEN")]


async def test_cancelled(server: Server, tube: str) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(server.address, watch=tube, metrics=hooks) as c:
            del hooks.calls[:]
            with anyio.move_on_after(0.2):
                await c.reserve(timeout=5)
            assert c.closed  # a waiting reserve given up closes the connection
    assert hooks.pairs() == [("reserve-with-timeout", "INTERRUPTED")]
    assert hooks.calls[0][2] >= 0.15


async def test_a_batch_cancelled_while_waiting(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        async with connect(srv.address, metrics=hooks) as c:
            srv.signal(signal.SIGSTOP)
            try:
                with anyio.move_on_after(0.2):
                    await c.put_many([b"a", b"b"])
            finally:
                srv.signal(signal.SIGCONT)
            await c.stats()  # in step: the puts' replies are dropped
    assert hooks.pairs() == [("put", "INTERRUPTED")] * 2 + [("stats", "OK")]


async def test_a_client_over_a_stream_is_named_stream(server: Server) -> None:
    hooks = RecordingHooks()
    with anyio.fail_after(5):
        stream = await anyio.connect_tcp(*server.address)
        async with Client(stream, metrics=hooks) as c:
            await c.stats()
    assert [name for _, _, _, name in hooks.calls] == ["stream"]


async def test_a_hook_that_raises_closes_the_connection(server: Server, tube: str) -> None:
    """The job reserved for that call goes back to the ready queue."""

    class Raising(MetricsHooks):
        def command(self, name: str, outcome: str, duration: float, server: str) -> None:
            if outcome == "RESERVED":
                raise RuntimeError("hook failed")

    with anyio.fail_after(5):
        async with connect(server.address, use=tube, watch=tube) as plain:
            await plain.put(b"x", priority=7)
            async with connect(server.address, watch=tube, metrics=Raising()) as c:
                with pytest.raises(RuntimeError, match="hook failed"):
                    await c.reserve(timeout=0)
                assert c.closed
            while (await plain.stats_tube(tube)).current_jobs_reserved:
                await anyio.sleep(0.01)
            job = await plain.reserve(timeout=0)
            assert (job.body, (await plain.stats_job(job)).pri) == (b"x", 7)
            await plain.delete(job)


async def test_without_hooks_the_clock_is_not_read(
    server: Server, tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_clock() -> float:
        raise AssertionError("the clock was read")

    fake_time = types.SimpleNamespace(monotonic=time.monotonic, perf_counter=no_clock)
    monkeypatch.setattr(multiplexer_module, "time", fake_time)
    with anyio.fail_after(5):
        async with connect(server.address, use=tube, watch=tube) as c:
            assert type(c._mux) is multiplexer_module.Multiplexer
            job_id = await c.put(b"x")
            await c.delete(await c.reserve(timeout=0))
            await c.delete_many(await c.put_many([b"a"] * 500 + [b"b" * 60_000]))
            with pytest.raises(bp.NotFoundError):
                await c.delete(job_id)
            await c.pipeline([bp.Stats()])
        # ...and with hooks it is: the fake clock is the one the reports come from.
        with pytest.raises(AssertionError, match="the clock was read"):
            async with connect(server.address, metrics=MetricsHooks(), use=tube):
                pass


async def test_logging(
    fresh_server: Callable[..., Server], caplog: pytest.LogCaptureFixture, tube: str
) -> None:
    srv = fresh_server()
    caplog.set_level(logging.DEBUG, logger="beanproto.client")
    with anyio.fail_after(5):
        async with connect(srv.address, use=tube, reconnect=True) as c:
            for _ in range(10):
                await c.put(b"x")  # nothing per command
            srv.kill()
            with pytest.raises(bp.BrokenConnectionError):
                await c.put(b"lost")
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    name = srv.name
    assert records[0] == ("INFO", f"connected to {name}")
    assert records[1][0] == "WARNING"
    assert records[1][1].startswith(f"connection to {name} broke: ")
    assert len(records) == 2
