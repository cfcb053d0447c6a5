"""Helpers for the anyio tests: the backend fixture, and stream wrappers that let
tests interrupt the client at chosen points."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import pytest

Hook = Callable[[], Awaitable[None]]


class HookedStream(anyio.abc.ByteStream):
    """Wraps a ByteStream; hooks run before each receive / instead of each send."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.before_receive: Hook | None = None
        self.send_impl: Callable[[bytes], Awaitable[None]] | None = None
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.before_receive is not None:
            await self.before_receive()
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        if self.send_impl is not None:
            await self.send_impl(item)
        else:
            await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


async def hooked(address: tuple[str, int]) -> HookedStream:
    return HookedStream(await anyio.connect_tcp(*address))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test on asyncio and on trio (import this into test modules;
    a conftest.py here would shadow tests/conftest.py for ``from conftest import``)."""
    backend: str = request.param
    return backend
