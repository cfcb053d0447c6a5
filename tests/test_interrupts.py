"""An exception at every line a call executes: the client ends in step or closed.

An exception can arrive between any two lines: a signal handler's (on the main
thread), ``KeyboardInterrupt`` under trio, an exception thrown into a coroutine. For
each call below, a first run counts the lines the call executes in beanproto's own
code (the clients, the core, ``beanproto.adapter``); then, for every one of those
lines, a fresh run raises :class:`Injected` (a ``BaseException``, as
``KeyboardInterrupt`` is) when that line is reached, through ``sys.settrace``. After
each run, checked against the server through a separate connection:

* the call raised the injected exception, or returned its own answer;
* the client is either in step (the next calls get their own answers) or closed
  (``closed`` is true and every later call raises ``BrokenConnectionError``);
* no job is left reserved on an open connection: a job reserved for the interrupted
  call is back in the ready queue, with its priority, once the client is closed;
* the sync client's lock is free; ``close()`` returns at once and releases the socket;
* on the anyio client, other tasks' calls in flight at the time each got their own
  answer or ``BrokenConnectionError``, and nothing hangs (every run is bounded).

This sweep is the guard for every later change to the call paths.
"""

from __future__ import annotations

import dis
import functools
import linecache
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any

import anyio
import pytest

import beanproto as bp
import beanproto_anyio
from beanproto_sync import Client
from conftest import Server, new_tube_name

_OURS = ("/beanproto/", "/beanproto_sync/", "/beanproto_anyio/")


class Injected(BaseException):
    """The exception the sweep raises at a line (a BaseException, as a signal's)."""


def _ours(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return any(part in filename for part in _OURS)


@functools.cache
def _kind(filename: str, lineno: int) -> str:
    line = linecache.getline(filename, lineno).strip()
    if line == "try:":
        return "try"
    if line.startswith(("with ", "async with ")):
        return "with"
    return ""


@functools.cache
def _with_entries(code: CodeType) -> dict[int, int]:
    """Line -> offset of the instruction that enters its with statement."""
    entries: dict[int, int] = {}
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line is not None:
            line = ins.starts_line
        if ins.opname in ("BEFORE_WITH", "BEFORE_ASYNC_WITH", "SETUP_WITH", "SETUP_ASYNC_WITH"):
            entries.setdefault(line, ins.offset)
    return entries


def _interruptible(frame: FrameType) -> bool:
    """Whether an interrupt can arrive where this line event fires (see below)."""
    kind = _kind(frame.f_code.co_filename, frame.f_lineno)
    if kind == "try":
        return False
    if kind == "with":  # entering it, not leaving it
        entry = _with_entries(frame.f_code).get(frame.f_lineno)
        return entry is None or frame.f_lasti < entry
    return True


@contextmanager
def lines_traced(on_line: Callable[[FrameType], None]) -> Iterator[None]:
    """Call ``on_line(frame)`` at each line executed in beanproto's own code, in
    this thread, inside the block.

    Except two events no interrupt can share: a ``try:`` (a no-op instruction,
    where CPython never runs a signal handler: it does so at calls and backward
    jumps), and the event of a ``with`` line that comes as its block is left,
    before ``__exit__`` is called. An exception a trace function raises at either
    skips the enclosing ``with``'s ``__exit__`` (CPython 3.11), leaving a lock or a
    cancel scope behind, which no real interrupt can do."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and _interruptible(frame):
            on_line(frame)
        return local

    def global_(frame: FrameType, event: str, arg: Any) -> Any:
        return local if _ours(frame) else None

    previous = sys.gettrace()
    sys.settrace(global_)
    try:
        yield
    finally:
        sys.settrace(previous)


class Injector:
    """Counts the lines seen (``at=None``) or raises :class:`Injected` at line ``at``."""

    def __init__(self, at: int | None, only: Callable[[], bool] = lambda: True) -> None:
        self.at = at
        self.only = only
        self.seen = 0
        self.fired = False

    def __call__(self, frame: FrameType) -> None:
        if self.fired or not self.only():
            return
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            raise Injected(f"line {frame.f_lineno} of {frame.f_code.co_name}")


# -- what the server says, through a connection of its own ------------------------


def _raw(address: tuple[str, int], line: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"OK ") and data.count(b"\n") < 2):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def tube_counts(address: tuple[str, int], tube: str) -> dict[str, int]:
    """``current-jobs-ready`` and ``current-jobs-reserved`` of ``tube``."""
    reply = _raw(address, b"stats-tube %s\r\n" % tube.encode())
    counts: dict[str, int] = {}
    for line in reply.decode().splitlines():
        key, _, value = line.partition(": ")
        if key in ("current-jobs-ready", "current-jobs-reserved"):
            counts[key] = int(value)
    return counts


def wait_released(address: tuple[str, int], tube: str) -> None:
    """Wait (up to 5 s) until no job of ``tube`` is reserved; then check that the
    most urgent ready job is the test's own, with its priority (7)."""
    deadline = time.monotonic() + 5
    while tube_counts(address, tube)["current-jobs-reserved"]:
        assert time.monotonic() < deadline, "a job is still reserved"
        time.sleep(0.01)
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"use %s\r\npeek-ready\r\n" % tube.encode())
        data = b""
        while data.count(b"\r\n") < 3:
            data += sock.recv(4096)
    assert data.split(b"\r\n")[2] == b"ready job", data
    job_id = int(data.split(b"\r\n")[1].split()[1])
    assert b"\npri: 7\n" in _raw(address, b"stats-job %d\r\n" % job_id)


# -- the blocking client ----------------------------------------------------------

SyncCall = Callable[[Client[bytes]], object]

SYNC_CALLS: dict[str, SyncCall] = {
    "put": lambda c: c.put(b"the call"),
    "reserve": lambda c: c.reserve(timeout=0),
    "reserve-blocking": lambda c: c.reserve(),
    "put_many": lambda c: c.put_many([b"a", b"b", b"c"]),
    "stats": lambda c: c.stats(),
}


def _sync_run(server: Server, tube: str, name: str, at: int | None) -> int:
    """One run of ``SYNC_CALLS[name]`` on a fresh client, with a job ready; checks
    the outcome. Returns how many lines the call executed (when ``at`` is None)."""
    address = server.address
    c = Client(address, use=tube, watch=tube, timeout=5)
    try:
        c.put(b"ready job", priority=7)
        injector = Injector(at)
        outcome: object = None
        with lines_traced(injector):
            try:
                outcome = SYNC_CALLS[name](c)
            except Injected:
                outcome = Injected
        if at is not None and not injector.fired:
            # This run took a shorter path than the counting one (a batch's
            # replies arrived at other times): the call got its answer.
            assert outcome is not Injected and outcome is not None
        _check_sync_client(c, address, tube, name, outcome)
        return injector.seen
    finally:
        start = time.monotonic()
        c.close()
        assert time.monotonic() - start < 0.5
        assert c.closed and c._transport._sock is not None
        assert c._transport._sock.fileno() == -1  # the socket is released


def _check_sync_client(
    c: Client[bytes], address: tuple[str, int], tube: str, name: str, outcome: object
) -> None:
    lock = c._transport._lock
    assert lock.acquire(blocking=False), "the lock was not given back"
    lock.release()
    if c.closed:
        with pytest.raises(bp.BrokenConnectionError):
            c.put(b"after")
        # Whatever the call had reserved is back, with its priority.
        wait_released(address, tube)
        return
    # In step: what the call left on the server is what it answered, and the next
    # calls get their own answers.
    if isinstance(outcome, bp.Job):
        assert outcome.body == b"ready job"
        c.release(outcome, priority=7)
    else:
        assert tube_counts(address, tube)["current-jobs-reserved"] == 0
    new_id = c.put(b"check")
    assert c.peek(new_id).body == b"check"
    job = c.reserve(timeout=0)
    assert (job.body, c.stats_job(job).pri) == (b"ready job", 7)
    c.delete(job)
    c.delete(new_id)


def _sync_points(server: Server, tube: str, name: str) -> int:
    return _sync_run(server, tube, name, None)


@pytest.mark.parametrize("name", sorted(SYNC_CALLS))
def test_sync_client_interrupted_at_every_line(server: Server, name: str) -> None:
    points = _sync_points(server, new_tube_name(), name)
    assert points > 20, points
    for at in range(1, points + 1):
        _sync_run(server, new_tube_name(), name, at)


# -- the anyio client, with other tasks' calls in flight ---------------------------

AsyncCall = Callable[[beanproto_anyio.Client[bytes]], Any]

ASYNC_CALLS: dict[str, AsyncCall] = {
    "put": lambda c: c.put(b"the call"),
    "reserve": lambda c: c.reserve(timeout=0),
    "reserve-blocking": lambda c: c.reserve(),
    "put_many": lambda c: c.put_many([b"a", b"b", b"c"]),
    "stats": lambda c: c.stats(),
}
BYSTANDERS = 3


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def _async_run(server: Server, tube: str, name: str, at: int | None) -> int:
    """One run of ``ASYNC_CALLS[name]`` on a fresh client while other tasks' puts
    are in flight; checks the outcome. Returns the lines the call executed."""
    address = server.address
    outcome: object = None
    others: dict[int, object] = {}
    with anyio.fail_after(5):
        async with beanproto_anyio.connect(address, use=tube, watch=tube) as c:
            await c.put(b"ready job", priority=7)
            target: list[int] = []
            injector = Injector(at, only=lambda: anyio.get_current_task().id in target)

            async def other(k: int) -> None:
                try:
                    others[k] = await c.put(b"other %d" % k)
                except bp.BrokenConnectionError as exc:
                    others[k] = exc

            async def call() -> None:
                nonlocal outcome
                target.append(anyio.get_current_task().id)
                try:
                    outcome = await ASYNC_CALLS[name](c)
                except BaseException as exc:
                    # At the line that leaves a batch's task group, the exception
                    # comes out of the group inside an exception group.
                    if not _only_injected(exc):
                        raise
                    outcome = Injected

            with lines_traced(injector):
                async with anyio.create_task_group() as tg:
                    for k in range(BYSTANDERS):
                        tg.start_soon(other, k)
                    tg.start_soon(call)
                    for k in range(BYSTANDERS, 2 * BYSTANDERS):
                        tg.start_soon(other, k)
            if at is not None and not injector.fired:
                # This run took another path than the counting one (the tasks
                # interleaved otherwise): the call must have got its answer.
                assert outcome is not Injected and outcome is not None
            await _check_async_client(c, address, tube, outcome, others)
            return injector.seen


def _only_injected(exc: BaseException) -> bool:
    """``exc`` is :class:`Injected`, or exception groups holding only that."""
    if isinstance(exc, Injected):
        return True
    inner = getattr(exc, "exceptions", None)
    return bool(inner) and all(_only_injected(e) for e in inner)


async def _check_async_client(
    c: beanproto_anyio.Client[bytes],
    address: tuple[str, int],
    tube: str,
    outcome: object,
    others: dict[int, object],
) -> None:
    assert len(others) == 2 * BYSTANDERS
    if c.closed:
        with pytest.raises(bp.BrokenConnectionError):
            await c.put(b"after")
        wait_released(address, tube)
        async with beanproto_anyio.connect(address, use=tube) as check:
            await _check_others(check, others)
        return
    await _check_others(c, others)
    if isinstance(outcome, bp.Job):
        assert outcome.body == b"ready job"
        await c.release(outcome, priority=7)
    else:
        assert tube_counts(address, tube)["current-jobs-reserved"] == 0
    new_id = await c.put(b"check")
    assert (await c.peek(new_id)).body == b"check"
    job = await c.reserve(timeout=0)
    assert (job.body, (await c.stats_job(job)).pri) == (b"ready job", 7)
    await c.delete(job)


async def _check_others(c: beanproto_anyio.Client[bytes], others: dict[int, object]) -> None:
    """Each other task got its own job's id, or BrokenConnectionError."""
    for k, result in others.items():
        if isinstance(result, int):
            assert (await c.peek(result)).body == b"other %d" % k
        else:
            assert isinstance(result, bp.BrokenConnectionError), result


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(ASYNC_CALLS))
async def test_anyio_client_interrupted_at_every_line(server: Server, name: str) -> None:
    points = await _async_run(server, new_tube_name(), name, None)
    assert points > 20, points
    for at in range(1, points + 1):
        await _async_run(server, new_tube_name(), name, at)
