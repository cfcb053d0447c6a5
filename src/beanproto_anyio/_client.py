"""The async client: a thin driver of :class:`beanproto.Connection` over an anyio stream.

Theory of operation: one :class:`Client` may be shared by many tasks, so a call
never owns the connection. Each call does three things:

1. *Submit* (synchronous, no ``await``): ``conn.send(command)`` and append the
   bytes to the output buffer and a ``_Call`` record to the FIFO of calls
   awaiting replies. Because nothing awaits between the two appends, the FIFO is
   always in wire order, without a send lock.
2. *Flush*: if no task is writing, this one becomes the writer and writes
   everything buffered (its own bytes and whatever other tasks appended
   meanwhile) in as few ``send`` calls as possible. Otherwise the active writer
   will write our bytes too. Commands from different tasks thus share writes
   and round trips: automatic pipelining.
3. *Wait*: until its ``_Call`` has an event, the task reads if no other task is
   reading, else sleeps on its own ``anyio.Event``. The reader parses every
   reply in what it read, hands each one to the oldest ``_Call`` in the FIFO
   and wakes its task, all at once. When a reader's own reply has come it
   hands the reader's role to the longest-sleeping task that still waits (a
   lock would wake the waiters one scheduler pass at a time instead).

A call that finds the connection idle (no call in flight, nobody writing or
reading: always so for a client used by one task at a time) is the *lone
caller*: it writes its bytes without buffering them and reads its reply in its
own coroutine, because the coroutine layers of steps 2 and 3 were a third of
what this module adds to a round trip. It sets the same flags as the writer and
the reader, so tasks arriving meanwhile queue behind it as above, and it shares
the helpers that write their bytes, hand out their replies and pass the reading
on; anything else (a reply still incomplete, a failure) continues in step 3.

Batches (``put_many``, ``delete_many``, the setup at connect time) write from a
child task while the caller reads, so TCP back-pressure cannot deadlock them
(the server stops reading while it cannot write its replies).

Cancellation (and ``KeyboardInterrupt``): state changes are synchronous and come
first; the only ``await`` in cleanup is ``anyio.aclose_forcefully``, which does
not wait. What happens depends on where the call was:

* before its bytes were buffered: nothing was sent, the client is unaffected;
* while writing (bytes may be half written): the connection is broken;
* after writing, waiting for a reply to a command that does not block: the call
  is *abandoned*; the reader drops its reply when it comes and the client stays
  in sync. If that reply is a job reserved for the abandoned call
  (``reserve(timeout=0)``, ``reserve_job``), the reader closes the connection
  instead, so the server returns the job to the ready queue;
* waiting for a blocking reserve (``reserve()``, ``reserve(timeout>0)``): the
  server reads nothing else until it answers and beanstalkd has no cancel
  command, so the connection is closed at once (the server returns any job it
  reserved for us, priority unchanged) and later calls raise
  :class:`beanproto.BrokenConnectionError`.

Breaking the connection fails every call still waiting with
``BrokenConnectionError``; a job reserved in flight goes back to the ready
queue on the server when the stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, cast, overload

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    NEED_DATA,
    BrokenConnectionError,
    Bury,
    Command,
    Connection,
    Delete,
    Deleted,
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
    Reserved,
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

__all__ = ["Address", "Client", "connect"]

BodyT = TypeVar("BodyT", bytes, str)

Address = tuple[str, int] | str
"""What :func:`connect` connects to: ``(host, port)`` or a Unix socket path."""

#: Bytes asked for per ``receive``.
_RECV_SIZE: Final = 65536
#: How long ``aclose()`` may spend on a graceful ``quit`` and stream close.
_QUIT_TIMEOUT: Final = 1.0
#: How long after its deadline (or its cancellation) a writer keeps writing bytes
#: other tasks buffered before it gives up (and breaks the connection).
_WRITE_GRACE: Final = 0.5
#: What a failing stream raises.
_STREAM_ERRORS: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_READ_ERRORS: Final = (anyio.EndOfStream, *_STREAM_ERRORS)

# What a _Call's reply means for the job it might carry.
_PLAIN: Final = 0  # no job can come back
_RESERVE: Final = 1  # reserve-job, reserve-with-timeout 0: a job may come back at once
_BLOCKING: Final = 2  # reserve, reserve-with-timeout > 0: the server waits


class _Call:
    """One command awaiting its reply."""

    __slots__ = ("abandoned", "error", "event", "kind", "wakeup")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.event: Event | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.wakeup: anyio.Event | None = None  # set while its task sleeps


def _set_socket_options(stream: anyio.abc.ByteStream) -> None:
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if sock is not None:
        with contextlib.suppress(OSError):
            set_tcp_options(sock)


def _cancel_check() -> Callable[[], Awaitable[None]]:
    """The running backend's own ``checkpoint_if_cancelled``: every call makes one
    before it sends anything, and anyio's dispatching wrapper costs about a
    microsecond per call on trio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return anyio.lowlevel.checkpoint_if_cancelled
    try:
        # A real import, not sys.modules: another thread may be importing trio
        # right now, and the import waits until the module is complete.
        import trio

        trio.lowlevel.current_task()
    except (ImportError, RuntimeError):  # pragma: no cover - neither asyncio nor trio
        return anyio.lowlevel.checkpoint_if_cancelled
    return trio.lowlevel.checkpoint_if_cancelled


def _describe(stream: anyio.abc.ByteStream) -> str:
    try:
        peer = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    except Exception:  # pragma: no cover - a stream with odd extras
        peer = None
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    if isinstance(peer, str) and peer:
        return peer
    return type(stream).__name__


class Client(Generic[BodyT]):
    """An async client for one beanstalkd connection, over any anyio ``ByteStream``.

    Use it as ``async with Client(stream, ...) as client`` (or open the stream
    too with :func:`connect`); entering sends ``use``/``watch`` (a tube or an
    iterable of tubes; without ``"default"`` in it, ``default`` is ignored) in
    one write. The client owns the stream and closes it. With ``encoding=None``
    job bodies are ``bytes`` in and out (``Client[bytes]``); with an encoding,
    :meth:`put` takes ``str`` (or ``bytes``) and jobs carry ``str`` bodies
    (``Client[str]``). ``max_body_size`` bounds the body of a reply the client
    accepts (default 1 GiB); a server announcing more is refused at once with
    :class:`beanproto.RemoteProtocolError`. The methods are those of :class:`beanproto_sync.Client`,
    as coroutines; bound them with ``anyio.fail_after``/``move_on_after``.

    Sharing: many tasks may use one client at once. Their commands never
    interleave on the wire, each reply reaches its caller, and commands that do
    not block are pipelined (tasks share writes and round trips). A waiting
    :meth:`reserve` holds the connection: the server reads nothing else until it
    answers, so every other call queues behind it. Give producers and blocking
    consumers separate clients.

    Errors: refusals raise :class:`beanproto.CommandError` subclasses and leave
    the client usable. Stream errors and the server closing the connection raise
    :class:`beanproto.BrokenConnectionError` (the stream's exception as its
    ``__cause__``), a server that breaks the protocol raises
    :class:`beanproto.RemoteProtocolError`; afterwards every call raises
    ``BrokenConnectionError``.

    Cancellation: no reply ever reaches the wrong caller, and no job is lost.
    A call cancelled before it wrote leaves no trace. One cancelled while its
    bytes were being written breaks the connection. One cancelled while it waits
    for the reply to a non-blocking command leaves the client in sync: its reply
    is dropped when it arrives (a cancelled ``put`` may still have inserted its
    job). Exception: if that reply is a job (``reserve(timeout=0)``,
    ``reserve_job``), the connection is closed so that the server returns the job
    to the ready queue. A cancelled *waiting* reserve closes the connection at
    once (beanstalkd cannot cancel a reserve); the server returns any job it had
    reserved, priority unchanged, and later calls raise ``BrokenConnectionError``.
    ``KeyboardInterrupt`` during a call breaks the connection.
    """

    __slots__ = (
        "_address",
        "_broken",
        "_calls",
        "_checkpoint_if_cancelled",
        "_conn",
        "_encoding",
        "_out",
        "_reading",
        "_setup",
        "_sleepers",
        "_stream",
        "_writing",
    )

    @overload
    def __init__(
        self: Client[bytes],
        stream: anyio.abc.ByteStream,
        *,
        encoding: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[str],
        stream: anyio.abc.ByteStream,
        *,
        encoding: str,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None: ...

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        encoding: str | None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if encoding is not None:
            "".encode(encoding)  # LookupError now for an unknown encoding
        self._setup = setup_commands(use, watch)
        self._encoding = encoding
        self._stream = stream
        self._conn = Connection(max_body_size=max_body_size)
        # Resolved for the running event loop by __aenter__ (see _cancel_check).
        self._checkpoint_if_cancelled: Callable[[], Awaitable[None]] = (
            anyio.lowlevel.checkpoint_if_cancelled
        )
        self._calls: deque[_Call] = deque()
        self._out: list[bytes] = []
        self._writing = False
        self._reading = False
        self._sleepers: deque[_Call] = deque()  # calls whose tasks sleep, oldest first
        self._broken: str | None = None
        self._address = _describe(stream)

    # -- breaking ------------------------------------------------------------------

    def _break(self, reason: str, cause: BaseException | None = None) -> None:
        """Give up on the connection. Synchronous: every waiting call fails now;
        the caller then closes the stream (``_close_now``)."""
        if self._broken is None:
            self._broken = reason
        self._conn.send_failed()
        self._out.clear()
        calls = self._calls
        while calls:
            call = calls.popleft()
            if call.event is None and call.error is None:
                err = BrokenConnectionError(f"the connection is unusable: {reason}")
                err.__cause__ = cause
                call.error = err
                if call.wakeup is not None:
                    call.wakeup.set()
        self._sleepers.clear()

    async def _close_now(self) -> None:
        await anyio.aclose_forcefully(self._stream)

    def _unusable(self) -> BrokenConnectionError:
        return BrokenConnectionError(f"the connection is unusable: {self._broken}")

    # -- the exchange ----------------------------------------------------------------

    async def _request(
        self,
        command: Command | None,
        kind: int = _PLAIN,
        data: bytes = b"",
        body: bytes = b"",
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
    ) -> Event:
        """Send one command and return its reply. ``command=None`` sends a put:
        ``data``, from ``put_wire`` for ``body``, ``priority``, ``delay`` and
        ``ttr``, with its :class:`Put` built without checking them again."""
        await self._checkpoint_if_cancelled()
        if self._broken is not None:
            raise self._unusable()
        conn = self._conn
        if command is not None:
            data = conn.send(command)
        else:
            conn._sent(checked_put(body, priority, delay, ttr))
        call = _Call(kind)
        calls = self._calls
        calls.append(call)
        if self._writing or self._reading or len(calls) > 1:
            # Other calls are in flight: join them (pipelining).
            self._out.append(data)
            if not self._writing:
                await self._flush()
            return await self._wait(call)
        # The lone caller (see the module docstring): what _flush, _wait and
        # _read would do, inline. Tasks arriving meanwhile find _writing or
        # _reading set and queue up behind this call.
        stream = self._stream
        out = self._out
        self._writing = True
        try:
            await stream.send(data)
            if out:  # other tasks' bytes, buffered while this one wrote
                await self._write_late_bytes()
        except BaseException as exc:
            await self._write_failed(exc)
            if not isinstance(exc, _STREAM_ERRORS):
                raise
        finally:
            self._writing = False
        if self._reading or call.event is not None or call.error is not None:
            # Meanwhile another task became the reader, or the write failed.
            return await self._wait(call)
        self._reading = True
        try:
            try:
                received = await stream.receive(_RECV_SIZE)
            finally:
                self._reading = False
        except _READ_ERRORS as exc:
            self._read_failed(exc)
        except BaseException as exc:
            self._abandon(call, exc)
            if self._broken is not None:
                await self._close_now()
            raise
        else:
            self._deliver(received)
        if self._broken is not None:
            await self._close_now()
        event = call.event
        if event is None:
            return await self._wait(call)  # more of the reply to read, or a failure
        if self._sleepers:
            self._hand_off()  # tasks that arrived while this one read
        return event

    async def _flush(self) -> None:
        """Write everything buffered, unless another task is already writing it."""
        out = self._out
        if self._writing or not out:
            return
        self._writing = True
        try:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            await self._stream.send(data)
            if out:
                await self._write_late_bytes()
        except BaseException as exc:
            await self._write_failed(exc)
            if not isinstance(exc, _STREAM_ERRORS):
                raise
        finally:
            self._writing = False

    async def _write_late_bytes(self) -> None:
        """Write the bytes other tasks buffered while this one was writing.

        Those tasks count on this one to write them, so a cancellation of this
        task does not stop it at once: it goes on, shielded, until
        ``_WRITE_GRACE`` seconds after the task's deadline (at once if it is
        already cancelled), and then the connection is broken. A task without a
        deadline writes them unshielded, for as long as that takes (a batch may
        be megabytes); only an explicit cancel stops it, and breaks the
        connection as during its own write."""
        deadline = anyio.current_effective_deadline()
        if deadline == math.inf:
            await self._write_out()
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = max(deadline, anyio.current_time()) + _WRITE_GRACE
            await self._write_out()
        if scope.cancelled_caught:
            self._break("a write was cut short after its grace period")
            await self._close_now()

    async def _write_out(self) -> None:
        out = self._out
        send = self._stream.send
        while out and self._broken is None:
            data = b"".join(out)
            out.clear()
            await send(data)

    async def _write_failed(self, exc: BaseException) -> None:
        """A write raised ``exc``: its bytes may be half written, so the connection
        is broken. The caller re-raises all but stream errors, which the calls
        waiting for replies report as :class:`beanproto.BrokenConnectionError`."""
        if isinstance(exc, _STREAM_ERRORS):
            if self._broken is not None:
                return  # closed meanwhile (aclose from another task)
            self._break(f"writing failed: {exc!r}", exc)
        else:
            self._break(f"a write was interrupted by {type(exc).__name__}", exc)
        await self._close_now()

    async def _read(self) -> None:
        """One ``receive``; hand every complete reply in it to its call."""
        try:
            data = await self._stream.receive(_RECV_SIZE)
        except _READ_ERRORS as exc:
            self._read_failed(exc)
        else:
            self._deliver(data)
        if self._broken is not None:
            await self._close_now()

    def _read_failed(self, exc: Exception) -> None:
        """A read raised a stream error (or the end of the stream): the calls
        waiting fail; the caller closes the stream."""
        if isinstance(exc, anyio.EndOfStream):
            # The core would say the same of b"" with replies owed.
            self._break("the server closed the connection", exc)
        elif self._broken is None:
            self._break(f"reading failed: {exc!r}", exc)

    def _deliver(self, data: bytes) -> None:
        """Hand every complete reply (in ``data`` and what came before) to its call.

        A protocol error, or a job reserved for an abandoned call, breaks the
        connection; the caller closes the stream."""
        if not data:  # anyio streams raise EndOfStream instead, but a stream may not
            self._break("the server closed the connection")
            return
        if self._broken is not None:
            return  # broken while this task read (a writer failed): the calls know
        conn = self._conn
        calls = self._calls
        lost_job = False
        try:
            # The usual reply to a lone call, alone in data, is read in one step,
            # and then the core knows nothing follows it.
            usual = conn._read_lone(data) if conn._lone() else None
            if usual is None:
                conn.receive_data(data)
                event = conn.next_event()
            else:
                event = usual
            while event is not NEED_DATA:
                call = calls.popleft()
                if not call.abandoned:
                    call.event = event
                    if call.wakeup is not None:
                        call.wakeup.set()
                elif type(event) is Reserved:
                    lost_job = True
                event = conn.next_event() if usual is None else NEED_DATA
        except RemoteProtocolError as exc:
            if calls:
                call = calls.popleft()
                call.error = exc
                if call.wakeup is not None:
                    call.wakeup.set()
            self._break(f"the server broke the protocol: {exc}", exc)
            return
        if lost_job:
            # A job was reserved for a call that was cancelled: closing the
            # connection makes the server put it back into the ready queue.
            self._break("a job arrived for a cancelled reserve; the connection was closed")

    async def _wait(self, call: _Call) -> Event:
        """Read (one reader at a time) until ``call`` has its reply."""
        try:
            if call.event is None and call.error is None:
                while True:
                    if not self._reading:
                        self._reading = True
                        try:
                            await self._read()
                        finally:
                            self._reading = False
                    else:
                        wakeup = call.wakeup = anyio.Event()
                        self._sleepers.append(call)
                        await wakeup.wait()
                        call.wakeup = None
                    if call.event is not None or call.error is not None:
                        break
                if self._sleepers:
                    self._hand_off()
            else:
                await anyio.lowlevel.cancel_shielded_checkpoint()
        except BaseException as exc:
            self._abandon(call, exc)
            if self._broken is not None:
                await self._close_now()
            raise
        if call.event is not None:
            return call.event
        # A task cancelled while its call failed reports the cancellation.
        await self._checkpoint_if_cancelled()
        raise cast(BaseException, call.error)

    def _hand_off(self) -> None:
        """If nobody reads, wake the longest-sleeping task still waiting: it reads next."""
        if self._reading:
            return
        sleepers = self._sleepers
        while sleepers:
            call = sleepers.popleft()
            wakeup = call.wakeup
            if wakeup is not None and call.event is None and call.error is None:
                wakeup.set()
                return

    def _abandon(self, call: _Call, exc: BaseException) -> None:
        """The caller of ``call`` stops waiting (cancelled or interrupted); if
        nobody reads now, a waiting task takes over."""
        call.wakeup = None
        event = call.event
        if event is not None:
            if type(event) is Reserved:
                self._break("a job arrived for a cancelled reserve; the connection was closed")
        elif call.error is None and self._broken is None:
            if isinstance(exc, anyio.get_cancelled_exc_class()) and call.kind != _BLOCKING:
                call.abandoned = True  # the reader drops its reply
            elif call.kind == _BLOCKING:
                self._break("a waiting reserve was cancelled; the connection was closed", exc)
            else:
                self._break(f"a call was interrupted by {type(exc).__name__}", exc)
        self._hand_off()

    async def _exchange(self, commands: Sequence[Command]) -> list[Event]:
        """Send ``commands`` pipelined; return their replies, one per command.

        A child task writes while this task reads, so neither side's buffers
        can fill up and deadlock the batch."""
        await self._checkpoint_if_cancelled()
        if self._broken is not None:
            raise self._unusable()
        conn = self._conn
        out = self._out
        calls = self._calls
        batch = [_Call(_PLAIN) for _ in commands]
        data = b"".join([conn.send(c) for c in commands])
        out.append(data)
        calls.extend(batch)
        # The writer handles its own failures (it breaks the connection), so any
        # error comes from waiting here. It is raised after the task group, as
        # itself rather than inside an exception group; cancellation alone goes
        # through the group, which is how anyio and trio expect it to travel.
        failure: BaseException | None = None
        events: list[Event] = []
        async with anyio.create_task_group() as tg:
            if not self._writing:
                tg.start_soon(self._flush)
            try:
                for call in batch:
                    events.append(await self._wait(call))
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                failure = exc
                tg.cancel_scope.cancel()  # the connection is broken: stop writing
        if failure is not None:
            raise failure
        return events

    def _job(self, event: Event) -> Job[BodyT]:
        return cast(Job[BodyT], job_from_event(event, self._encoding))

    # -- producing -------------------------------------------------------------------

    async def put(
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
        raises ``TypeError``. Cancelled after writing, the job may exist (its
        reply is dropped) and the client stays in sync.
        """
        if type(body) is not bytes:
            body = put_body(body, self._encoding, priority, delay, ttr)
        data = put_wire(body, priority, delay, ttr)  # raises before anything is sent
        event = await self._request(None, _PLAIN, data, body, priority, delay, ttr)
        if type(event) is Inserted:
            return event.id
        raise error_for_event(event)

    async def put_many(
        self,
        bodies: Iterable[BodyT | bytes],
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
    ) -> list[int]:
        """Insert many jobs in one pipelined exchange; return their ids in order.

        Every command is sent and every reply read (reading while writing), so
        the connection stays in sync. If any put was refused, the first refusal
        is raised after all replies were read, with ``exc.outcomes``: one entry
        per body, the job id (``int``) or the :class:`beanproto.CommandError`.
        Cancelled while still writing, the client is broken; cancelled while
        reading replies, it stays in sync (some jobs were inserted).
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
            await anyio.lowlevel.checkpoint()
            return []
        events = await self._exchange(commands)
        ids = [e.id for e in events if type(e) is Inserted]
        if len(ids) == len(events):
            return ids
        return cast(list[int], batch_outcomes(commands, events, Inserted))

    async def use(self, tube: str) -> str:
        """Put later jobs into ``tube``; return its name."""
        event = await self._request(Use(tube))
        if type(event) is Using:
            return event.tube
        raise error_for_event(event)

    async def using(self) -> str:
        """The tube :meth:`put` goes to (asks the server)."""
        event = await self._request(ListTubeUsed())
        if type(event) is Using:
            return event.tube
        raise error_for_event(event)

    # -- consuming -------------------------------------------------------------------

    async def reserve(self, timeout: float | None = None) -> Job[BodyT]:
        """Reserve a job from a watched tube.

        ``None`` waits however long it takes; a number of seconds (a float is
        rounded up) waits at most that long, ``0`` only polls. Raises
        :class:`beanproto.TimedOutError` when no job came in time and
        :class:`beanproto.DeadlineSoonError` when a job this client holds is
        about to reach its TTR.

        While it waits, the reserve holds the connection: the server reads
        nothing else, so calls from other tasks queue behind it (use a separate
        client to produce). Cancelling a waiting reserve closes the connection
        (the server returns any job it reserved, priority unchanged) and later
        calls raise :class:`beanproto.BrokenConnectionError`. A cancelled
        ``reserve(timeout=0)`` keeps the client in sync unless a job came back
        for it, in which case the connection is closed for the same reason.
        """
        command = reserve_command(timeout)
        blocks = not isinstance(command, ReserveWithTimeout) or command.timeout > 0
        event = await self._request(command, _BLOCKING if blocks else _RESERVE)
        return self._job(event)

    async def reserve_job(self, id: int) -> Job[BodyT]:
        """Reserve job ``id`` whatever its tube or state (beanstalkd 1.12+).

        Cancelled after writing: if the job was reserved, the connection is
        closed so the server returns it; otherwise the client stays in sync.
        """
        return self._job(await self._request(ReserveJob(id), _RESERVE))

    async def delete(self, job_or_id: Job[Any] | int) -> None:
        """Delete a job (a :class:`beanproto.Job` or its id)."""
        event = await self._request(Delete(job_id(job_or_id)))
        if type(event) is not Deleted:
            raise error_for_event(event)

    async def delete_many(self, jobs_or_ids: Iterable[Job[Any] | int]) -> None:
        """Delete many jobs in one pipelined exchange.

        Every reply is read; if any delete was refused, the first refusal is
        raised with ``exc.outcomes``: one entry per job, its id (``int``) when it
        was deleted, or the :class:`beanproto.CommandError`. Cancellation as for
        :meth:`put_many`.
        """
        commands = [Delete(job_id(j)) for j in jobs_or_ids]
        if not commands:
            await anyio.lowlevel.checkpoint()
            return
        events = await self._exchange(commands)
        for event in events:
            if type(event) is not Deleted:
                batch_outcomes(commands, events, Deleted)

    async def release(
        self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a reserved job back into the ready queue (or delayed, by ``delay`` s)."""
        event = await self._request(Release(job_id(job_or_id), priority, delay))
        if type(event) is not Released:
            raise error_for_event(event)

    async def bury(self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a reserved job aside until it is kicked."""
        event = await self._request(Bury(job_id(job_or_id), priority))
        if type(event) is not BuriedEvent:
            raise error_for_event(event)

    async def touch(self, job_or_id: Job[Any] | int) -> None:
        """Ask for more time: restart the TTR of a reserved job."""
        event = await self._request(Touch(job_id(job_or_id)))
        if type(event) is not Touched:
            raise error_for_event(event)

    async def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        event = await self._request(Watch(tube))
        if type(event) is Watching:
            return event.count
        raise error_for_event(event)

    async def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube.
        """
        event = await self._request(Ignore(tube))
        if type(event) is Watching:
            return event.count
        raise error_for_event(event)

    async def watching(self) -> list[str]:
        """The watched tubes (asks the server)."""
        event = await self._request(ListTubesWatched())
        if type(event) is TubeList:
            return list(event.tubes)
        raise error_for_event(event)

    # -- inspecting ------------------------------------------------------------------

    async def peek(self, id: int) -> Job[BodyT]:
        """Job ``id``, in any state. Raises :class:`beanproto.NotFoundError`."""
        return self._job(await self._request(Peek(id)))

    async def peek_ready(self) -> Job[BodyT]:
        """The next ready job of the used tube."""
        return self._job(await self._request(PeekReady()))

    async def peek_delayed(self) -> Job[BodyT]:
        """The delayed job of the used tube that becomes ready first."""
        return self._job(await self._request(PeekDelayed()))

    async def peek_buried(self) -> Job[BodyT]:
        """The next buried job of the used tube."""
        return self._job(await self._request(PeekBuried()))

    async def kick(self, bound: int) -> int:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube; return
        how many were kicked."""
        event = await self._request(Kick(bound))
        if type(event) is Kicked and event.count is not None:
            return event.count
        raise error_for_event(event)

    async def kick_job(self, job_or_id: Job[Any] | int) -> None:
        """Kick one buried or delayed job into the ready queue."""
        event = await self._request(KickJob(job_id(job_or_id)))
        if type(event) is not Kicked:
            raise error_for_event(event)

    async def stats(self) -> ServerStats:
        """The server's statistics."""
        event = await self._request(Stats())
        if type(event) is ServerStats:
            return event
        raise error_for_event(event)

    async def stats_job(self, job_or_id: Job[Any] | int) -> JobStats:
        """A job's statistics."""
        event = await self._request(StatsJob(job_id(job_or_id)))
        if type(event) is JobStats:
            return event
        raise error_for_event(event)

    async def stats_tube(self, tube: str) -> TubeStats:
        """A tube's statistics. Raises :class:`beanproto.NotFoundError` for a tube
        that does not exist."""
        event = await self._request(StatsTube(tube))
        if type(event) is TubeStats:
            return event
        raise error_for_event(event)

    async def tubes(self) -> list[str]:
        """Every existing tube."""
        event = await self._request(ListTubes())
        if type(event) is TubeList:
            return list(event.tubes)
        raise error_for_event(event)

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        event = await self._request(PauseTube(tube, delay))
        if type(event) is not Paused:
            raise error_for_event(event)

    # -- lifetime --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection; idempotent.

        Follows trio's ``AsyncResource`` contract: the stream is always closed,
        even if this task is cancelled. A healthy, idle connection is first sent
        ``quit`` and closed gracefully, within about a second at most (shielded
        from cancellation for that long, no longer). Calls still in progress in
        other tasks raise :class:`beanproto.BrokenConnectionError`.
        """
        if self._broken is not None:
            await self._close_now()
            return
        conn = self._conn
        idle = conn.state is State.OPEN and not conn.pending and not self._writing and not self._out
        quit = conn.send(Quit()) if idle else None
        self._break("the client was closed")
        try:
            if quit is not None:
                with anyio.move_on_after(_QUIT_TIMEOUT, shield=True):
                    with contextlib.suppress(Exception):
                        await self._stream.send(quit)
                        await self._stream.aclose()
        finally:
            await self._close_now()

    @property
    def closed(self) -> bool:
        """True once the client was closed or broken; every call then raises
        :class:`beanproto.BrokenConnectionError`."""
        return self._broken is not None

    async def __aenter__(self) -> Client[BodyT]:
        self._checkpoint_if_cancelled = _cancel_check()
        setup = self._setup
        if setup:
            try:
                batch_outcomes(setup, await self._exchange(setup), None)
            except BaseException:
                self._break("connecting failed")
                await self._close_now()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "open" if self._broken is None else "closed"
        return f"<beanproto_anyio.Client {self._address} {state}>"


@overload
def connect(
    address: Address,
    *,
    encoding: None = None,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: Any = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> AbstractAsyncContextManager[Client[bytes]]: ...


@overload
def connect(
    address: Address,
    *,
    encoding: str,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: Any = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> AbstractAsyncContextManager[Client[str]]: ...


def connect(
    address: Address,
    *,
    encoding: str | None = None,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: Any = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> AbstractAsyncContextManager[Client[Any]]:
    """Connect to beanstalkd: ``async with connect(address) as client``.

    ``address`` is ``(host, port)`` (TCP, with ``TCP_NODELAY`` and keepalive)
    or a Unix socket path. ``tls=True`` or an ``ssl_context``
    (``ssl.SSLContext``) wraps a TCP connection in TLS, e.g. to reach beanstalkd
    behind a TLS-terminating proxy. The other arguments are :class:`Client`'s;
    invalid ones raise before connecting. Leaving the block closes the client.
    """
    if encoding is not None:
        "".encode(encoding)
    setup_commands(use, watch)  # invalid tube names raise before connecting
    if isinstance(address, str):
        if tls or ssl_context is not None:
            raise InvalidArgument("TLS needs a (host, port) address")
    elif not isinstance(address, tuple):
        raise TypeError(
            f"address must be (host, port) or a Unix socket path, not {type(address).__name__}"
        )
    return _connect(address, encoding, use, watch, tls, ssl_context, max_body_size)


@asynccontextmanager
async def _connect(
    address: Address,
    encoding: str | None,
    use: str | None,
    watch: str | Iterable[str] | None,
    tls: bool,
    ssl_context: Any,
    max_body_size: int,
) -> AsyncIterator[Client[Any]]:
    stream: anyio.abc.ByteStream
    if isinstance(address, str):
        stream = await anyio.connect_unix(address)
    else:
        host, port = address
        raw = await anyio.connect_tcp(host, port)
        _set_socket_options(raw)
        stream = raw
        if tls or ssl_context is not None:
            try:
                stream = await TLSStream.wrap(
                    raw, hostname=host, ssl_context=ssl_context, standard_compatible=False
                )
            except BaseException:
                await anyio.aclose_forcefully(raw)
                raise
    try:
        client: Client[Any] = Client(
            stream, encoding=encoding, use=use, watch=watch, max_body_size=max_body_size
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    async with client:
        yield client
