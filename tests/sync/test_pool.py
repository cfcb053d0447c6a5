"""``beanproto_sync.Pool``: placement, jobs that remember their server, per-server
operator answers, and servers that die and come back (real beanstalkd servers)."""

from __future__ import annotations

import logging
import tempfile
import time
import zlib
from collections.abc import Callable

import pytest

import beanproto as bp
from beanproto_sync import Client, Pool
from conftest import RecordingHooks, Server, drain_bodies, free_port, ready_count


def test_round_robin_spreads_puts(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        assert pool.servers == [a.name, b.name]
        refs = [pool.put(b"x%d" % i) for i in range(10)]
        assert all(isinstance(r, bp.JobRef) for r in refs)
        assert {r.server for r in refs} == {a.name, b.name}
        assert [r.server for r in refs[:2]] != [refs[0].server] * 2  # alternates
    assert ready_count(a, tube) == 5 and ready_count(b, tube) == 5


def test_put_many_round_robin_keeps_a_batch_on_one_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool(f"{a.name},{b.name}", use=tube, timeout=5) as pool:
        first = pool.put_many([b"1", b"2", b"3"])
        second = pool.put_many([b"4", b"5"])
        assert len({r.server for r in first}) == 1 and len({r.server for r in second}) == 1
        assert first[0].server != second[0].server
        assert pool.put_many([]) == []
    assert sorted([ready_count(a, tube), ready_count(b, tube)]) == [2, 3]


def test_keyed_puts_stay_on_one_server_in_order(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    servers = [fresh_server(), fresh_server(), fresh_server()]
    keys = [f"customer-{i}" for i in range(12)]
    with Pool([s.address for s in servers], use=tube, timeout=5) as pool:
        for round_ in range(3):
            for key in keys:
                ref = pool.put(f"{key}/{round_}".encode(), key=key)
                expected = servers[zlib.crc32(key.encode()) % 3]
                assert ref.server == expected.name
        batch = pool.put_many([b"batch/0", b"batch/1"], key="batch")
        assert {r.server for r in batch} == {servers[zlib.crc32(b"batch") % 3].name}
        with pytest.raises(TypeError):
            pool.put(b"x", key=7)  # type: ignore[arg-type]
    landed: dict[str, int] = {}  # key -> its jobs, all on one server
    for srv in servers:
        bodies = [body.decode() for body in drain_bodies(srv, tube)]
        for key in {body.split("/")[0] for body in bodies}:
            mine = [body for body in bodies if body.split("/")[0] == key]
            assert mine == sorted(mine)  # one key's jobs come out in the order put
            assert key not in landed, f"{key} is on two servers"
            landed[key] = len(mine)
    assert landed == {**dict.fromkeys(keys, 3), "batch": 2}


def test_jobs_remember_their_server(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], use=tube, watch=tube, timeout=5) as pool:
        ref_a = pool.put(b"on a")
        ref_b = pool.put(b"on b")
        assert ref_a.id == ref_b.id  # two fresh servers: the same job id
        assert ref_a.server != ref_b.server
        job = pool.reserve(timeout=5)
        assert job.server in (a.name, b.name)
        assert pool.stats_job(job).state == "reserved"
        other = ref_b if job.server == ref_a.server else ref_a
        assert pool.stats_job(other).state == "ready"
        pool.delete(job)
        with pytest.raises(bp.NotFoundError):
            pool.stats_job(job)
        assert pool.peek(other).server == other.server
        assert pool.peek(other).body in (b"on a", b"on b")
        second = pool.reserve(timeout=5)
        assert second.ref == other
        pool.release(second, delay=0)
        second = pool.reserve(timeout=5)
        pool.touch(second)
        pool.bury(second)
        pool.kick_job(second)
        pool.delete(bp.JobRef(second.server, second.id))
        with pytest.raises(TypeError, match="per server"):
            pool.delete(1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="did not come from a pool"):
            pool.delete(bp.Job(1, b"x"))
        with pytest.raises(ValueError, match="not a server of this pool"):
            pool.delete(bp.JobRef("elsewhere:1", 1))


def test_reserve_does_not_wait_on_an_empty_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], watch=tube, timeout=5) as pool:
        with pytest.raises(bp.TimedOutError):
            pool.reserve(timeout=0)
        started = time.monotonic()
        with pytest.raises(bp.TimedOutError):
            pool.reserve(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2
        with Client(b.address, use=tube) as c:
            c.put(b"late")
        started = time.monotonic()
        job = pool.reserve(timeout=10)
        assert job.body == b"late" and job.server == b.name
        assert time.monotonic() - started < 1
        pool.delete(job)


def test_operator_calls_answer_per_server(fresh_server: Callable[..., Server], tube: str) -> None:
    a, b = fresh_server(), fresh_server()
    names = [a.name, b.name]
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        assert sorted(pool.stats()) == sorted(names)
        assert all(isinstance(s, bp.ServerStats) for s in pool.stats().values())
        ref = pool.put(b"one", key="k")
        assert set(pool.stats_tube(tube)) == set(names)  # used by the pool's connections
        assert pool.stats_tube(tube)[ref.server].current_jobs_ready == 1
        assert pool.stats_tube("no-such-tube-" + tube) == {}
        assert all(tube in tubes for tubes in pool.tubes().values())
        ready = pool.peek_ready()
        assert list(ready) == [ref.server] and ready[ref.server].body == b"one"
        assert ready[ref.server].server == ref.server
        assert pool.peek_delayed() == {} and pool.peek_buried() == {}
        assert pool.kick(10) == {names[0]: 0, names[1]: 0}
        pool.pause_tube(tube, 0)
        with pytest.raises(bp.NotFoundError):
            pool.pause_tube("no-such-tube-" + tube, 1)


def test_use_and_watch_apply_to_every_server(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    a, b = fresh_server(), fresh_server()
    with Pool([a.address, b.address], timeout=5) as pool:
        assert pool.use(tube) == tube and pool.using() == tube
        assert pool.watch(tube) == 2
        assert pool.ignore("default") == 1
        assert pool.watching() == [tube]
        with pytest.raises(bp.NotIgnoredError):
            pool.ignore(tube)
        with pytest.raises(bp.InvalidArgument):
            pool.use("bad name")
        assert pool.using() == tube
        for _ in range(4):
            pool.put(b"x")
        assert ready_count(a, tube) == 2 and ready_count(b, tube) == 2
        for _ in range(4):
            pool.delete(pool.reserve(timeout=1))
        for srv in (a, b):
            stats = pool.stats_tube(tube)[srv.name]
            assert stats.current_watching == 1 and stats.current_using == 1


def test_a_server_down_at_construction(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a, b = fresh_server(), fresh_server()
    b.kill()
    with Pool([a.address, b.address], use=tube, watch=tube, timeout=5) as pool:
        assert f"server {b.name} is down" in caplog.text
        assert next(r.levelname for r in caplog.records if b.name in r.message) == "WARNING"
        assert "down" in repr(pool) and "up" in repr(pool)
        refs = [pool.put(b"x") for _ in range(4)]
        assert {r.server for r in refs} == {a.name}
        assert list(pool.stats()) == [a.name]
        with pytest.raises(bp.BrokenConnectionError, match="keyed put"):
            for i in range(50):  # some key lands on b
                pool.put(b"k", key=f"key-{i}")
        with pytest.raises(bp.BrokenConnectionError, match=b.name):
            pool.delete(bp.JobRef(b.name, 1))
        restarted(b)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pool.put(b"y").server == b.name:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the restarted server was not used again")
        assert f"server {b.name} is back" in caplog.text
        # It got the pool's tubes: the put went to `tube`, and reserve sees it.
        assert ready_count(b, tube) == 1
    # A pool whose every server is down does not open.
    with pytest.raises(bp.BrokenConnectionError, match="every server is down"):
        Pool([("127.0.0.1", free_port())], timeout=5)


def test_killed_server_in_a_stream_of_puts(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="beanproto.pool")
    a = fresh_server("-b", tempfile.mkdtemp(prefix="bp-binlog-"))
    b = fresh_server()
    placed: dict[bytes, str] = {}
    unknown: list[bytes] = []
    with Pool([a.address, b.address], use=tube, timeout=5) as pool:
        for i in range(60):
            if i == 20:
                a.kill()
            body = b"job-%d" % i
            try:
                placed[body] = pool.put(body).server
            except bp.BrokenConnectionError as exc:
                assert a.name in str(exc) and "may or may not" in str(exc)
                unknown.append(body)
        assert len(unknown) <= 1
        assert f"server {a.name} went down" in caplog.text
        after = [body for body in placed if int(body[4:]) > 21]
        assert {placed[body] for body in after} == {b.name}
        a2 = restarted(a)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            body = b"again-%d" % len(placed)
            placed[body] = pool.put(body).server
            if placed[body] == a.name:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the restarted server was not used again within 15 s")
    on_a, on_b = drain_bodies(a2, tube), drain_bodies(b, tube)
    assert not set(on_a) & set(on_b)  # no body on both servers
    assert sorted(on_a + on_b) == sorted(set(on_a + on_b))  # none twice
    assert {body for body, server in placed.items() if server == b.name} == set(on_b)
    assert {body for body, server in placed.items() if server == a.name} <= set(on_a)
    assert set(on_a) - {body for body, s in placed.items() if s == a.name} <= set(unknown)


def test_closed_pool(fresh_server: Callable[..., Server]) -> None:
    a = fresh_server()
    pool = Pool(a.address)
    assert "up" in repr(pool)
    pool.close()
    pool.close()
    assert pool.closed and "closed" in repr(pool)
    with pytest.raises(bp.BrokenConnectionError, match="closed"):
        pool.put(b"x")
    with pytest.raises(bp.BrokenConnectionError, match="closed"):
        pool.stats()


def test_interrupted_put_leaves_the_pool_usable(
    fresh_server: Callable[..., Server], tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = fresh_server()
    with Pool(a.address, use=tube, watch=tube, timeout=5) as pool:
        pool.put(b"first")
        client = pool._servers[0].link.client  # type: ignore[union-attr]
        transport = client._transport
        run = type(transport)._run

        def interrupted(self: object, *args: object) -> object:
            if self is transport:
                raise KeyboardInterrupt  # as if ^C came while the put was in flight
            return run(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(type(transport), "_run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.put(b"lost")
        monkeypatch.undo()
        assert client.closed
        ref = pool.put(b"second")  # a new connection, with the pool's tube
        assert ref.server == a.name
        assert [pool.reserve(timeout=1).body for _ in range(2)] == [b"first", b"second"]


def test_metrics_hooks_see_each_servers_commands(
    fresh_server: Callable[..., Server], tube: str
) -> None:
    hooks = RecordingHooks()
    first, second = fresh_server(), fresh_server()
    with Pool([first.address, second.address], use=tube, metrics=hooks) as pool:
        for _ in range(4):
            pool.put(b"x")
    puts = [(o, s) for name, o, _, s in hooks.calls if name == "put"]
    assert sorted(puts) == sorted([("INSERTED", first.name), ("INSERTED", second.name)] * 2)
