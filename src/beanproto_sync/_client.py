"""The blocking client: a thin driver of :class:`beanproto.Connection` over ``socket``.

Theory of operation (httpcore over h11): every method builds a command, and an
exchange loop writes its bytes, records it in the core, and reads until the core
has produced one event per command. The method then turns the event into its
return value or raises the refusal (``error_for_event``).

Three loops share that shape. ``_request`` does one command: ``sendall`` of its
bytes, then the core's record of it (``Connection._sent``) while the server
answers, then ``recv`` until the reply is complete. ``put`` does the same for a
put, building its command after the write and reading the usual reply straight
to the job's id: it is the call producers make most, and a sequential round
trip's wall time includes the client's work between a reply and the next write.
``_exchange`` does a pipelined batch
(``put_many``, ``delete_many``, the ``use``/``watch`` sent at connect time): the
socket is made non-blocking while the batch is written in slices, and whatever
replies have arrived are read between slices, so the server (which stops reading
when it cannot write) never deadlocks against us on TCP back-pressure.

Anything that interrupts an exchange (a socket timeout, ``KeyboardInterrupt``, an
I/O error, a protocol error) leaves bytes half written or a reply half read, so
the client gives up on the connection: it tells the core (``send_failed``),
closes the socket (which makes the server return any job reserved in flight to
the ready queue), and every later call raises :class:`BrokenConnectionError`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, cast, overload

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    MAX_LINE_SIZE,
    NEED_DATA,
    REPLIES,
    BrokenConnectionError,
    Bury,
    Command,
    Connection,
    Delete,
    Deleted,
    Error,
    Event,
    Ignore,
    Inserted,
    InvalidArgument,
    Job,
    JobStats,
    Kick,
    Kicked,
    KickJob,
    ListTubes,
    ListTubesWatched,
    ListTubeUsed,
    Paused,
    PauseTube,
    Peek,
    PeekBuried,
    PeekDelayed,
    PeekReady,
    Put,
    Quit,
    Release,
    Released,
    RemoteProtocolError,
    ReserveJob,
    ReserveWithTimeout,
    ServerStats,
    State,
    Stats,
    StatsJob,
    StatsTube,
    Touch,
    Touched,
    TubeList,
    TubeStats,
    Use,
    Using,
    Watch,
    Watching,
    error_for_event,
)
from beanproto import Buried as BuriedEvent
from beanproto._commands import checked_put, put_wire
from beanproto._support import (
    batch_outcomes,
    job_from_event,
    job_id,
    put_body,
    reserve_command,
    set_tcp_options,
    setup_commands,
)

__all__ = ["Address", "Client", "ConcurrentUseError"]

BodyT = TypeVar("BodyT", bytes, str)

#: What :class:`Client` connects to: ``(host, port)``, a Unix socket path, or a
#: connected socket (which the client then owns).
Address = tuple[str, int] | str | socket.socket

#: Bytes read per ``recv``.
_RECV_SIZE: Final = 65536
#: Bytes read per ``recv`` of a reply that is one line (at most ``MAX_LINE_SIZE``):
#: CPython allocates a buffer this small from its own pool, which saves about a
#: tenth of a microsecond per call on the 64 KiB one (measured with recv on a
#: socketpair). A longer reply is read on with ``_RECV_SIZE``.
_LINE_RECV_SIZE: Final = 256
assert _LINE_RECV_SIZE >= MAX_LINE_SIZE  # a whole line, and so any byte after it, fits
#: The commands whose reply may carry a body; the others are answered by one line.
_BODY_REPLIES: Final = frozenset(
    kind for kind, row in REPLIES.items() if any(spec[1] for spec in row.values())
)
#: Bytes written per ``send`` of a pipelined batch, with replies read in between.
_SLICE: Final = 256 * 1024
#: How long ``close()`` may spend writing ``quit``.
_QUIT_TIMEOUT: Final = 1.0

_SAME: Final[Any] = object()  # "keep the socket timeout" for _request's wait


class ConcurrentUseError(Error, RuntimeError):
    """Two threads used one :class:`Client` at the same time.

    A client is not thread-safe: give each thread its own. The call that
    detected the overlap sent nothing; the other thread's call is unaffected.
    """


class Client(Generic[BodyT]):
    """A blocking client for one beanstalkd connection.

    ``address`` is ``(host, port)``, a Unix socket path, or an already connected
    ``socket.socket`` (the client takes it over and closes it). With
    ``encoding=None`` job bodies are ``bytes`` in and out (``Client[bytes]``);
    with an encoding, :meth:`put` takes ``str`` (or ``bytes``) and jobs carry
    ``str`` bodies (``Client[str]``). ``use`` and ``watch`` (a tube or an
    iterable of tubes; without ``"default"`` in it, ``default`` is ignored) are
    sent at connect time in one write.

    ``max_body_size`` bounds the body of a reply (a job or a stats payload)
    that the client accepts; a server announcing more is refused at once with
    :class:`beanproto.RemoteProtocolError` (default: 1 GiB, beanstalkd's own
    limit on ``max-job-size``).

    ``timeout`` (seconds, ``None`` for none) bounds every send and every reply
    except the wait of a reserve: ``reserve(timeout=t)`` may take ``t`` plus
    ``timeout``, and ``reserve()`` waits for a job however long it takes (TCP
    keepalive notices a dead server within about a minute).

    Errors: the server's refusals raise :class:`beanproto.CommandError`
    subclasses and leave the connection usable. An interrupted exchange (socket
    timeout: ``TimeoutError``; ``KeyboardInterrupt``; any other exception while
    bytes are in flight) closes the connection and the exception propagates
    unchanged, except that the server closing the connection or another socket
    error (``OSError``) is raised as :class:`beanproto.BrokenConnectionError`
    (with the ``OSError`` as ``__cause__``), and a server that breaks the
    protocol raises :class:`beanproto.RemoteProtocolError`. After that, every
    call raises :class:`beanproto.BrokenConnectionError`; a job reserved in
    flight goes back to the ready queue on the server, priority unchanged.

    Threads: a client is not thread-safe; use one per thread. A call made while
    another thread's call is in progress raises :class:`ConcurrentUseError`
    instead of mixing bytes on the wire. :meth:`close` alone may be called from
    another thread, e.g. to abort a waiting :meth:`reserve`.
    """

    __slots__ = ("_address", "_broken", "_conn", "_encoding", "_idle", "_sock", "_timeout")

    @overload
    def __init__(
        self: Client[bytes],
        address: Address,
        *,
        encoding: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[str],
        address: Address,
        *,
        encoding: str,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None: ...

    def __init__(
        self,
        address: Address,
        *,
        encoding: str | None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if encoding is not None:
            "".encode(encoding)  # LookupError now for an unknown encoding
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout must be a positive number of seconds, or None")
        setup = setup_commands(use, watch)  # built first: invalid names raise before connecting
        self._encoding = encoding
        self._timeout = timeout
        self._conn = Connection(max_body_size=max_body_size)
        # The right to use the connection: one token, in this list while no call
        # is in progress. A call takes it with pop() (IndexError: another
        # thread's call is in progress) and gives it back with append(); both are
        # atomic. Not a Lock: acquire(False) + release() cost four times as much,
        # on every call, and only close() ever waits for the token (_take).
        self._idle: list[None] = [None]
        self._broken: str | None = None
        self._address = "?"
        if isinstance(address, socket.socket):
            sock = address
            try:
                peer = sock.getpeername()
                self._address = peer if isinstance(peer, str) else f"{peer[0]}:{peer[1]}"
            except OSError:
                pass
        elif isinstance(address, str):
            self._address = address
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        elif isinstance(address, tuple):
            host, port = address
            self._address = f"{host}:{port}"
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            raise TypeError(
                "address must be (host, port), a Unix socket path or a connected socket, "
                f"not {type(address).__name__}"
            )
        self._sock = sock
        try:
            sock.settimeout(timeout)
            set_tcp_options(sock)
            if setup:
                batch_outcomes(setup, self._exchange(setup), None)
        except BaseException:
            self._fail("connecting failed")
            raise

    # -- the exchange loops --------------------------------------------------------

    def _enter(self) -> None:
        if not _take(self._idle, 0):
            raise self._busy()
        if self._broken is not None:
            self._idle.append(None)
            raise self._unusable()

    @staticmethod
    def _busy() -> ConcurrentUseError:
        return ConcurrentUseError(
            "this Client is in use by another thread; a Client is not thread-safe "
            "(give each thread its own)"
        )

    def _unusable(self) -> BrokenConnectionError:
        return BrokenConnectionError(f"the connection is unusable: {self._broken}")

    def _fail(self, reason: str) -> None:
        # Synchronous and non-blocking: state first, then close the socket.
        if self._broken is None:
            self._broken = reason
        self._conn.send_failed()
        self._sock.close()

    def _interrupted(self, exc: BaseException) -> BaseException:
        """Give up on the connection; return the exception to raise instead, if any."""
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            self._fail(f"socket error: {exc!r}")
            return BrokenConnectionError(f"the connection failed: {exc}")
        self._fail(f"an exchange was interrupted by {type(exc).__name__}")
        return exc

    def _request(
        self,
        command: Command,
        wait: float | None = _SAME,
    ) -> Event:
        """Send one command and return its reply. ``wait``: the socket timeout
        while a blocking reserve is answered (``_SAME`` keeps ``timeout``).
        (:meth:`put` has a round trip of its own.)"""
        idle = self._idle  # _enter(), inline: this is the path of every call
        try:
            idle.pop()
        except IndexError:
            raise self._busy() from None
        if self._broken is not None:
            idle.append(None)
            raise self._unusable()
        try:
            sock = self._sock
            conn = self._conn
            # Written first and recorded while the server answers: what send()
            # would do, in the order that keeps its bookkeeping out of the round
            # trip's critical path (see put). The core is open whenever _broken
            # is None (every way it stops being open sets _broken), so _sent
            # does not refuse what went out.
            sock.sendall(command._encode())
            conn._sent(command)
            # Also meanwhile: whether the core can read the reply in one step,
            # and how much to read.
            lone = conn._lone()
            size = _RECV_SIZE if type(command) in _BODY_REPLIES else _LINE_RECV_SIZE
            retimed = wait is not _SAME
            deadline = None
            if retimed or self._timeout is not None:
                limit = self._timeout
                if retimed:
                    sock.settimeout(wait)
                    limit = wait
                # The timeout bounds the whole reply, not each recv: a server
                # that trickles bytes cannot stretch a call past it.
                deadline = None if limit is None else time.monotonic() + limit
            data = sock.recv(size)
            if lone:
                # The common case: one recv brought the whole reply, and the core
                # reads it in one step (which also proves nothing follows it).
                event = conn._read_lone(data)
                if event is not None:
                    if retimed:
                        sock.settimeout(self._timeout)
                    return event
            return self._reply(data, deadline, retimed)
        except BaseException as exc:
            replacement = self._interrupted(exc)
            if replacement is exc:
                raise
            raise replacement from exc
        finally:
            idle.append(None)

    def _reply(self, data: bytes, deadline: float | None, retimed: bool) -> Event:
        """The rest of :meth:`_request`: read from ``data`` (the first ``recv``) on
        until the reply is complete, by ``deadline``; then put the socket timeout
        back if ``retimed``."""
        conn = self._conn
        sock = self._sock
        while True:
            if not data:
                raise _eof()
            conn.receive_data(data)
            event = conn.next_event()
            if event is not NEED_DATA:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                retimed = True
            data = sock.recv(_RECV_SIZE)
        if retimed:
            sock.settimeout(self._timeout)
        # Bytes beyond the one reply owed mean the server spoke unasked, and a
        # later call could take them for its reply. This reply is good; the
        # connection is not. (With nothing owed, the core refuses any byte.)
        try:
            extra = conn.next_event()
        except RemoteProtocolError:
            extra = None
        if extra is not NEED_DATA:
            self._fail("the server sent bytes nobody asked for")
        return event

    def _exchange(self, commands: Sequence[Command]) -> list[Event]:
        """Send ``commands`` pipelined and return their replies, one per command."""
        self._enter()
        try:
            conn = self._conn
            send = conn.send
            data = b"".join([send(c) for c in commands])
            events: list[Event] = []
            self._write_reading(memoryview(data), events)
            n = len(commands)
            while len(events) < n:
                self._read(events, True)
            return events
        except BaseException as exc:
            replacement = self._interrupted(exc)
            if replacement is exc:
                raise
            raise replacement from exc
        finally:
            self._idle.append(None)

    def _read(self, events: list[Event], block: bool) -> None:
        """One ``recv``, then every event the core can build. Non-blocking reads
        return quietly when nothing is there."""
        try:
            data = self._sock.recv(_SLICE)
        except BlockingIOError:
            if block:  # pragma: no cover - a blocking socket does not raise it
                raise
            return
        if not data:
            raise _eof()
        conn = self._conn
        conn.receive_data(data)
        next_event = conn.next_event
        append = events.append
        while True:
            event = next_event()
            if event is NEED_DATA:
                return
            append(event)

    def _write_reading(self, view: memoryview, events: list[Event]) -> None:
        """Write ``view`` in slices on a non-blocking socket, reading replies that
        arrived in between; wait (up to ``timeout``) only when neither can proceed."""
        sock = self._sock
        total = len(view)
        off = 0
        sock.settimeout(0)
        try:
            while off < total:
                try:
                    off += sock.send(view[off : off + _SLICE])
                except BlockingIOError:
                    if _wait_io(sock, self._timeout):
                        self._read(events, False)
                    continue
                self._read(events, False)
        finally:
            sock.settimeout(self._timeout)

    # -- producing -------------------------------------------------------------------

    def put(
        self,
        body: BodyT | bytes,
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
    ) -> int:
        """Insert a job into the used tube and return its id.

        Raises :class:`beanproto.BuriedError` (with the new job's ``id``) if the
        server buried it for lack of memory, :class:`beanproto.JobTooBigError`,
        :class:`beanproto.DrainingError`. Without an encoding a ``str`` body
        raises ``TypeError``.
        """
        if type(body) is not bytes:
            body = put_body(body, self._encoding, priority, delay, ttr)
        data = put_wire(body, priority, delay, ttr)  # raises before anything is sent
        # _request's round trip, for the call producers make most. A sequential
        # round trip's wall time is the server's time plus the client's between
        # a reply and the next write: so the put is written first and its Put
        # built and recorded while the server answers, and the usual reply is
        # read straight to the job's id, with no event built.
        idle = self._idle
        try:
            idle.pop()
        except IndexError:
            raise self._busy() from None
        if self._broken is not None:
            idle.append(None)
            raise self._unusable()
        try:
            sock = self._sock
            conn = self._conn
            sock.sendall(data)
            conn._sent(checked_put(body, priority, delay, ttr))  # never refuses: see _request
            lone = conn._lone()
            timeout = self._timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            data = sock.recv(_LINE_RECV_SIZE)
            if lone:
                new_id = conn._read_inserted(data)
                if new_id is not None:
                    return new_id
            event = self._reply(data, deadline, False)
        except BaseException as exc:
            replacement = self._interrupted(exc)
            if replacement is exc:
                raise
            raise replacement from exc
        finally:
            idle.append(None)
        if type(event) is Inserted:
            return event.id
        raise error_for_event(event)

    def put_many(
        self,
        bodies: Iterable[BodyT | bytes],
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
    ) -> list[int]:
        """Insert many jobs in one pipelined exchange; return their ids in order.

        Every command is sent and every reply read, so the connection stays in
        sync. If any put was refused, the first refusal is raised after all
        replies were read, with ``exc.outcomes``: one entry per body, the job id
        (``int``) or the :class:`beanproto.CommandError` for that body.
        """
        encoding = self._encoding
        if encoding is not None:
            commands = [
                Put(b.encode(encoding) if type(b) is str else b, priority, delay, ttr)  # type: ignore[arg-type]
                for b in bodies
            ]
        else:
            commands = [Put(b, priority, delay, ttr) for b in bodies]  # type: ignore[arg-type]
        if not commands:
            return []
        events = self._exchange(commands)
        ids = [e.id for e in events if type(e) is Inserted]
        if len(ids) == len(events):
            return ids
        return cast(list[int], batch_outcomes(commands, events, Inserted))

    def use(self, tube: str) -> str:
        """Put later jobs into ``tube``; return its name."""
        event = self._request(Use(tube))
        if type(event) is Using:
            return event.tube
        raise error_for_event(event)

    def using(self) -> str:
        """The tube :meth:`put` goes to (asks the server)."""
        event = self._request(ListTubeUsed())
        if type(event) is Using:
            return event.tube
        raise error_for_event(event)

    # -- consuming -------------------------------------------------------------------

    def reserve(self, timeout: float | None = None) -> Job[BodyT]:
        """Reserve a job from a watched tube.

        ``None`` waits however long it takes; a number of seconds (a float is
        rounded up) waits at most that long, ``0`` only polls. Raises
        :class:`beanproto.TimedOutError` when no job came in time and
        :class:`beanproto.DeadlineSoonError` when a job this client holds is
        about to reach its TTR. While a reserve waits the socket timeout is
        ``None`` (plain reserve) or ``timeout`` plus the client's timeout.
        """
        command = reserve_command(timeout)
        wait: float | None = _SAME
        if self._timeout is not None:
            if not isinstance(command, ReserveWithTimeout):
                wait = None  # a plain reserve waits however long it takes
            elif command.timeout:
                wait = command.timeout + self._timeout
        return job_from_event(self._request(command, wait), self._encoding)

    def reserve_job(self, id: int) -> Job[BodyT]:
        """Reserve job ``id`` whatever its tube or state (beanstalkd 1.12+)."""
        return job_from_event(self._request(ReserveJob(id)), self._encoding)

    def delete(self, job_or_id: Job[Any] | int) -> None:
        """Delete a job (a :class:`beanproto.Job` or its id)."""
        event = self._request(Delete(job_id(job_or_id)))
        if type(event) is not Deleted:
            raise error_for_event(event)

    def delete_many(self, jobs_or_ids: Iterable[Job[Any] | int]) -> None:
        """Delete many jobs in one pipelined exchange.

        Every reply is read; if any delete was refused, the first refusal is
        raised with ``exc.outcomes``: one entry per job, its id (``int``) when it
        was deleted, or the :class:`beanproto.CommandError`.
        """
        commands = [Delete(job_id(j)) for j in jobs_or_ids]
        if not commands:
            return
        events = self._exchange(commands)
        for event in events:
            if type(event) is not Deleted:
                batch_outcomes(commands, events, Deleted)

    def release(
        self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a reserved job back into the ready queue (or delayed, by ``delay`` s)."""
        event = self._request(Release(job_id(job_or_id), priority, delay))
        if type(event) is not Released:
            raise error_for_event(event)

    def bury(self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a reserved job aside until it is kicked."""
        event = self._request(Bury(job_id(job_or_id), priority))
        if type(event) is not BuriedEvent:
            raise error_for_event(event)

    def touch(self, job_or_id: Job[Any] | int) -> None:
        """Ask for more time: restart the TTR of a reserved job."""
        event = self._request(Touch(job_id(job_or_id)))
        if type(event) is not Touched:
            raise error_for_event(event)

    def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        event = self._request(Watch(tube))
        if type(event) is Watching:
            return event.count
        raise error_for_event(event)

    def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube.
        """
        event = self._request(Ignore(tube))
        if type(event) is Watching:
            return event.count
        raise error_for_event(event)

    def watching(self) -> list[str]:
        """The watched tubes (asks the server)."""
        event = self._request(ListTubesWatched())
        if type(event) is TubeList:
            return list(event.tubes)
        raise error_for_event(event)

    # -- inspecting ------------------------------------------------------------------

    def peek(self, id: int) -> Job[BodyT]:
        """Job ``id``, in any state. Raises :class:`beanproto.NotFoundError`."""
        return job_from_event(self._request(Peek(id)), self._encoding)

    def peek_ready(self) -> Job[BodyT]:
        """The next ready job of the used tube."""
        return job_from_event(self._request(PeekReady()), self._encoding)

    def peek_delayed(self) -> Job[BodyT]:
        """The delayed job of the used tube that becomes ready first."""
        return job_from_event(self._request(PeekDelayed()), self._encoding)

    def peek_buried(self) -> Job[BodyT]:
        """The next buried job of the used tube."""
        return job_from_event(self._request(PeekBuried()), self._encoding)

    def kick(self, bound: int) -> int:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube; return
        how many were kicked."""
        event = self._request(Kick(bound))
        if type(event) is Kicked and event.count is not None:
            return event.count
        raise error_for_event(event)

    def kick_job(self, job_or_id: Job[Any] | int) -> None:
        """Kick one buried or delayed job into the ready queue."""
        event = self._request(KickJob(job_id(job_or_id)))
        if type(event) is not Kicked:
            raise error_for_event(event)

    def stats(self) -> ServerStats:
        """The server's statistics."""
        event = self._request(Stats())
        if type(event) is ServerStats:
            return event
        raise error_for_event(event)

    def stats_job(self, job_or_id: Job[Any] | int) -> JobStats:
        """A job's statistics."""
        event = self._request(StatsJob(job_id(job_or_id)))
        if type(event) is JobStats:
            return event
        raise error_for_event(event)

    def stats_tube(self, tube: str) -> TubeStats:
        """A tube's statistics. Raises :class:`beanproto.NotFoundError` for a tube
        that does not exist."""
        event = self._request(StatsTube(tube))
        if type(event) is TubeStats:
            return event
        raise error_for_event(event)

    def tubes(self) -> list[str]:
        """Every existing tube."""
        event = self._request(ListTubes())
        if type(event) is TubeList:
            return list(event.tubes)
        raise error_for_event(event)

    def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        event = self._request(PauseTube(tube, delay))
        if type(event) is not Paused:
            raise error_for_event(event)

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Idempotent, and never blocks for long.

        A healthy, idle connection is sent ``quit`` first (best effort, at most
        about a second). May be called from another thread to abort a call in
        progress (e.g. a waiting :meth:`reserve`), which then raises
        :class:`beanproto.BrokenConnectionError`.
        """
        idle = self._idle
        if not _take(idle, 0):
            # Another thread is mid-exchange: shut the socket down under it, and
            # give it a moment to notice (it closes the socket on its way out).
            if self._broken is None:
                self._broken = "the client was closed"
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            if _take(idle, _QUIT_TIMEOUT):
                try:
                    self._conn.send_failed()
                    self._sock.close()
                finally:
                    idle.append(None)
            return
        try:
            if self._broken is not None:
                return
            self._broken = "the client was closed"
            conn = self._conn
            sock = self._sock
            if conn.state is State.OPEN and not conn.pending:
                try:
                    timeout = self._timeout
                    sock.settimeout(
                        _QUIT_TIMEOUT if timeout is None else min(timeout, _QUIT_TIMEOUT)
                    )
                    sock.sendall(conn.send(Quit()))
                except (OSError, Error):
                    pass
            sock.close()
        finally:
            idle.append(None)

    @property
    def closed(self) -> bool:
        """True once the client was closed or broken; every call then raises
        :class:`beanproto.BrokenConnectionError`."""
        return self._broken is not None

    def __enter__(self) -> Client[BodyT]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._broken is None else "closed"
        return f"<beanproto_sync.Client {self._address} {state}>"


def _eof() -> BrokenConnectionError:
    return BrokenConnectionError("the server closed the connection")


def _take(idle: list[None], timeout: float) -> bool:
    """Take the token from ``idle`` (see ``Client.__init__``), waiting up to
    ``timeout`` seconds for a call in progress to give it back. True if taken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            idle.pop()
        except IndexError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)  # only close() waits, for a call it aborted: polling is fine
        else:
            return True


def _wait_io(sock: socket.socket, timeout: float | None) -> bool:
    """Wait until ``sock`` is readable or writable; True if readable.
    Raises ``TimeoutError`` after ``timeout`` seconds."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        ready = poller.poll(None if timeout is None else timeout * 1000)
        if not ready:
            raise TimeoutError("timed out")
        mask = ready[0][1]
        # Errors and hang-ups show as readable, so the read reports them.
        return bool(mask & (select.POLLIN | select.POLLERR | select.POLLHUP))
    readable, writable, _ = select.select([sock], [sock], [], timeout)  # pragma: no cover
    if not readable and not writable:  # pragma: no cover
        raise TimeoutError("timed out")
    return bool(readable)  # pragma: no cover
