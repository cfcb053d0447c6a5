"""An exception at every line a pool's call executes: the pool stays usable.

The sweep of ``test_interrupts.py`` over :class:`beanproto_sync.Pool` and
:class:`beanproto_anyio.Pool` with two servers, each with a job ready (priority 7)
in the test's tube. For every line the call executes in beanproto's own code (the
pool, the policy in ``beanproto.pool``, the clients, the core), a fresh run raises
:class:`Injected` there. After each run, checked against both servers through
connections of their own:

* the call raised the injected exception, or returned its own answer;
* no job is left reserved: a job reserved for the interrupted call is back in its
  server's ready queue with its priority (the interrupted connection was closed);
* every lock of the pool is free (the blocking pool's, seen from another thread);
* the pool is usable: a put lands, and a reserve gets a ready job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import beanproto as bp
import beanproto_anyio
import beanproto_sync
from conftest import Server, new_tube_name
from test_interrupts import Injected, Injector, _only_injected, lines_traced, wait_released

# The calls swept, the same on both pools (an async pool's return an awaitable).
CALLS: dict[str, Callable[[Any, bp.JobRef], Any]] = {
    "put": lambda p, ref: p.put(b"the call"),
    "put-keyed": lambda p, ref: p.put(b"the call", key="k"),
    "put_many": lambda p, ref: p.put_many([b"a", b"b"]),
    "reserve": lambda p, ref: p.reserve(timeout=0),
    "delete": lambda p, ref: p.delete(ref),
    "stats": lambda p, ref: p.stats(),
}


def _servers(server: Server, fresh_server: Callable[..., Server]) -> list[tuple[str, int]]:
    return [server.address, fresh_server().address]


def _prepare(addresses: list[tuple[str, int]], tube: str) -> None:
    for address in addresses:
        with beanproto_sync.Client(address, use=tube) as c:
            c.put(b"ready job", priority=7)


def _locks_free(pool: beanproto_sync.Pool) -> bool:
    """Every per-server lock and client lock can be taken by another thread."""
    free: list[bool] = []

    def probe() -> None:
        for s in pool._servers:
            locks = [s.lock] + ([s.link.client._transport._lock] if s.link else [])
            for lock in locks:
                taken = lock.acquire(timeout=1)
                free.append(taken)
                if taken:
                    lock.release()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return all(free)


def _sync_run(addresses: list[tuple[str, int]], name: str, at: int | None) -> int:
    tube = new_tube_name()
    _prepare(addresses, tube)
    with beanproto_sync.Pool(addresses, use=tube, watch=tube, timeout=5) as pool:
        ref = pool.put(b"to delete", priority=9)
        injector = Injector(at)
        outcome: object = None
        with lines_traced(injector):
            try:
                outcome = CALLS[name](pool, ref)
            except Injected:
                outcome = Injected
        assert _locks_free(pool), "a lock was not given back"
        if isinstance(outcome, bp.Job):
            assert outcome.body == b"ready job"
            pool.release(outcome, priority=7)
        for address in addresses:
            wait_released(address, tube)
        pool.put(b"check")
        job = pool.reserve(timeout=0)
        assert job.body == b"ready job" and pool.stats_job(job).pri == 7
        pool.release(job, priority=7)
        return injector.seen


@pytest.mark.parametrize("name", sorted(CALLS))
def test_sync_pool_interrupted_at_every_line(
    server: Server, fresh_server: Callable[..., Server], name: str
) -> None:
    addresses = _servers(server, fresh_server)
    points = _sync_run(addresses, name, None)
    assert points > 20, points
    for at in range(1, points + 1):
        _sync_run(addresses, name, at)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def _async_run(addresses: list[tuple[str, int]], name: str, at: int | None) -> int:
    tube = new_tube_name()
    _prepare(addresses, tube)
    with anyio.fail_after(10):
        async with beanproto_anyio.Pool(addresses, use=tube, watch=tube) as pool:
            ref = await pool.put(b"to delete", priority=9)
            injector = Injector(at)
            outcome: object = None
            with lines_traced(injector):
                try:
                    outcome = await CALLS[name](pool, ref)
                except BaseException as exc:
                    if not _only_injected(exc):
                        raise
                    outcome = Injected
            if isinstance(outcome, bp.Job):
                assert outcome.body == b"ready job"
                await pool.release(outcome, priority=7)
            for address in addresses:
                wait_released(address, tube)
            await pool.put(b"check")
            job = await pool.reserve(timeout=0)
            assert job.body == b"ready job" and (await pool.stats_job(job)).pri == 7
            await pool.release(job, priority=7)
            return injector.seen


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(CALLS))
async def test_anyio_pool_interrupted_at_every_line(
    server: Server, fresh_server: Callable[..., Server], name: str
) -> None:
    addresses = _servers(server, fresh_server)
    points = await _async_run(addresses, name, None)
    assert points > 20, points
    for at in range(1, points + 1):
        await _async_run(addresses, name, at)
