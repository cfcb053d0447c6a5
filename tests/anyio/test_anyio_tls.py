"""TLS: the client reaches beanstalkd through a TLS-terminating proxy started here."""

from __future__ import annotations

import contextlib
import ssl
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSListener
from anyio_helpers import anyio_backend  # noqa: F401

from beanproto_anyio import connect

trustme = pytest.importorskip("trustme")

if TYPE_CHECKING:
    from tests.conftest import Server

pytestmark = pytest.mark.anyio


async def _pump(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
    with contextlib.suppress(
        anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
    ):
        while True:
            await dst.send(await src.receive())


async def test_tls_through_a_terminating_proxy(server: Server, tube: str) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_ctx, standard_compatible=False)
    served = 0

    async def handle(downstream: anyio.abc.ByteStream) -> None:
        nonlocal served
        served += 1
        upstream = await anyio.connect_tcp(*server.address)
        async with downstream, upstream, anyio.create_task_group() as tg:

            async def one_way(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
                await _pump(a, b)
                tg.cancel_scope.cancel()

            tg.start_soon(one_way, downstream, upstream)
            tg.start_soon(one_way, upstream, downstream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        with anyio.fail_after(30):
            async with connect(
                ("127.0.0.1", port), ssl_context=client_ctx, use=tube, watch=tube
            ) as c:
                job_id = await c.put(b"over tls", priority=3)
                job = await c.reserve(timeout=0)
                assert job.id == job_id and job.body == b"over tls"
                await c.delete(job)
                ids = await c.put_many([b"x" * 100] * 5000)
                assert (await c.stats_tube(tube)).current_jobs_ready == 5000
                await c.delete_many(ids)
                assert c._mux.stream.extra(anyio.streams.tls.TLSAttribute.ssl_object) is not None
            # An untrusted client is refused by the handshake.
            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError, OSError)):
                async with connect(("127.0.0.1", port), tls=True):
                    pass
        tg.cancel_scope.cancel()
    assert served >= 1


@pytest.mark.beanstalkd(since="1.12", reason="older servers answer the handshake with BAD_FORMAT")
async def test_tls_to_a_plain_port_is_bounded_by_fail_after(server: Server) -> None:
    # beanstalkd speaks no TLS: the handshake waits for ever, as docs/anyio.md says,
    # and a fail_after around the connect alone ends it (the pattern shown there).
    start = anyio.current_time()
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await stack.enter_async_context(connect(server.address, tls=True))
    assert anyio.current_time() - start < 2
