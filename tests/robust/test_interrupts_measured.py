"""The sweep of ``tests/test_interrupts.py`` (an exception at every line a call
executes: the client ends in step or closed, no job lost) run again on clients
given metrics hooks, whose calls go through the measured transport and
multiplexer and run a hook inside the exchange."""

from __future__ import annotations

import functools

import pytest

import beanproto_anyio
import beanproto_sync
import test_interrupts as sweep
from beanproto.metrics import MetricsHooks
from conftest import Server, new_tube_name


class Counting(MetricsHooks):
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def command(self, name: str, outcome: str, duration: float, server: str) -> None:
        self.n += 1


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> Counting:
    hooks = Counting()
    monkeypatch.setattr(sweep, "Client", functools.partial(beanproto_sync.Client, metrics=hooks))
    connect = functools.partial(beanproto_anyio.connect, metrics=hooks)
    monkeypatch.setattr(beanproto_anyio, "connect", connect)
    return hooks


@pytest.mark.parametrize("name", sorted(sweep.SYNC_CALLS))
def test_sync_client_with_hooks_interrupted_at_every_line(
    server: Server, name: str, measured: Counting
) -> None:
    points = sweep._sync_points(server, new_tube_name(), name)
    assert points > 20 and measured.n > 0, points
    for at in range(1, points + 1):
        sweep._sync_run(server, new_tube_name(), name, at)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(sweep.ASYNC_CALLS))
async def test_anyio_client_with_hooks_interrupted_at_every_line(
    server: Server, name: str, measured: Counting
) -> None:
    points = await sweep._async_run(server, new_tube_name(), name, None)
    assert points > 20 and measured.n > 0, points
    for at in range(1, points + 1):
        await sweep._async_run(server, new_tube_name(), name, at)
