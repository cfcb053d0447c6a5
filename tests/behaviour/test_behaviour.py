"""Behaviour both adapters must share, run over the blocking client and the anyio
client (asyncio and trio) against the real server."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from behaviour_facade import OpenClient, anyio_backend, flavour, open_client_fixture  # noqa: F401

import beanproto as bp
from conftest import server_version

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


def since_1_12() -> bool:
    """beanstalkd 1.12 added reserve-job, and the draining, os and platform stats."""
    return server_version() >= (1, 12)


async def test_put_reserve_delete(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        body = b"a\r\nb\x00\xff\r\n"
        job_id = await c.put(body, priority=10, ttr=30)
        job = await c.reserve(timeout=0)
        assert job == bp.Job(job_id, body)
        await c.delete(job)
        with pytest.raises(bp.NotFoundError):
            await c.delete(job_id)


async def test_setup_tubes(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=[tube, "o-" + tube]) as c:
        assert await c.using() == tube
        assert sorted(await c.watching()) == sorted([tube, "o-" + tube])
    async with open_client(watch=[tube, "default"]) as c:
        assert sorted(await c.watching()) == sorted([tube, "default"])
    async with open_client() as c:
        assert await c.using() == "default"
        assert await c.watching() == ["default"]


async def test_encoding(open_client: OpenClient, tube: str) -> None:
    async with open_client(encoding="utf-8", use=tube, watch=tube) as c:
        await c.put("héllo")
        await c.put(b"raw")
        assert (await c.reserve(timeout=0)).body == "héllo"
        assert (await c.reserve(timeout=0)).body == "raw"
    async with open_client(use=tube) as c:
        with pytest.raises(TypeError):
            await c.put("text")


async def test_max_body_size_refuses_a_larger_announced_body(
    open_client: OpenClient, tube: str
) -> None:
    async with open_client(use=tube, watch=tube) as c:
        await c.put(b"x" * 2000)
    async with open_client(use=tube, watch=tube, max_body_size=1000) as c:
        with pytest.raises(bp.RemoteProtocolError, match="over max_body_size"):
            await c.peek_ready()
        with pytest.raises(bp.BrokenConnectionError):
            await c.stats()
    async with open_client(use=tube, watch=tube, max_body_size=2000) as c:
        assert (await c.peek_ready()).body == b"x" * 2000


async def test_undecodable_body_is_not_lost(open_client: OpenClient, tube: str) -> None:
    async with open_client(encoding="utf-8", use=tube, watch=tube) as c:
        job_id = await c.put(b"\xff\xfe not utf-8", priority=3)
        with pytest.raises(bp.BodyDecodeError) as info:
            await c.reserve(timeout=0)
        assert info.value.id == job_id and info.value.body == b"\xff\xfe not utf-8"
        await c.bury(info.value.id)  # the job is ours: it can be dealt with
        assert (await c.stats_job(job_id)).state == "buried"


async def test_refusals(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        missing = 2**63
        for name in ("delete", "touch", "release", "bury", "kick_job", "stats_job", "peek"):
            with pytest.raises(bp.NotFoundError):
                await getattr(c, name)(missing)
        # reserve-job is new in 1.12; older servers read it as a malformed `reserve`.
        with pytest.raises(bp.NotFoundError if since_1_12() else bp.BadFormatError):
            await c.reserve_job(missing)
        for name in ("peek_ready", "peek_delayed", "peek_buried"):
            with pytest.raises(bp.NotFoundError):
                await getattr(c, name)()
        with pytest.raises(bp.NotFoundError):
            await c.stats_tube("no-such-" + tube)
        with pytest.raises(bp.NotFoundError):
            await c.pause_tube("no-such-" + tube, 1)
        with pytest.raises(bp.NotIgnoredError):
            await c.ignore(tube)
        with pytest.raises(bp.TimedOutError):
            await c.reserve(timeout=0)
        with pytest.raises(bp.InvalidArgument):
            await c.reserve(timeout=-1)
        with pytest.raises(bp.InvalidArgument):
            await c.put(b"x", priority=-1)
        assert await c.watching() == [tube]  # still in sync after all that


async def test_job_lifecycle(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        job_id = await c.put(b"x", priority=5)
        job = await c.reserve(timeout=0)
        await c.touch(job)
        await c.release(job, priority=9)
        assert (await c.stats_job(job_id)).pri == 9
        await c.bury(await c.reserve(timeout=0), priority=3)
        assert (await c.stats_job(job_id)).state == "buried"
        assert await c.kick(10) == 1
        await c.release(await c.reserve(timeout=0), delay=100)
        assert (await c.peek_delayed()).id == job_id
        await c.kick_job(job_id)
        assert (await c.peek_ready()).id == job_id
        if since_1_12():
            assert (await c.reserve_job(job_id)).body == b"x"
        else:
            assert (await c.reserve(timeout=0)).body == b"x"
        await c.delete(job_id)


async def test_put_many_and_delete_many(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        ids = await c.put_many([b"%d" % i for i in range(20_000)])
        assert ids == sorted(ids) and len(set(ids)) == 20_000
        assert (await c.stats_tube(tube)).current_jobs_ready == 20_000
        assert (await c.peek(ids[123])).body == b"123"
        await c.delete_many(ids[:-1])
        with pytest.raises(bp.NotFoundError) as info:
            await c.delete_many([ids[-1], ids[0]])
        assert info.value.outcomes is not None
        assert info.value.outcomes[0] == ids[-1]
        assert isinstance(info.value.outcomes[1], bp.NotFoundError)
        assert await c.put_many([]) == []


async def test_batch_refusal_outcomes(
    open_client: OpenClient, fresh_server: Callable[..., Server]
) -> None:
    srv = fresh_server("-z", "10")
    async with open_client(srv.address) as c:
        with pytest.raises(bp.JobTooBigError) as info:
            await c.put_many([b"a", b"x" * 11, b"b"])
        outcomes: Any = info.value.outcomes
        assert type(outcomes[0]) is int and type(outcomes[2]) is int
        assert isinstance(outcomes[1], bp.JobTooBigError)
        assert (await c.peek_ready()).body == b"a"


async def test_deadline_soon(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        await c.put(b"x", ttr=2)
        job = await c.reserve(timeout=0)
        with pytest.raises(bp.DeadlineSoonError):
            await c.reserve(timeout=5)
        await c.delete(job)


async def test_stats_and_pause(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        await c.put(b"x")
        assert tube in await c.tubes()
        assert (await c.stats()).current_connections >= 1
        await c.pause_tube(tube, 100)
        assert (await c.stats_tube(tube)).pause == 100
        with pytest.raises(bp.TimedOutError):
            await c.reserve(timeout=0)
        await c.pause_tube(tube, 0)
        await c.delete(await c.reserve(timeout=0))


@pytest.mark.beanstalkd(since="1.12", reason="-l unix: is new in 1.12 (older servers exit)")
async def test_unix_socket(open_client: OpenClient, fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server(unix=True)
    async with open_client(srv.unix_path, use="u", watch="u") as c:
        ids = await c.put_many([b"x"] * 100)
        await c.delete_many(ids)
        assert (await c.stats_tube("u")).current_jobs_ready == 0


async def test_draining(open_client: OpenClient, fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    async with open_client(srv.address) as c:
        await c.put(b"before")
        srv.signal(signal.SIGUSR1)
        # Wait for the signal to land. `stats` says `draining` only from 1.12 on, so ask a
        # put instead: deleted while it is taken, refused once the server drains.
        with anyio.fail_after(5):
            while True:
                try:
                    await c.delete(await c.put(b"probe"))
                except bp.DrainingError:
                    break
                await anyio.sleep(0.01)
        assert (await c.stats()).draining is (True if since_1_12() else None)
        with pytest.raises(bp.DrainingError):
            await c.put(b"x")
        assert (await c.reserve(timeout=0)).body == b"before"


async def test_server_goes_away_then_closed(
    open_client: OpenClient, fresh_server: Callable[..., Server]
) -> None:
    srv = fresh_server()
    async with open_client(srv.address) as c:
        srv.stop()
        for _ in range(2):
            with pytest.raises(bp.BrokenConnectionError):
                await c.stats()
        assert c.closed
