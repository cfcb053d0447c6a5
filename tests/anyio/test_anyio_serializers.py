"""Serializers and address forms on the anyio client (asyncio and trio)."""

from __future__ import annotations

import contextlib
import json
import pickle
from typing import TYPE_CHECKING, Any

import pytest
from anyio_helpers import anyio_backend  # noqa: F401

import beanproto as bp
from beanproto_anyio import connect

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


def _serializers() -> list[Any]:
    found: list[Any] = [json, pickle]
    with contextlib.suppress(ImportError):
        import msgpack  # needs adding to the dev dependencies

        found.append(msgpack)
    return found


@pytest.mark.parametrize("serializer", _serializers(), ids=lambda s: s.__name__)
async def test_serializer_round_trip(server: Server, tube: str, serializer: Any) -> None:
    value = {"to": "ann", "n": [1, 2.5, None], "s": "café"}
    async with connect(server.address, serializer=serializer, use=tube, watch=tube) as c:
        job_id = await c.put(value, priority=5)
        ids = await c.put_many([[1], [2]])
        job = await c.reserve(timeout=0)
        assert (job.id, job.body) == (job_id, value)
        assert [(await c.reserve(timeout=0)).body for _ in ids] == [[1], [2]]
        await c.delete_many([job_id, *ids])
        async with connect(server.address, use=tube) as raw:
            await raw.put(b"\xc1 not a value")
        with pytest.raises(bp.BodyDecodeError) as info:
            await c.reserve(timeout=0)
        assert info.value.body == b"\xc1 not a value"
        assert info.value.reason == f"does not load with {serializer.__name__}"
        await c.delete(info.value.id)  # reserved all the same; the client is in step


async def test_address_forms(server: Server, tube: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = server.address
    monkeypatch.setenv("BEANSTALKD_URL", f"{host}:{port}")
    for address in (None, [host, port], f"beanstalk://{host}:{port}"):
        async with connect(address, use=tube) as c:
            assert await c.using() == tube
    with pytest.raises(ValueError, match="'beanstalk://h:x'"):
        connect("beanstalk://h:x")
    with pytest.raises(bp.InvalidArgument, match="Unix socket"):
        connect("unix:///run/beanstalkd.sock", tls=True)
    with pytest.raises(TypeError, match="dumps"):
        connect(serializer=object())  # type: ignore[call-overload]
