"""Helpers of the sync client's tests: a scripted fake server, and a socket that
raises once its bytes are written.

(A module with its own name rather than a ``conftest.py``: a second conftest.py
would shadow tests/conftest.py for ``from conftest import ...``.)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Peer:
    """The server side of one connection of :func:`scripted_server`, for scripts."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self._buf = b""

    def read_commands(self, count: int = 1) -> bool:
        """Read ``count`` command lines (a ``put``'s body with its line); False if
        the client went away first."""
        self.sock.settimeout(10)
        for _ in range(count):
            while b"\r\n" not in self._buf:
                data = self.sock.recv(4096)
                if not data:
                    return False
                self._buf += data
            line, self._buf = self._buf.split(b"\r\n", 1)
            if line.startswith(b"put "):
                need = int(line.split()[-1]) + 2
                while len(self._buf) < need:
                    data = self.sock.recv(4096)
                    if not data:
                        return False
                    self._buf += data
                self._buf = self._buf[need:]
        return True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, every: float) -> None:
        """Send ``data`` one byte every ``every`` seconds (until the server stops)."""
        for i in range(len(data)):
            if self.stop.wait(every):
                return
            self.sock.sendall(data[i : i + 1])

    def wait(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def hold(self) -> None:
        """Say nothing more until the client goes or the server stops."""
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                if not self.sock.recv(4096):
                    return
            except TimeoutError:
                continue


Script = Callable[[Peer], None]


@contextlib.contextmanager
def scripted_server(script: Script) -> Iterator[tuple[str, int]]:
    """A listening socket on 127.0.0.1 whose every connection runs ``script`` (then
    holds) in a thread; yields its address. Scripts may fail with ``OSError`` when
    the client goes away; any other exception fails the test."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def serve(sock: socket.socket) -> None:
        with sock:
            try:
                peer = Peer(sock, stop)
                script(peer)
                peer.hold()
            except OSError:
                pass
            except BaseException as exc:  # pragma: no cover - a bug in a script
                errors.append(exc)

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=serve, args=(sock,), daemon=True)
            threads.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        acceptor.join(5)
        for t in threads:
            t.join(5)
        listener.close()
    assert not errors, errors


class InterruptAfterWrite(socket.socket):
    """A connected socket that, once armed, raises ``KeyboardInterrupt`` right after
    its next write (a ``sendall``, or one ``send`` of a pipelined batch): the
    moment after the bytes left and before their reply was read."""

    armed = False

    @classmethod
    def connect_to(cls, address: tuple[str, int]) -> InterruptAfterWrite:
        return cls(fileno=socket.create_connection(address).detach())

    def _written(self) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

    def sendall(self, data: Any, *args: Any) -> None:
        super().sendall(data, *args)
        self._written()

    def send(self, data: Any, *args: Any) -> int:
        n = super().send(data, *args)
        self._written()
        return n
