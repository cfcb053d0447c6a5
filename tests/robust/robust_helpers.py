"""Helpers of the robustness suite: a scripted fake server, a socket that records
what the client writes, and a fault-injecting TCP proxy.

(A module with its own name rather than a ``conftest.py``: a second conftest.py
would shadow tests/conftest.py for ``from conftest import ...``.)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# -- a scripted fake server ------------------------------------------------------------

Script = Callable[["ScriptedConnection"], None]


class ScriptedConnection:
    """The server side of one connection of :class:`FakeServer`, for scripts."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self._buf = b""

    def read_command(self, timeout: float = 10) -> bytes:
        """The next command line (without CRLF); a ``put``'s body is read and dropped.
        Returns ``b""`` if the client closed the connection."""
        self.sock.settimeout(timeout)
        while b"\r\n" not in self._buf:
            try:
                data = self.sock.recv(1024)
            except OSError:
                return b""
            if not data:
                return b""
            self._buf += data
        line, self._buf = self._buf.split(b"\r\n", 1)
        if line.startswith(b"put "):
            need = int(line.split()[-1]) + 2
            while len(self._buf) < need:
                data = self.sock.recv(1024)
                if not data:
                    return b""
                self._buf += data
            self._buf = self._buf[need:]
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hold(self, seconds: float = 30) -> None:
        """Keep the connection open, saying nothing, until the client goes or the
        server stops."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if not self.sock.recv(1024):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


class FakeServer:
    """A listening socket on 127.0.0.1 whose every connection runs ``script`` in a
    thread. Use as a context manager."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FakeServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                self.script(ScriptedConnection(sock, self.stop))
            except OSError:
                pass  # the client went away: fine for a hostile server
            except BaseException as exc:  # pragma: no cover - a bug in a script
                self.errors.append(exc)


# -- a socket that records what the client writes ----------------------------------------


class RecordingSocket(socket.socket):
    """A TCP socket that keeps a copy of every byte written through it."""

    written: bytearray

    def sendall(self, data: object, *args: object) -> None:  # type: ignore[override]
        self.written.extend(bytes(data))  # type: ignore[call-overload]
        super().sendall(data, *args)  # type: ignore[arg-type]

    def send(self, data: object, *args: object) -> int:  # type: ignore[override]
        n = super().send(data, *args)  # type: ignore[arg-type]
        self.written.extend(bytes(data)[:n])  # type: ignore[call-overload]
        return n


def recording_socket(address: tuple[str, int]) -> RecordingSocket:
    sock = RecordingSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.written = bytearray()
    sock.connect(address)
    return sock


# -- a fault-injecting TCP proxy ---------------------------------------------------------


@dataclass
class Faults:
    """What the proxy does to one connection. Byte counts are per direction:
    ``up`` is client to server, ``down`` server to client."""

    cut_up_after: int | None = None  # close both sides once this many bytes went up
    cut_down_after: int | None = None  # ... or came down
    delay: float = 0.0  # sleep before forwarding each chunk
    stall_down_after: int | None = None  # stop forwarding down (connection kept open)
    chunk: int = 65536  # forward at most this many bytes at a time

    @classmethod
    def random(cls, rng: random.Random) -> Faults:
        kind = rng.choice(["cut_up", "cut_down", "stall", "delay", "none"])
        if kind == "cut_up":
            return cls(cut_up_after=rng.randrange(0, 600), chunk=rng.choice([1, 7, 64, 65536]))
        if kind == "cut_down":
            return cls(cut_down_after=rng.randrange(0, 600), chunk=rng.choice([1, 7, 64, 65536]))
        if kind == "stall":
            return cls(stall_down_after=rng.randrange(0, 400), chunk=rng.choice([1, 64, 65536]))
        if kind == "delay":
            return cls(delay=rng.choice([0.0005, 0.002]), chunk=rng.choice([64, 512, 65536]))
        return cls()


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    faults: Faults
    up: int = 0
    down: int = 0
    dead: threading.Event = field(default_factory=threading.Event)

    def kill(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                # RST rather than FIN: the abrupt end of a broken network path.
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target``. Each new connection gets the
    faults ``next_faults`` holds at accept time."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.next_faults = Faults()
        self.links: list[_Link] = []
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._acceptor.join(5)
        for link in self.links:
            link.kill()
        for t in self._threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            link = _Link(client, server, self.next_faults)
            self.links.append(link)
            for up in (True, False):
                t = threading.Thread(target=self._pump, args=(link, up), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, link: _Link, up: bool) -> None:
        src, dst = (link.client, link.server) if up else (link.server, link.client)
        f = link.faults
        cut = f.cut_up_after if up else f.cut_down_after
        stall = None if up else f.stall_down_after
        try:
            while not link.dead.is_set():
                data = src.recv(f.chunk)
                if not data:
                    # Pass the half-close on, as a real network path would.
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                moved = link.up if up else link.down
                if cut is not None and moved + len(data) >= cut:
                    dst.sendall(data[: cut - moved])
                    link.kill()
                    return
                if stall is not None and moved + len(data) >= stall:
                    dst.sendall(data[: stall - moved])
                    if up:  # pragma: no cover
                        link.up += stall - moved
                    else:
                        link.down += stall - moved
                    link.dead.wait()  # hold everything: the peer sees silence
                    return
                if f.delay:
                    time.sleep(f.delay)
                dst.sendall(data)
                if up:
                    link.up += len(data)
                else:
                    link.down += len(data)
        except OSError:
            link.kill()

    def kill_all(self) -> None:
        for link in self.links:
            link.kill()


class PortalClient:
    """A blocking facade over a ``beanproto_anyio`` client, run through an anyio
    blocking portal (an event loop in another thread): the same methods as
    ``beanproto_sync.Client``, so one test can drive both adapters."""

    def __init__(self, portal: Any, address: tuple[str, int], **kwargs: Any) -> None:
        import beanproto_anyio

        self._portal = portal
        self._cm = portal.wrap_async_context_manager(beanproto_anyio.connect(address, **kwargs))
        self.aclient = self._cm.__enter__()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.aclient, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        portal = self._portal
        return lambda *args, **kwargs: portal.call(functools.partial(attr, *args, **kwargs))

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Assert that the block finishes within ``seconds``."""
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    assert took < seconds, f"took {took:.2f} s, bound {seconds} s"
