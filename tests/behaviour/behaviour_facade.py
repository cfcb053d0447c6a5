"""Fixtures of the behaviour suite (imported by its test modules; a conftest.py
here would shadow tests/conftest.py for ``from conftest import``).

One behaviour suite, three clients: the blocking client, and the anyio client on
asyncio and on trio.

Tests are ``async`` and talk to a facade: ``async with open_client(**kw) as c`` then
``await c.put(...)``. For the blocking client the facade calls the method directly
(blocking the event loop, which is all a test needs); for the anyio client it is the
client itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

import beanproto_anyio
import beanproto_sync

if TYPE_CHECKING:
    from tests.conftest import Server

FLAVOURS = ["sync", "anyio-asyncio", "anyio-trio"]


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def anyio_backend(flavour: str) -> str:
    return "trio" if flavour == "anyio-trio" else "asyncio"


class SyncFacade:
    """``beanproto_sync.Client`` with awaitable methods."""

    def __init__(self, client: beanproto_sync.Client[Any]) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


OpenClient = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture(name="open_client")
def open_client_fixture(flavour: str, server: Server) -> OpenClient:
    """``open_client(address=None, **kwargs)``: an async context manager giving a
    client of the flavour under test (the session server unless ``address``)."""

    @asynccontextmanager
    async def open_(address: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        address = server.address if address is None else address
        if flavour == "sync":
            with beanproto_sync.Client(address, timeout=10, **kwargs) as c:
                yield SyncFacade(c)
        else:
            async with beanproto_anyio.connect(address, **kwargs) as c:
                yield c

    return open_
