"""Test-session fixtures: private beanstalkd servers on free loopback ports.

One server serves the whole session (fresh tube names keep tests apart); tests
that need special flags or signals start their own with ``start_server``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def beanstalkd_binary() -> str:
    path = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
    if not os.path.exists(path):
        pytest.exit(
            "beanstalkd is not installed: run the README's test command "
            "(scripts/test.sh), which installs it, or set BEANSTALKD=/path/to/beanstalkd",
            returncode=4,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A private beanstalkd process, stopped by its own PID."""

    process: subprocess.Popen[bytes]
    host: str | None
    port: int | None
    unix_path: str | None = None
    flags: tuple[str, ...] = field(default=())

    @property
    def address(self) -> tuple[str, int]:
        assert self.host is not None and self.port is not None
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()


def _wait_ready(proc: subprocess.Popen[bytes], target: str | tuple[str, int]) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"beanstalkd exited with {proc.returncode}: {err}")
        family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            try:
                s.connect(target)
                s.sendall(b"list-tube-used\r\n")
                if s.recv(64).startswith(b"USING "):
                    return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("beanstalkd did not become ready within 10 s")
        time.sleep(0.02)


def start_server(*flags: str, unix: bool = False) -> Server:
    """Start a private beanstalkd on a free loopback port (or a Unix socket)."""
    binary = beanstalkd_binary()
    if unix:
        path = os.path.join(tempfile.mkdtemp(prefix="bp-"), "beanstalkd.sock")
        proc = subprocess.Popen(
            [binary, "-l", f"unix:{path}", *flags],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        _wait_ready(proc, path)
        return Server(proc, None, None, unix_path=path, flags=flags)
    for _ in range(20):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "-l", "127.0.0.1", "-p", str(port), *flags],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_ready(proc, ("127.0.0.1", port))
        except RuntimeError:
            proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
            continue
        return Server(proc, "127.0.0.1", port, flags=flags)
    raise RuntimeError("could not start beanstalkd on a free port")


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The session's shared beanstalkd. Use a fresh tube (``tube`` fixture) per test."""
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server() -> Iterator[Callable[..., Server]]:
    """A factory for private servers with flags; all are stopped after the test."""
    started: list[Server] = []

    def make(*flags: str, unix: bool = False) -> Server:
        srv = start_server(*flags, unix=unix)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
        if srv.unix_path:
            shutil.rmtree(Path(srv.unix_path).parent, ignore_errors=True)


_counter = itertools.count()


def new_tube_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}-{next(_counter)}"


@pytest.fixture
def tube() -> str:
    """A tube name no other test uses."""
    return new_tube_name()
