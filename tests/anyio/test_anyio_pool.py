"""``beanproto_anyio.Pool`` on asyncio and trio: placement, jobs that remember their
server, per-server operator answers, servers that die and come back; and the
two pools are twins."""

from __future__ import annotations

import inspect
import logging
import tempfile
import time
import zlib
from collections.abc import Callable

import anyio
import pytest
from anyio_helpers import anyio_backend  # noqa: F401

import beanproto as bp
import beanproto_sync
from beanproto_anyio import Pool
from beanproto_sync import Client
from conftest import RecordingHooks, Server, drain_bodies, free_port, ready_count

pytestmark = pytest.mark.anyio


def _methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


def test_the_pools_are_twins() -> None:
    sync, async_ = _methods(beanproto_sync.Pool), _methods(Pool)
    assert sorted(set(sync) - {"close"}) == sorted(set(async_) - {"aclose"})
    local = {"using", "watching"}  # the pool's own settings: no I/O on either
    for name, member in sync.items():
        if name == "close":
            continue
        other = async_[name]
        if isinstance(member, property):
            assert isinstance(other, property), name
            continue
        assert inspect.signature(member) == inspect.signature(other), name  # type: ignore[arg-type]
        assert inspect.iscoroutinefunction(other) == (name not in local), name
    sync_init = inspect.signature(beanproto_sync.Pool.__init__).parameters
    async_init = inspect.signature(Pool.__init__).parameters
    assert set(sync_init) - set(async_init) == {"timeout"}  # anyio: fail_after instead
    for name in async_init:
        assert sync_init[name] == async_init[name], name


async def test_round_robin_and_batches(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube) as pool:
        assert pool.servers == [a.name, b.name]
        refs = [await pool.put(b"x%d" % i) for i in range(10)]
        assert {r.server for r in refs} == {a.name, b.name}
        batch = await pool.put_many([b"1", b"2", b"3"])
        assert len({r.server for r in batch}) == 1
        assert await pool.put_many([]) == []
    assert sorted([ready_count(a, tube), ready_count(b, tube)]) == [5, 8]


async def test_keyed_puts_stay_on_one_server_in_order(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    servers = [fresh_server(), fresh_server()]
    keys = [f"order-{i}" for i in range(8)]
    async with Pool([s.address for s in servers], use=tube) as pool:
        for round_ in range(3):
            for key in keys:
                ref = await pool.put(f"{key}/{round_}".encode(), key=key)
                assert ref.server == servers[zlib.crc32(key.encode()) % 2].name
    for srv in servers:
        bodies = [body.decode() for body in drain_bodies(srv, tube)]
        for key in {body.split("/")[0] for body in bodies}:
            mine = [body for body in bodies if body.split("/")[0] == key]
            assert mine == sorted(mine) and len(mine) == 3


async def test_jobs_remember_their_server(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], use=tube, watch=tube) as pool:
        ref_a, ref_b = await pool.put(b"one"), await pool.put(b"two")
        assert ref_a.id == ref_b.id and ref_a.server != ref_b.server
        job = await pool.reserve(timeout=5)
        other = ref_b if job.server == ref_a.server else ref_a
        await pool.delete(job)
        assert (await pool.stats_job(other)).state == "ready"
        assert (await pool.peek(other)).server == other.server
        second = await pool.reserve(timeout=5)
        assert second.ref == other
        await pool.release(second)
        second = await pool.reserve(timeout=5)
        await pool.touch(second)
        await pool.bury(second)
        await pool.kick_job(second)
        await pool.delete(second.ref)
        with pytest.raises(TypeError, match="per server"):
            await pool.delete(1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="did not come from a pool"):
            await pool.stats_job(bp.Job(1, b"x"))


async def test_reserve_polls_every_server(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    async with Pool([a.address, b.address], watch=tube) as pool:
        with pytest.raises(bp.TimedOutError):
            await pool.reserve(timeout=0)

        async def later() -> None:
            await anyio.sleep(0.2)
            with Client(b.address, use=tube) as c:
                c.put(b"late")

        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            started = anyio.current_time()
            job = await pool.reserve(timeout=10)
        assert job.body == b"late" and job.server == b.name
        assert anyio.current_time() - started < 1.5
        await pool.delete(job)
        with anyio.move_on_after(0.1):  # a cancelled reserve loses nothing
            await pool.reserve()
        assert await pool.put(b"again")


async def test_operator_calls_answer_per_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    names = [a.name, b.name]
    async with Pool([a.address, b.address]) as pool:
        assert await pool.use(tube) == tube
        assert await pool.watch(tube) == 2 and await pool.ignore("default") == 1
        assert pool.using() == tube and pool.watching() == [tube]
        assert sorted(await pool.stats()) == sorted(names)
        ref = await pool.put(b"one")
        tube_stats = await pool.stats_tube(tube)
        assert set(tube_stats) == set(names)
        assert tube_stats[ref.server].current_jobs_ready == 1
        assert all(tube in tubes for tubes in (await pool.tubes()).values())
        ready = await pool.peek_ready()
        assert list(ready) == [ref.server] and ready[ref.server].server == ref.server
        assert await pool.peek_buried() == {} and await pool.peek_delayed() == {}
        assert await pool.kick(5) == dict.fromkeys(names, 0)
        await pool.pause_tube(tube, 0)
        assert await pool.stats_tube("none-" + tube) == {}


async def test_a_server_down_at_start(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    b.kill()
    async with Pool([a.address, b.address], use=tube) as pool:
        assert f"server {b.name} is down" in caplog.text
        refs = [await pool.put(b"x") for _ in range(4)]
        assert {r.server for r in refs} == {a.name}
        assert list(await pool.stats()) == [a.name]
        with pytest.raises(bp.BrokenConnectionError, match="keyed put"):
            for i in range(50):
                await pool.put(b"k", key=f"key-{i}")
        restarted(b)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if (await pool.put(b"y")).server == b.name:
                break
            await anyio.sleep(0.05)
        else:
            pytest.fail("the restarted server was not used again")
        assert f"server {b.name} is back" in caplog.text
        assert ready_count(b, tube) == 1
    assert "closed" in repr(pool)
    with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
        async with Pool([("127.0.0.1", free_port())]):
            pass


async def test_killed_server_in_a_stream_of_puts(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
) -> None:
    a = fresh_server("-b", tempfile.mkdtemp(prefix="bp-binlog-"))
    b = fresh_server()
    placed: dict[bytes, str] = {}
    unknown: list[bytes] = []
    async with Pool([a.address, b.address], use=tube) as pool:
        for i in range(60):
            if i == 20:
                a.kill()
            body = b"job-%d" % i
            try:
                placed[body] = (await pool.put(body)).server
            except bp.BrokenConnectionError as exc:
                assert a.name in str(exc)
                unknown.append(body)
        assert len(unknown) <= 1
        assert {placed[body] for body in placed if int(body[4:]) > 21} == {b.name}
        a2 = restarted(a)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            body = b"again-%d" % len(placed)
            placed[body] = (await pool.put(body)).server
            if placed[body] == a.name:
                break
            await anyio.sleep(0.05)
        else:
            pytest.fail("the restarted server was not used again within 15 s")
    on_a, on_b = drain_bodies(a2, tube), drain_bodies(b, tube)
    assert not set(on_a) & set(on_b)
    assert len(on_a + on_b) == len(set(on_a + on_b))
    assert {body for body, server in placed.items() if server == b.name} == set(on_b)
    assert {body for body, server in placed.items() if server == a.name} <= set(on_a)
    assert set(on_a) - {body for body, s in placed.items() if s == a.name} <= set(unknown)


async def test_metrics_hooks_see_each_servers_commands(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    hooks = RecordingHooks()
    first, second = fresh_server(), fresh_server()
    async with Pool([first.address, second.address], use=tube, metrics=hooks) as pool:
        for _ in range(4):
            await pool.put(b"x")
    puts = [(o, s) for name, o, _, s in hooks.calls if name == "put"]
    assert sorted(puts) == sorted([("INSERTED", first.name), ("INSERTED", second.name)] * 2)
