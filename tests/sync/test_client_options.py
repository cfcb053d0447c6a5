"""The blocking client's addresses, serializers, TLS and socket timeout (issue #17)."""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import beanproto as bp
from beanproto_sync import Client
from conftest import Server

trustme = pytest.importorskip("trustme")


def _serializers() -> list[Any]:
    found: list[Any] = [json, pickle]
    with contextlib.suppress(ImportError):
        import msgpack  # needs adding to the dev dependencies

        found.append(msgpack)
    return found


# -- addresses ----------------------------------------------------------------------


def test_address_forms(server: Server, tube: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = server.address
    monkeypatch.setenv("BEANSTALKD_URL", f"beanstalk://{host}:{port}")
    for address in (None, [host, port], f"{host}:{port}", f"beanstalkd://{host}:{port}"):
        with Client(address, use=tube) as c:
            assert c.using() == tube
    with Client() as c:
        assert repr(c) == f"<beanproto_sync.Client {host}:{port} open>"
    monkeypatch.setenv("BEANSTALKD_URL", "nonsense://x")
    with pytest.raises(ValueError, match="BEANSTALKD_URL"):
        Client()


def test_unix_path_forms(fresh_server: Any) -> None:
    srv = fresh_server(unix=True)
    for address in (Path(srv.unix_path), srv.unix_path, f"unix://{srv.unix_path}"):
        with Client(address) as c:
            assert c.stats().pid == srv.pid
            assert repr(c) == f"<beanproto_sync.Client unix:{srv.unix_path} open>"


def test_a_bad_address_raises_before_connecting() -> None:
    with pytest.raises(ValueError, match="'host:port:x'"):
        Client("host:port:x")
    with pytest.raises(TypeError, match="address must be"):
        Client(11300)  # type: ignore[call-overload]


# -- a connected socket keeps its timeout ---------------------------------------------


def test_a_given_socket_keeps_its_timeout(server: Server) -> None:
    sock = socket.create_connection(server.address, timeout=7)
    with Client(sock) as c:
        assert sock.gettimeout() == 7 and c._transport.timeout == 7
        c.stats()
    sock = socket.create_connection(server.address, timeout=7)
    with Client(sock, timeout=2) as c:
        assert sock.gettimeout() == 2
    sock = socket.create_connection(server.address)
    sock.setblocking(False)
    with Client(sock) as c:  # a non-blocking socket: no timeout, blocking calls
        assert sock.gettimeout() is None
        c.stats()


# -- serializers --------------------------------------------------------------------


@pytest.mark.parametrize("serializer", _serializers(), ids=lambda s: s.__name__)
def test_serializer_round_trip(server: Server, tube: str, serializer: Any) -> None:
    value = {"to": "ann", "n": [1, 2.5, None], "s": "café"}
    with Client(server.address, serializer=serializer, use=tube, watch=tube) as c:
        job_id = c.put(value, priority=5)
        ids = c.put_many([[1], [2]])
        job = c.reserve(timeout=0)
        assert (job.id, job.body) == (job_id, value)
        assert [c.reserve(timeout=0).body for _ in ids] == [[1], [2]]
        c.delete_many([job_id, *ids])
        with Client(server.address, use=tube) as raw:  # with a serializer, bytes are dumped
            raw.put(b"\xc1 not a value")  # msgpack's reserved byte; no JSON, no pickle
        with pytest.raises(bp.BodyDecodeError) as info:
            c.reserve(timeout=0)
        assert info.value.body == b"\xc1 not a value"
        assert info.value.reason == f"does not load with {serializer.__name__}"
        assert str(info.value).startswith(f"the body of job {info.value.id} does not load")
        assert info.value.__cause__ is not None
        c.delete(info.value.id)  # the job was reserved all the same; the client is in step
        assert pickle.loads(pickle.dumps(info.value)).reason == info.value.reason


def test_str_dumps_use_the_encoding(server: Server, tube: str) -> None:
    class Text:
        __name__ = "Text"

        def dumps(self, obj: Any) -> str:
            return str(obj)

        def loads(self, data: bytes) -> str:
            return data.decode("latin-1")

    with Client(server.address, serializer=Text(), encoding="latin-1", use=tube) as c:
        assert c.peek(c.put("é")).body == "é"
        assert c.peek_ready().body == "é"
    with Client(server.address, use=tube) as raw:
        assert raw.peek_ready().body == b"\xe9"
    with Client(server.address, serializer=json, use=tube) as c:
        assert c.peek(c.put("é")).body == "é"  # UTF-8 by default (json escapes it anyway)


def test_a_serializer_is_checked_before_connecting() -> None:
    with pytest.raises(TypeError, match="dumps"):
        Client(("127.0.0.1", 1), serializer=object())  # type: ignore[call-overload]
    with pytest.raises(LookupError):
        Client(("127.0.0.1", 1), serializer=json, encoding="no-such-codec")


# -- the server closing the connection ------------------------------------------------


def test_the_server_closing_says_so(fresh_server: Any) -> None:
    srv = fresh_server()
    c = Client(srv.address)
    c.put(b"x")
    srv.stop()
    with pytest.raises(bp.BrokenConnectionError, match=r"^the server closed the connection$"):
        c.stats()
    with pytest.raises(
        bp.BrokenConnectionError, match="unusable: the server closed the connection"
    ):
        c.stats()
    c.close()


# -- TLS ------------------------------------------------------------------------------


@contextlib.contextmanager
def tls_proxy(upstream: tuple[str, int], ctx: ssl.SSLContext) -> Iterator[tuple[str, int]]:
    """A TLS-terminating proxy in front of ``upstream``, in threads."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def serve_one(raw: socket.socket) -> None:
        try:
            down = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with down, socket.create_connection(upstream) as up:
            back = threading.Thread(target=pump, args=(up, down), daemon=True)
            back.start()
            pump(down, up)
            back.join(10)

    def accept() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(10)
            t = threading.Thread(target=serve_one, args=(raw,), daemon=True)
            threads.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for t in threads:
            t.join(10)


def test_tls_through_a_terminating_proxy(server: Server, tube: str) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with tls_proxy(server.address, server_ctx) as address:
        with Client(address, ssl_context=client_ctx, use=tube, watch=tube, timeout=30) as c:
            assert isinstance(c._transport._sock, ssl.SSLSocket)
            job_id = c.put(b"over tls", priority=3)
            job = c.reserve(timeout=0)
            assert (job.id, job.body) == (job_id, b"over tls")
            c.delete(job)
            ids = c.put_many([b"x" * 100] * 5000)  # written while reading, through TLS
            assert c.stats_tube(tube).current_jobs_ready == 5000
            c.delete_many(ids)
        # tls=True checks against the system's CAs: this proxy's is not one of them.
        with pytest.raises(ssl.SSLError):
            Client(address, tls=True, timeout=10)


def test_tls_is_refused_without_tcp(server: Server) -> None:
    with pytest.raises(bp.InvalidArgument, match="Unix socket"):
        Client("/run/beanstalkd.sock", tls=True)
    sock = socket.create_connection(server.address)
    with pytest.raises(bp.InvalidArgument, match="connected socket"):
        Client(sock, ssl_context=ssl.create_default_context())
    sock.close()
