"""The blocking transport: one beanstalkd connection over a socket, driving the core.

Theory of operation (httpcore over h11): every call is one exchange under the
transport's lock. The exchange gives the core its command (``Connection.send``),
writes the bytes, and reads until the core has produced one event per command;
the caller's ``result`` function then turns the event into the call's value or
raises the server's refusal. A single command, or a small batch (a worker's
ending and next reserve), is written with ``sendall`` and its replies read with
``recv``. A larger pipelined batch (``put_many``, ``delete_many``) is written in
slices on a non-blocking socket, reading the replies that arrived in between, so
the server (which stops reading while it cannot write) never deadlocks against
us on TCP back-pressure.

Time: with a ``timeout``, one deadline bounds the whole exchange (every write,
every wait, every ``recv``), so a server that trickles bytes cannot stretch a
call past it. A reserve's wait is the exception: the socket waits for the
reply's first bytes as long as the reserve may take (``wait``), and once they
came the rest of the reply is bounded by the timeout like any other. In a
pipelined exchange the reserve is the last command (a worker's ``delete`` and
next ``reserve``): the replies before it are bounded by the timeout, and the
wait applies to the last reply's first bytes.

Interrupts: everything from taking the lock to handing over the result is inside
one ``try``. An exception there that is not the call's own refusal (a socket
timeout, ``KeyboardInterrupt``, an I/O error, a protocol error) may have left
bytes half written or a reply half read, or a reserved job on its way to a
caller that will never see it; so the transport gives up on the connection: it
tells the core (``send_failed``) and closes the socket, which makes the server
return any job reserved in flight to the ready queue, and every later call
raises :class:`BrokenConnectionError` until :meth:`Transport.open` reconnects.
The lock is a ``threading.RLock`` taken with ``with``, so it is always given back;
re-entrant so that a signal handler calling the client in the thread that is in a
call (at any point of it) never waits on that very thread: it takes the lock
again, and raises :class:`ConcurrentUseError` if the call is under way.

Reconnecting (``reconnect=True``): a broken connection stays broken until the
next call, which (under the lock, before it writes anything of its own) opens
a new one whose setup is the used tube and watch list the broken one had
confirmed. A call whose one command changes state and whose connection broke
before its reply raised, and is never sent again: a ``put`` whose reply was lost
may have inserted its job. A read-only command or a reserve
(:func:`beanproto.adapter.retryable`) is sent once more instead, on a new
connection opened at once under the same lock (a reserve with a timeout with
the time it has left): every step of that retry is inside the exchange's
``try``, so an interrupt there closes the connection as anywhere else. A
failed attempt sets the time of the next
(:func:`beanproto.adapter.reconnect_delay`); a call before then raises
:class:`BrokenConnectionError` at once instead of sleeping. ``close()`` ends it
for good.

Metrics (``metrics=``): a client given hooks gets a :class:`MeasuredTransport`,
which overrides the two methods every command goes through (``_run``, which
writes and reads an exchange, and ``_deliver``, which takes a ``recv``'s
replies) to read the clock and call the hooks; the plain transport has no check
for them at all. Its hooks run inside the exchange's ``try``: one that raises
is an interrupted exchange (the connection is closed, a job in flight goes back).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from beanproto import (
    NEED_DATA,
    BodyDecodeError,
    BrokenConnectionError,
    Command,
    CommandError,
    Connection,
    Error,
    Event,
    InvalidArgument,
    Quit,
    RemoteProtocolError,
    Reserve,
    ReserveWithTimeout,
    State,
)
from beanproto.adapter import (
    batch_outcomes,
    reconnect_delay,
    reply_word,
    reserve_command,
    restore_commands,
    retryable,
    set_tcp_options,
)
from beanproto.address import Address as _Address
from beanproto.address import Resolved, describe, resolve_address
from beanproto.metrics import MetricsHooks

__all__ = ["SAME", "Address", "ConcurrentUseError", "MeasuredTransport", "Transport"]

T = TypeVar("T")

log = logging.getLogger("beanproto.client")

#: What a client connects to: an address of :mod:`beanproto.address` (``(host,
#: port)``, a Unix socket path, an address string), or a connected socket
#: (which the client then owns).
Address = _Address | socket.socket

#: Bytes read per ``recv``.
_RECV_SIZE: Final = 65536
#: Bytes written per ``send`` of a pipelined batch, with replies read in between.
_SLICE: Final = 256 * 1024
#: A pipelined batch this small is written with one ``sendall``: the kernel's
#: socket buffers take it whole even while the server stops reading, so it
#: cannot deadlock on back-pressure (a worker's ending and next reserve).
_SMALL_BATCH: Final = 16 * 1024
#: How long ``close()`` may spend writing ``quit``, or waiting for a call it aborted.
_QUIT_TIMEOUT: Final = 1.0
#: What a call raises as itself and leaves the connection in step: the server's
#: refusals, and a job body that does not decode (the job is the caller's).
_IN_STEP: Final = (CommandError, BodyDecodeError)
#: What a send or recv on a non-blocking socket raises when it cannot proceed
#: (a TLS socket's own kinds: a TLS record may need the other direction).
_WOULD_BLOCK: Final = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

#: ``wait`` for an exchange that keeps the client's timeout.
SAME: Final[Any] = object()


class ConcurrentUseError(Error, RuntimeError):
    """A thread called a :class:`Client` while it was already in a call on it
    (from a signal handler, say). The inner call sent nothing; the outer one is
    unaffected. Calls from *different* threads simply take turns."""


class Transport:
    """One connection: opening it, exchanges under a lock, breaking and closing."""

    __slots__ = (
        "_address",
        "_broken",
        "_closed",
        "_conn",
        "_failures",
        "_lock",
        "_max_body_size",
        "_max_command_size",
        "_owner",
        "_reconnect",
        "_restore",
        "_retry_at",
        "_setup",
        "_sock",
        "_ssl_context",
        "description",
        "timeout",
    )

    def __init__(
        self,
        address: Address | None,
        *,
        timeout: float | None,
        max_body_size: int,
        max_command_size: int,
        setup: Sequence[Command],
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = False,
    ) -> None:
        target: Resolved | socket.socket
        if isinstance(address, socket.socket):
            if ssl_context is not None:
                raise InvalidArgument("TLS needs a (host, port) address, not a connected socket")
            if reconnect:
                raise InvalidArgument("a client given a connected socket cannot reconnect")
            if timeout is None:
                # The socket's own timeout (a non-blocking socket's 0: none).
                timeout = address.gettimeout() or None
            target = address
        else:
            target = resolve_address(address)
            if isinstance(target, str) and ssl_context is not None:
                raise InvalidArgument("TLS needs a (host, port) address, not a Unix socket")
        self._address = target
        self._ssl_context = ssl_context
        self.timeout = timeout
        self._max_body_size = max_body_size
        self._max_command_size = max_command_size
        self._setup = list(setup)
        self._lock = threading.RLock()
        self._owner: int | None = None  # the thread in a call, while one is
        self._broken: str | None = "not connected yet"
        self._sock: socket.socket | None = None
        self._conn = Connection(max_body_size=max_body_size, max_command_size=max_command_size)
        self.description = _describe(target)
        self._reconnect = reconnect
        self._closed = False  # close() was called: no reconnecting
        self._restore: list[Command] | None = None  # the setup of the next reconnection
        self._failures = 0  # failed reconnection attempts in a row
        self._retry_at = 0.0  # no attempt before this time.monotonic()

    # -- opening ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect, then send the setup (``use``/``watch``) in one write.

        Called once by the client; a reconnect may call it again once the
        connection is broken (a connected socket given as the address cannot
        be opened twice)."""
        with self._lock:
            self._open(self._setup)
        log.info("connected to %s", self.description)

    def _open(self, setup: list[Command]) -> None:
        sock = self._connect()
        self._sock = sock
        self._conn = Connection(
            max_body_size=self._max_body_size, max_command_size=self._max_command_size
        )
        try:
            if self._closed:
                raise BrokenConnectionError("the client was closed")
            sock.settimeout(self.timeout)
            set_tcp_options(sock)
            self._broken = None
            if setup:
                batch_outcomes(setup, self._run(setup, SAME), None)
        except BaseException as exc:
            replacement = self._interrupted(exc)
            if replacement is exc:
                raise
            raise replacement from exc

    def _reopen(self) -> None:
        """Reconnect (a broken connection, ``reconnect=True``), unless the last
        attempt failed too recently: then raise at once."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise BrokenConnectionError(
                f"the connection is unusable: {self._broken}; "
                f"next attempt to reconnect in {wait:.2f} s"
            )
        if self._restore is None:
            # What the broken connection had confirmed, kept until an attempt succeeds.
            conn = self._conn
            self._restore = restore_commands(conn.used_tube, conn.watched_tubes)
        try:
            self._open(self._restore)
        except Exception as exc:
            self._failures += 1
            delay = reconnect_delay(self._failures)
            self._retry_at = time.monotonic() + delay
            log.info(
                "reconnecting to %s failed (attempt %d): %s; next attempt in %.1f s",
                self.description,
                self._failures,
                exc,
                delay,
            )
            if isinstance(exc, BrokenConnectionError):
                raise
            raise BrokenConnectionError(f"reconnecting failed: {exc}") from exc
        log.info("reconnected to %s (attempt %d)", self.description, self._failures + 1)
        self._failures = 0
        self._restore = None

    def _connect(self) -> socket.socket:
        address = self._address
        if isinstance(address, socket.socket):
            if self._sock is not None:
                raise BrokenConnectionError("a client given a connected socket cannot reconnect")
            return address
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
            return sock
        host, port = address
        sock = socket.create_connection((host, port), timeout=self.timeout)
        if self._ssl_context is None:
            return sock
        try:
            return self._ssl_context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    # -- exchanges -------------------------------------------------------------------

    def request(
        self, command: Command, result: Callable[[Event], T], wait: float | None = SAME
    ) -> T:
        """Send ``command``, read its reply and return ``result(event)``.

        ``wait`` is how long the reply's first bytes may take (a reserve's
        wait; :data:`SAME` keeps the timeout). With ``reconnect=True``, a
        :func:`~beanproto.adapter.retryable` command whose connection broke
        before its reply is sent once more on a new connection."""
        if self._reconnect and retryable(command):
            again = self._again(command, wait)
            return self.exchange((command,), result, wait, single=True, again=again)
        return self.exchange((command,), result, wait, single=True)

    def reserve_wait(self, command: Reserve | ReserveWithTimeout) -> float | None:
        """The ``wait`` of a reserve: ``None`` (no socket timeout) for a plain
        reserve, the reserve's timeout plus the client's for one with a timeout,
        else :data:`SAME`."""
        timeout = self.timeout
        wait: float | None = SAME
        if timeout is not None:
            if not isinstance(command, ReserveWithTimeout):
                wait = None  # a plain reserve waits however long it takes
            elif command.timeout:
                wait = command.timeout + timeout
        return wait

    def _again(
        self, command: Command, wait: float | None
    ) -> Callable[[], tuple[Command, float | None]]:
        """What to send again after a break: the same command, or a reserve with
        a timeout with the time it has left (0: a poll)."""
        if not (isinstance(command, ReserveWithTimeout) and command.timeout):
            return lambda: (command, wait)
        started = time.monotonic()

        def remaining() -> tuple[Command, float | None]:
            left = reserve_command(max(0.0, command.timeout - (time.monotonic() - started)))
            return left, self.reserve_wait(left)

        return remaining

    def exchange(
        self,
        commands: Sequence[Command],
        result: Callable[[Any], T],
        wait: float | None = SAME,
        *,
        single: bool = False,
        again: Callable[[], tuple[Command, float | None]] | None = None,
    ) -> T:
        """Send ``commands`` (pipelined) and return ``result(events)``, one event
        per command (``result(event)`` for the one command of a ``single``).

        ``again`` (a single retryable command, ``reconnect=True``): if the
        connection breaks before the reply, the command and wait it returns are
        sent once on a new connection."""
        # Not `with self._lock`: leaving a with block runs code (its __exit__) after
        # the value is made, where an exception would lose it (and a job with
        # it). Here everything from taking the lock to giving it back is inside
        # the try, and the lock is given back in the line that hands the value
        # over (_hand_back).
        lock = self._lock
        held = mine = False
        try:
            held = lock.acquire()
            if self._owner is not None:
                # Only this thread can hold the lock again: a call from inside its own.
                raise ConcurrentUseError(
                    "this thread is already in a call on this client (a signal handler?)"
                )
            self._owner, mine = threading.get_ident(), True
            if self._broken is not None:
                if not self._reconnect or self._closed:
                    raise self._unusable()
                self._reopen()
            try:
                events = self._run(commands, wait)
            except (BrokenConnectionError, OSError) as exc:
                if again is None or self._closed or isinstance(exc, TimeoutError):
                    raise
                # The reply was lost with the connection: its command reads, or
                # reserves (the server puts back a job reserved on a closed one).
                self._interrupted(exc)
                command, wait = again()
                commands = (command,)
                self._reopen()
                events = self._run(commands, wait)
            value = result(events[0] if single else events)
            if self._conn.state is State.BROKEN:
                # The replies were good, but the server spoke unasked after them:
                # a later call could take those bytes for its reply.
                self._fail("the server sent bytes nobody asked for")
            return self._hand_back(value)
        except BaseException as exc:
            raise_ = exc
            if mine:
                self._owner = None
                # InvalidArgument comes only from the core's send, which refuses
                # a command before recording it: nothing of a single one was sent.
                if isinstance(exc, _IN_STEP) or (
                    isinstance(exc, InvalidArgument) and len(commands) == 1
                ):
                    if self._conn.state is State.BROKEN:
                        # A refusal, and bytes nobody asked for after it.
                        self._fail("the server sent bytes nobody asked for")
                else:
                    raise_ = self._interrupted(exc)
            if held:
                # A signal handler can also raise just after _hand_back gave the
                # lock back (after its release, a C call): not ours to release.
                with contextlib.suppress(RuntimeError):
                    lock.release()
            if raise_ is exc:
                raise
            raise raise_ from exc

    def _hand_back(self, value: T) -> T:
        # No call is in progress any more, the lock is given back and the value
        # goes to the caller, in one line: an exception cannot come between them.
        return (setattr(self, "_owner", None), self._lock.release(), value)[2]  # type: ignore[func-returns-value]

    def _run(self, commands: Sequence[Command], wait: float | None) -> list[Event]:
        conn = self._conn
        sock = self._sock
        assert sock is not None
        n = len(commands)
        data = conn.send(commands[0]) if n == 1 else b"".join([conn.send(c) for c in commands])
        timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[Event] = []
        if len(data) <= (_SLICE if n == 1 else _SMALL_BATCH):
            sock.sendall(data)
        else:
            self._write_reading(memoryview(data), events, n, deadline)
        if wait is not SAME:
            # A reserve's wait is the last command's (a worker pipelines a delete
            # before it): the replies before it come at once, under the deadline;
            # then the last reply's first bytes may take as long as the reserve.
            self._read(events, n - 1, n, deadline)
            if len(events) < n and not conn.buffered:
                sock.settimeout(wait)
                try:
                    data = sock.recv(_RECV_SIZE)
                finally:
                    sock.settimeout(timeout)
                deadline = None if timeout is None else time.monotonic() + timeout
                self._deliver(data, events, n)
        self._read(events, n, n, deadline)
        if deadline is not None:
            sock.settimeout(timeout)
        return events

    def _read(self, events: list[Event], until: int, n: int, deadline: float | None) -> None:
        """Read until ``until`` of the ``n`` events owed have come, by ``deadline``."""
        sock = self._sock
        assert sock is not None
        while len(events) < until:
            if deadline is not None:
                # Past the deadline, recv still takes what has arrived, else it
                # times out (a timeout of 0 would make the socket non-blocking).
                sock.settimeout(max(deadline - time.monotonic(), 1e-6))
            self._deliver(sock.recv(_RECV_SIZE), events, n)

    def _deliver(self, data: bytes, events: list[Event], n: int) -> None:
        """Give the core what one ``recv`` brought; collect every event it can
        build, up to the ``n`` owed.

        Bytes beyond the replies owed mean the server spoke unasked: the core
        raises :class:`RemoteProtocolError` for them, and breaks; the replies
        before them are good, and ``exchange`` returns them before closing."""
        if not data:
            raise BrokenConnectionError("the server closed the connection")
        conn = self._conn
        conn.receive_data(data)
        try:
            while len(events) < n and (event := conn.next_event()) is not NEED_DATA:
                events.append(event)
            if len(events) == n and conn.buffered:
                conn.next_event()  # raises for the bytes after the replies owed
        except RemoteProtocolError:
            if len(events) < n:
                raise

    def _write_reading(
        self, view: memoryview, events: list[Event], n: int, deadline: float | None
    ) -> None:
        """Write ``view`` in slices on a non-blocking socket, reading replies that
        arrived in between; wait (until ``deadline``) only when neither can proceed."""
        sock = self._sock
        assert sock is not None
        total = len(view)
        off = 0
        sock.settimeout(0)
        try:
            while off < total:
                try:
                    off += sock.send(view[off : off + _SLICE])
                except _WOULD_BLOCK:
                    _wait_io(sock, deadline)
                self._read_ready(events, n)
        finally:
            sock.settimeout(self.timeout)

    def _read_ready(self, events: list[Event], n: int) -> None:
        """Read what has arrived, if anything, on the non-blocking socket (a TLS
        socket's decrypted bytes too: ``poll`` cannot see those)."""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except _WOULD_BLOCK:
                return
            self._deliver(data, events, n)
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    # -- breaking and closing --------------------------------------------------------

    def _unusable(self) -> BrokenConnectionError:
        return BrokenConnectionError(f"the connection is unusable: {self._broken}")

    def _fail(self, reason: str) -> None:
        # Synchronous and non-blocking: state first, then close the socket.
        first = self._broken is None
        if first:
            self._broken = reason
        self._conn.send_failed()
        if self._sock is not None:
            self._sock.close()
        if first and self._reconnect:
            log.warning("connection to %s broke: %s", self.description, reason)

    def _interrupted(self, exc: BaseException) -> BaseException:
        """Give up on the connection after ``exc``; return what to raise: a
        socket error other than a timeout as :class:`BrokenConnectionError`,
        anything else as itself."""
        if isinstance(exc, (BrokenConnectionError, RemoteProtocolError)):
            self._fail(str(exc))
        elif isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            self._fail(f"socket error: {exc!r}")
            return BrokenConnectionError(f"the connection failed: {exc}")
        else:
            self._fail(f"an exchange was interrupted by {type(exc).__name__}")
        return exc

    @property
    def closed(self) -> bool:
        return self._broken is not None

    def close(self) -> None:
        """Close the connection; idempotent, and never blocks for long.

        A healthy, idle connection is sent ``quit`` first (best effort). From
        another thread, aborts the call in progress (it then raises
        :class:`BrokenConnectionError`)."""
        self._closed = True
        lock = self._lock
        acquired = lock.acquire(blocking=False)
        if acquired and self._owner is not None:
            # This thread's own call is under way (close() from a signal handler).
            lock.release()
            acquired = False
        if not acquired:
            # A call is in progress: shut the socket down under it; it closes
            # the socket on its way out. Wait a moment for that, unless this
            # thread is the caller (a signal handler), which cannot wait.
            if self._broken is None:
                self._broken = "the client was closed"
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if self._owner != threading.get_ident() and lock.acquire(timeout=_QUIT_TIMEOUT):
                try:
                    self._fail("the client was closed")
                finally:
                    lock.release()
            return
        try:
            if self._broken is not None:
                if self._sock is not None:
                    self._sock.close()
                return
            self._broken = "the client was closed"
            conn = self._conn
            sock = self._sock
            assert sock is not None
            # Not broken, and no call in progress: every reply was read.
            with contextlib.suppress(OSError, Error):
                timeout = self.timeout
                sock.settimeout(_QUIT_TIMEOUT if timeout is None else min(timeout, _QUIT_TIMEOUT))
                sock.sendall(conn.send(Quit()))
            sock.close()
        finally:
            lock.release()


def _describe(address: Resolved | socket.socket) -> str:
    if isinstance(address, socket.socket):
        try:
            peer = address.getpeername()
        except OSError:
            return "?"
        return peer if isinstance(peer, str) else f"{peer[0]}:{peer[1]}"
    return describe(address)


def _wait_io(sock: socket.socket, deadline: float | None) -> None:
    """Wait until ``sock`` is readable or writable (errors and hang-ups count as
    readable: the read after reports them). Raises ``TimeoutError`` at ``deadline``."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT)
    if not poller.poll(None if timeout is None else timeout * 1000):
        raise TimeoutError("timed out")


def _failure(exc: BaseException) -> str:
    """The outcome reported for a command whose reply did not come."""
    if isinstance(exc, (BrokenConnectionError, RemoteProtocolError)) or (
        isinstance(exc, OSError) and not isinstance(exc, TimeoutError)
    ):
        return "BROKEN"
    return "INTERRUPTED"


class MeasuredTransport(Transport):
    """A transport that reports every command it sends to ``metrics``
    (:meth:`beanproto.metrics.MetricsHooks.command`): the wire name, the reply's
    first word (or ``BROKEN``, ``INTERRUPTED``), the seconds from the
    exchange's write to that reply (``time.perf_counter``), and the server."""

    __slots__ = ("_metrics", "_replies", "_server")

    def __init__(self, address: Address | None, *, metrics: MetricsHooks, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self._metrics = metrics
        self._server = "socket" if isinstance(address, socket.socket) else self.description
        self._replies: list[tuple[str, float]] = []  # the current exchange's: word, time

    def _run(self, commands: Sequence[Command], wait: float | None) -> list[Event]:
        replies: list[tuple[str, float]] = []
        self._replies = replies
        start = time.perf_counter()
        try:
            events = super()._run(commands, wait)
        except InvalidArgument:
            raise  # refused by the core before anything was written
        except BaseException as exc:
            self._report(commands, replies, start, _failure(exc))
            raise
        self._report(commands, replies, start, "")
        return events

    def _report(
        self,
        commands: Sequence[Command],
        replies: list[tuple[str, float]],
        start: float,
        failure: str,
    ) -> None:
        hook = self._metrics.command
        server = self._server
        end = time.perf_counter() if len(replies) < len(commands) else 0.0
        for i, command in enumerate(commands):
            word, at = replies[i] if i < len(replies) else (failure, end)
            hook(command.verb, word, at - start, server)

    def _deliver(self, data: bytes, events: list[Event], n: int) -> None:
        before = len(events)
        try:
            super()._deliver(data, events, n)
        finally:
            if len(events) > before:
                now = time.perf_counter()
                self._replies.extend([(reply_word(e), now) for e in events[before:]])
