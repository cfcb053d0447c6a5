"""Test-session fixtures: private beanstalkd servers on free loopback ports.

One server serves the whole session (fresh tube names keep tests apart); tests
that need special flags or signals start their own with ``start_server``.

Every server is the binary ``beanstalkd_binary()`` names (``$BEANSTALKD``, else the
system's), and ``server_version()`` is its version: ``scripts/version-matrix.sh`` runs
the behaviour suite and the core's live tests against beanstalkd 1.10 to 1.13 that way.
A test that only holds on some versions says so with the ``beanstalkd`` marker::

    @pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12")
    @pytest.mark.beanstalkd(before="1.12", reason="...")

and is skipped, with the reason, on the other versions.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
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
from typing import IO

import pytest
from hypothesis import HealthCheck, settings

import beanproto
import beanproto_sync
from beanproto.address import describe
from beanproto.metrics import MetricsHooks

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


@functools.cache
def server_version() -> tuple[int, int]:
    """The (major, minor) version of the beanstalkd the tests start (``beanstalkd -v``)."""
    binary = beanstalkd_binary()
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary} from `-v`: {out!r}")
    return int(match[1]), int(match[2])


def server_version_text() -> str:
    """``server_version()`` as beanstalkd writes it: ``"1.12"``."""
    major, minor = server_version()
    return f"{major}.{minor}"


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip a test whose ``beanstalkd(since=..., before=...)`` marks exclude this server."""
    for item in items:
        for mark in item.iter_markers("beanstalkd"):
            since, before = mark.kwargs.get("since"), mark.kwargs.get("before")
            reason = mark.kwargs.get("reason", "")
            have, shown = server_version(), server_version_text()
            if since is not None and have < _version(since):
                why = f"needs beanstalkd {since} or newer, this is {shown}: {reason}"
            elif before is not None and have >= _version(before):
                why = f"only for beanstalkd before {before}, this is {shown}: {reason}"
            else:
                continue
            item.add_marker(pytest.mark.skip(reason=why))
            break


def pytest_report_header(config: pytest.Config) -> str:
    path = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
    if not os.path.exists(path):
        return f"beanstalkd: {path} (not found)"
    return f"beanstalkd: {path} (version {server_version_text()})"


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

    @property
    def name(self) -> str:
        """The server as pools and workers name it (``Job.server``)."""
        return describe(self.address)

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone (``restart_server`` can then take its port)."""
        self.signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        _close_log(self.process)


def _wait_ready(proc: subprocess.Popen[bytes], target: str | tuple[str, int]) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            log = _LOGS[proc.pid]
            log.seek(0)
            err = log.read().decode(errors="replace")
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


#: Each server's standard error, by PID: a temporary file, never a pipe. A pipe
#: nobody reads fills up (64 KiB of beanstalkd's warnings about connections that
#: closed mid-command) and then blocks the server in its next write, for good.
_LOGS: dict[int, IO[bytes]] = {}


def _close_log(proc: subprocess.Popen[bytes]) -> None:
    log = _LOGS.pop(proc.pid, None)
    if log is not None:
        log.close()


def launch(args: list[str], target: str | tuple[str, int]) -> subprocess.Popen[bytes]:
    """Start beanstalkd with ``args`` and wait until it answers at ``target``. On any
    failure the process is killed and its log file closed (an open file left to the
    garbage collector is a ``ResourceWarning``, which fails whatever test is running)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the server's life
    try:
        proc = subprocess.Popen(args, stderr=log, stdout=subprocess.DEVNULL)
    except BaseException:
        log.close()
        raise
    _LOGS[proc.pid] = log
    try:
        _wait_ready(proc, target)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _close_log(proc)
        raise
    return proc


#: Unix sockets (``-l unix:PATH``) are new in beanstalkd 1.12; older servers exit at once.
UNIX_SOCKETS_SINCE = "1.12"


def start_server(*flags: str, unix: bool = False) -> Server:
    """Start a private beanstalkd on a free loopback port (or a Unix socket).

    A Unix socket on a server older than 1.12 skips the calling test."""
    binary = beanstalkd_binary()
    if unix:
        if server_version() < _version(UNIX_SOCKETS_SINCE):
            pytest.skip(
                f"beanstalkd {server_version_text()} has no Unix sockets "
                f"(-l unix: is new in {UNIX_SOCKETS_SINCE})"
            )
        folder = tempfile.mkdtemp(prefix="bp-")
        path = os.path.join(folder, "beanstalkd.sock")
        try:
            proc = launch([binary, "-l", f"unix:{path}", *flags], path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Server(proc, None, None, unix_path=path, flags=flags)
    error: RuntimeError | None = None
    for _ in range(20):
        port = free_port()
        args = [binary, "-l", "127.0.0.1", "-p", str(port), *flags]
        try:
            proc = launch(args, ("127.0.0.1", port))
        except RuntimeError as exc:
            error = exc  # most likely the port was taken meanwhile: try another
            continue
        return Server(proc, "127.0.0.1", port, flags=flags)
    raise RuntimeError(f"could not start beanstalkd on a free port ({error})")


def restart_server(srv: Server) -> Server:
    """Start a new beanstalkd on the port of ``srv``, which was stopped or killed
    (a client's reconnecting). The caller stops it."""
    assert srv.port is not None and srv.process.poll() is not None
    args = [beanstalkd_binary(), "-l", "127.0.0.1", "-p", str(srv.port), *srv.flags]
    return Server(launch(args, srv.address), srv.host, srv.port, flags=srv.flags)


@pytest.fixture
def restarted() -> Iterator[Callable[[Server], Server]]:
    """Restart a killed server on its port; the new ones are stopped after the test."""
    started: list[Server] = []

    def restart(srv: Server) -> Server:
        new = restart_server(srv)
        started.append(new)
        return new

    yield restart
    for srv in started:
        srv.stop()


def ready_count(srv: Server, tube: str) -> int:
    """How many jobs of ``tube`` are ready on ``srv`` (0 for a tube it does not have)."""
    with beanproto_sync.Client(srv.address, timeout=5) as c:
        try:
            return c.stats_tube(tube).current_jobs_ready
        except beanproto.NotFoundError:
            return 0


def drain_bodies(srv: Server, tube: str) -> list[bytes]:
    """Every ready body of ``tube`` on ``srv``, in reserve order (deleted)."""
    bodies = []
    with beanproto_sync.Client(srv.address, watch=tube, timeout=5) as c:
        while True:
            try:
                job = c.reserve(timeout=0)
            except beanproto.TimedOutError:
                return bodies
            bodies.append(job.body)
            c.delete(job)


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


class RecordingHooks(MetricsHooks):
    """Metrics hooks that keep every report, in order."""

    def __init__(self) -> None:
        #: Each command: (name, outcome, duration, server).
        self.calls: list[tuple[str, str, float, str]] = []
        #: Each job outcome: (tube, outcome, duration, failed, server).
        self.jobs: list[tuple[str, str, float, bool, str]] = []

    def command(self, name: str, outcome: str, duration: float, server: str) -> None:
        self.calls.append((name, outcome, duration, server))

    def job(self, tube: str, outcome: str, duration: float, *, failed: bool, server: str) -> None:
        self.jobs.append((tube, outcome, duration, failed, server))

    def pairs(self) -> list[tuple[str, str]]:
        """Each command as (name, outcome)."""
        return [(name, outcome) for name, outcome, _, _ in self.calls]


_counter = itertools.count()


def new_tube_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}-{next(_counter)}"


@pytest.fixture
def tube() -> str:
    """A tube name no other test uses."""
    return new_tube_name()
