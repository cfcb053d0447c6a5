"""The calls in flight on one anyio stream: one write path, one read path, cancellation.

Theory of operation: one :class:`~beanproto_anyio.Client` may be shared by many
tasks, so a call never owns the connection. Each call does three things:

1. *Submit* (synchronous, no ``await``): ``conn.send(command)``, then a
   :class:`_Call` record onto the FIFO of calls awaiting replies and the bytes
   onto the output buffer. Nothing awaits between them, so the FIFO is always in
   wire order, without a send lock.
2. *Write* (:meth:`Multiplexer._write`, the one write path): if no task is
   writing, this one becomes the writer and writes everything buffered (its own
   bytes and whatever other tasks appended meanwhile) in as few ``send`` calls as
   possible. Otherwise the writer will write its bytes too. Commands from
   different tasks thus share writes and round trips: automatic pipelining.
3. *Wait* (:meth:`Multiplexer._wait`, the one read path): until its call has a
   reply, the task reads if no other task is reading, else sleeps on its own
   ``anyio.Event``. The reader gives every reply in what it read to the oldest
   call in the FIFO and wakes its task. When the reader's own reply has come,
   it hands the reading on to the longest-sleeping task still waiting.

A batch (``put_many``, ``delete_many``, the setup at connect time) is submitted
whole and written from a child task while the caller waits, so TCP
back-pressure cannot deadlock it (the server stops reading while it cannot
write its replies). A caller that sends a few small commands at a time, often
(a worker's finish and next reserve), asks for ``inline=True``: bytes that
cannot fill a socket buffer are written by the caller, as a single command's
are, and a task group per call is saved.

Cancellation: state changes are synchronous and come first; the only ``await``
in cleanup is ``anyio.aclose_forcefully``, which does not wait. By where the
call was:

* before its bytes were submitted: nothing was sent, the client is unaffected;
* while writing (bytes may be half written): the connection is broken;
* waiting for the reply to a command that does not block: the call is
  *abandoned*; the reader drops its reply when it comes and the client stays in
  sync. If that reply is a job reserved for the abandoned call
  (``reserve(timeout=0)``, ``reserve_job``), the reader closes the connection
  instead, so the server returns the job to the ready queue;
* waiting for a blocking reserve: the server reads nothing else until it
  answers and beanstalkd has no cancel command, so the connection is closed at
  once (the server returns any job it reserved for us);
* in an exchange, after a job's reply came but before the caller got it: the
  connection is closed too, so that the job goes back.

Any other exception inside a call (``KeyboardInterrupt``, an exception raised by
a signal handler) breaks the connection: the call cannot know how far it got.
Breaking fails every call still waiting with :class:`BrokenConnectionError`.

Metrics: a client given hooks uses :class:`MeasuredMultiplexer`, which
overrides the three steps every call goes through (``_submit`` notes the time,
``_wait`` reports the reply, ``_abandon`` reports a call given up on); the
plain multiplexer has no check for them at all. A hook runs in the calling
task; one that raises is an interrupted call (``_abandon`` breaks the
connection, so a job in flight goes back).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from beanproto import (
    NEED_DATA,
    BodyDecodeError,
    BrokenConnectionError,
    Command,
    CommandError,
    Connection,
    Event,
    InvalidArgument,
    Quit,
    RemoteProtocolError,
    Reserved,
    State,
)
from beanproto.adapter import blocks, reply_word
from beanproto.metrics import MetricsHooks

__all__ = ["MeasuredMultiplexer", "Multiplexer"]

T = TypeVar("T")

log = logging.getLogger("beanproto.client")

#: Bytes asked for per ``receive``.
_RECV_SIZE: Final = 65536
#: How long ``aclose()`` may spend on a graceful ``quit`` and stream close.
QUIT_TIMEOUT: Final = 1.0
#: How long after its deadline (or its cancellation) a writer keeps writing bytes
#: other tasks buffered before it gives up (and breaks the connection).
WRITE_GRACE: Final = 0.5
#: The most bytes an ``exchange(..., inline=True)`` writes from its own task:
#: far below any socket buffer, so the write cannot wait on the server, which
#: may stop reading until its replies are read.
INLINE_LIMIT: Final = 65536
#: What a failing stream raises.
_STREAM_ERRORS: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_READ_ERRORS: Final = (anyio.EndOfStream, *_STREAM_ERRORS)
#: What a call raises as itself and leaves the connection in step.
_IN_STEP: Final = (CommandError, BodyDecodeError)


class _Call:
    """One command awaiting its reply."""

    __slots__ = ("abandoned", "command", "error", "event", "wakeup")

    def __init__(self, command: Command) -> None:
        self.command = command
        self.event: Event | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # its caller gave up; the reader drops its reply
        self.wakeup: anyio.Event | None = None  # set while its task sleeps


def _fail(call: _Call, reason: str, cause: BaseException | None) -> None:
    """Fail ``call`` with :class:`BrokenConnectionError`, unless it has its outcome."""
    if call.event is None and call.error is None:
        err = BrokenConnectionError(f"the connection is unusable: {reason}")
        err.__cause__ = cause
        call.error = err
        if call.wakeup is not None:
            call.wakeup.set()


class Multiplexer:
    """Drives one :class:`beanproto.Connection` over one anyio byte stream for
    any number of tasks."""

    __slots__ = (
        "_broken",
        "_calls",
        "_conn",
        "_out",
        "_reading",
        "_sleepers",
        "_stream",
        "_writing",
        "announce",
    )

    def __init__(
        self, stream: anyio.abc.ByteStream, *, max_body_size: int, max_command_size: int
    ) -> None:
        self._stream = stream
        self._conn = Connection(max_body_size=max_body_size, max_command_size=max_command_size)
        self._calls: deque[_Call] = deque()  # awaiting replies, in wire order
        self._out: list[bytes] = []  # submitted, not written yet
        self._writing = False
        self._reading = False
        self._sleepers: deque[_Call] = deque()  # calls whose tasks sleep, oldest first
        self._broken: str | None = None
        #: The server to name in a WARNING when the connection breaks (a client
        #: that reconnects sets it); ``None``: breaks are not logged.
        self.announce: str | None = None

    @property
    def stream(self) -> anyio.abc.ByteStream:
        return self._stream

    @property
    def conn(self) -> Connection:
        """The core connection (what it knows of the used tube and watch list)."""
        return self._conn

    @property
    def closed(self) -> bool:
        return self._broken is not None

    @property
    def waiting_on_reserve(self) -> bool:
        """Whether all in flight is one blocking reserve, written whole: giving
        it up now (which closes the connection) abandons nothing else, such as
        a command written just before it whose reply has not come."""
        calls = self._calls
        return len(calls) == 1 and not self._writing and not self._out and blocks(calls[0].command)

    # -- calls -----------------------------------------------------------------------

    async def request(self, command: Command, result: Callable[[Event], T]) -> T:
        """Send ``command`` and return ``result(reply)``."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._broken is not None:
            raise self._unusable()
        call = _Call(command)
        try:
            self._submit([command], [call])
            if not self._writing:
                await self._write()
            return result(await self._wait(call))
        except (*_IN_STEP, InvalidArgument):
            # InvalidArgument comes only from the core's send, which refuses a
            # command before recording it: nothing was submitted.
            raise
        except BaseException as exc:
            await self._abandon(call, exc)
            raise

    async def exchange(
        self,
        commands: Sequence[Command],
        result: Callable[[list[Event]], T],
        *,
        inline: bool = False,
    ) -> T:
        """Send ``commands`` pipelined and return ``result(replies)``, one reply
        per command. A child task writes while this task reads.

        ``inline=True`` is for a few small commands sent often (a worker's
        finish and next reserve): if their bytes are at most
        :data:`INLINE_LIMIT`, far below any socket buffer, this task writes
        them and then reads, as :meth:`request` does, without the cost of a
        task group. Cancellation and failures are the same either way."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._broken is not None:
            raise self._unusable()
        batch = [_Call(command) for command in commands]
        events: list[Event] = []
        failure: BaseException | None = None
        try:
            size = self._submit(commands, batch)
            if inline and size <= INLINE_LIMIT:
                if not self._writing:
                    await self._write()
                for call in batch:
                    events.append(await self._wait(call))
                return result(events)
            # The writer breaks the connection itself if it fails, so an error
            # comes from waiting here. It is raised after the task group, as
            # itself rather than inside an exception group; cancellation goes
            # through the group, which is how anyio and trio expect it to travel.
            async with anyio.create_task_group() as tg:
                try:
                    if not self._writing:
                        tg.start_soon(self._write)
                    for call in batch:
                        events.append(await self._wait(call))
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    failure = exc
                    tg.cancel_scope.cancel()  # the connection is broken: stop writing
            if failure is not None:
                raise failure
            return result(events)
        except _IN_STEP:
            raise
        except BaseException as exc:
            # A job among the replies that came would never reach the caller
            # (interrupted in ``result``, or while later replies were awaited).
            lost_job = any(type(event) is Reserved for event in events)
            if lost_job:
                self._break(
                    "a job arrived for a call that was interrupted; the connection was closed"
                )
            for call in batch[len(events) :]:
                await self._abandon(call, exc)
            if lost_job:
                await self._close_now()
            raise

    def _submit(self, commands: Sequence[Command], calls: list[_Call]) -> int:
        """Record ``commands`` in the core, their calls in the FIFO, their bytes
        in the output buffer; return how many bytes."""
        conn = self._conn
        if len(commands) == 1:
            data = conn.send(commands[0])
        else:
            data = b"".join([conn.send(command) for command in commands])
        self._calls.extend(calls)
        self._out.append(data)
        return len(data)

    # -- the write path --------------------------------------------------------------

    async def _write(self) -> None:
        """Write everything buffered, as the one writer.

        Bytes other tasks buffer while this one writes are written by it too:
        those tasks count on it, so its cancellation does not stop it at once.
        It goes on, shielded, until ``WRITE_GRACE`` seconds after its deadline
        (at once if it is cancelled already), and then breaks the connection. A
        task without a deadline writes them unshielded, for as long as that
        takes; only an explicit cancel stops it, and breaks the connection as
        during its own write."""
        out = self._out
        if self._writing or not out:
            return
        self._writing = True
        try:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            await self._stream.send(data)
            if out and self._broken is None:
                deadline = anyio.current_effective_deadline()
                if deadline == math.inf:
                    await self._send_buffered()
                else:
                    with anyio.CancelScope(shield=True) as scope:
                        scope.deadline = max(deadline, anyio.current_time()) + WRITE_GRACE
                        await self._send_buffered()
                    if scope.cancelled_caught:
                        self._break("a write was cut short after its grace period")
                        await self._close_now()
        except BaseException as exc:
            if isinstance(exc, _STREAM_ERRORS):
                if self._broken is None:  # else closed meanwhile (aclose from another task)
                    self._break(f"writing failed: {exc!r}", exc)
            else:
                self._break(f"a write was interrupted by {type(exc).__name__}", exc)
            await self._close_now()
            if not isinstance(exc, _STREAM_ERRORS):
                raise
        finally:
            self._writing = False

    async def _send_buffered(self) -> None:
        out = self._out
        send = self._stream.send
        while out and self._broken is None:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            await send(data)

    # -- the read path ---------------------------------------------------------------

    async def _wait(self, call: _Call) -> Event:
        """Read (one reader at a time) until ``call`` has its reply."""
        while call.event is None and call.error is None:
            if not self._reading:
                self._reading = True
                try:
                    data = await self._stream.receive(_RECV_SIZE)
                except _READ_ERRORS as exc:
                    self._read_failed(exc)
                else:
                    self._deliver(data)
                finally:
                    self._reading = False
                if self._broken is not None:
                    await self._close_now()
            else:
                wakeup = call.wakeup = anyio.Event()
                self._sleepers.append(call)
                await wakeup.wait()
                call.wakeup = None
        if self._sleepers:
            self._hand_off()  # tasks that arrived while this one read
        if call.event is not None:
            return call.event
        # A task cancelled while its call failed reports the cancellation.
        await anyio.lowlevel.checkpoint_if_cancelled()
        assert call.error is not None
        raise call.error

    def _deliver(self, data: bytes) -> None:
        """Hand every complete reply (in ``data`` and what came before) to its call.

        A protocol error, or a job reserved for an abandoned call, breaks the
        connection; the caller closes the stream."""
        if self._broken is not None:
            return  # broken while this task read (a writer failed): the calls know
        if not data:  # anyio streams raise EndOfStream instead, but a stream may not
            self._break("the server closed the connection")
            return
        conn = self._conn
        calls = self._calls
        lost_job = False
        call: _Call | None = None  # the call being handed its reply
        try:
            conn.receive_data(data)
            while calls and (event := conn.next_event()) is not NEED_DATA:
                call = calls.popleft()
                if not call.abandoned:
                    call.event = event
                    if call.wakeup is not None:
                        call.wakeup.set()
                elif type(event) is Reserved:
                    lost_job = True
            if not calls and conn.buffered:
                conn.next_event()  # raises for bytes nobody asked for
        except RemoteProtocolError as exc:
            if calls:
                call = calls.popleft()
                call.error = exc
                if call.wakeup is not None:
                    call.wakeup.set()
            self._break(f"the server broke the protocol: {exc}", exc)
            return
        except BaseException as exc:
            # Interrupted halfway through handing out replies: the call last
            # taken off the FIFO may have its reply without its task being
            # woken. It fails with the others instead (its task has not run
            # since: this is synchronous), and a job in it goes back with the
            # connection.
            reason = f"reading was interrupted by {type(exc).__name__}"
            if call is not None:
                call.event = None
                _fail(call, reason, exc)
            self._break(reason, exc)
            raise
        if lost_job:
            # A job was reserved for a call that was cancelled: closing the
            # connection makes the server put it back into the ready queue.
            self._break("a job arrived for a cancelled reserve; the connection was closed")

    def _read_failed(self, exc: BaseException) -> None:
        """A read raised a stream error (or the end of the stream)."""
        if isinstance(exc, anyio.EndOfStream):
            self._break("the server closed the connection", exc)
        elif self._broken is None:
            self._break(f"reading failed: {exc!r}", exc)

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

    async def _abandon(self, call: _Call, exc: BaseException) -> None:
        """The caller of ``call`` gives up on it (cancelled or interrupted).

        Cancellation comes only at an ``await``, where the state is known. Any
        other exception may have come between any two lines, leaving the state
        half changed, so it breaks the connection, even if it is broken already
        (``_break`` then fails whatever calls an interrupted break left)."""
        call.wakeup = None
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            self._break(f"a call was interrupted by {type(exc).__name__}", exc)
        elif self._broken is None:
            # While the connection is whole, a call's error is not set.
            if call.event is not None:
                if type(call.event) is Reserved:
                    self._break("a job arrived for a cancelled reserve; the connection was closed")
            elif blocks(call.command):  # the server waits: giving up means closing
                self._break("a waiting reserve was cancelled; the connection was closed", exc)
            else:
                call.abandoned = True  # the reader drops its reply
        self._hand_off()
        if self._broken is not None:
            await self._close_now()

    # -- breaking and closing --------------------------------------------------------

    def _break(self, reason: str, cause: BaseException | None = None) -> None:
        """Give up on the connection. Synchronous: every waiting call fails now;
        the caller then closes the stream (``_close_now``)."""
        first = self._broken is None
        if first:
            self._broken = reason
        self._conn.send_failed()
        self._out.clear()
        calls = self._calls
        while calls:  # failed, then taken off: never off the FIFO and still waiting
            _fail(calls[0], reason, cause)
            calls.popleft()
        self._sleepers.clear()
        if first and self.announce is not None:
            log.warning("connection to %s broke: %s", self.announce, reason)

    async def _close_now(self) -> None:
        await anyio.aclose_forcefully(self._stream)

    def _unusable(self) -> BrokenConnectionError:
        return BrokenConnectionError(f"the connection is unusable: {self._broken}")

    async def aclose(self) -> None:
        """Close the connection; idempotent. A healthy, idle connection is sent
        ``quit`` and closed gracefully first, within ``QUIT_TIMEOUT`` at most."""
        if self._broken is not None:
            await self._close_now()
            return
        conn = self._conn
        idle = conn.state is State.OPEN and not conn.pending and not self._writing and not self._out
        quit = conn.send(Quit()) if idle else None
        self.announce = None  # closing is no break
        self._break("the client was closed")
        try:
            if quit is not None:
                with anyio.move_on_after(QUIT_TIMEOUT, shield=True):
                    try:
                        await self._stream.send(quit)
                        await self._stream.aclose()
                    except Exception:
                        pass
        finally:
            await self._close_now()


class MeasuredMultiplexer(Multiplexer):
    """A multiplexer that reports every command to ``metrics``
    (:meth:`beanproto.metrics.MetricsHooks.command`): the wire name, the reply's
    first word (or ``BROKEN``, ``INTERRUPTED``), the seconds from its submission
    (a batch's, for each command of a batch) to the moment its task has the
    reply (``time.perf_counter``), and ``server``."""

    __slots__ = ("_metrics", "_started", "server")

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        metrics: MetricsHooks,
        server: str,
        max_body_size: int,
        max_command_size: int,
    ) -> None:
        super().__init__(stream, max_body_size=max_body_size, max_command_size=max_command_size)
        self._metrics = metrics
        #: The server named in the reports.
        self.server = server
        self._started: dict[_Call, float] = {}  # the calls not reported yet

    def _submit(self, commands: Sequence[Command], calls: list[_Call]) -> int:
        size = super()._submit(commands, calls)
        now = time.perf_counter()
        started = self._started
        for call in calls:
            started[call] = now
        return size

    async def _wait(self, call: _Call) -> Event:
        event = await super()._wait(call)
        started = self._started.pop(call, None)
        if started is not None:
            duration = time.perf_counter() - started
            self._metrics.command(call.command.verb, reply_word(event), duration, self.server)
        return event

    async def _abandon(self, call: _Call, exc: BaseException) -> None:
        try:
            await super()._abandon(call, exc)
        finally:
            started = self._started.pop(call, None)
            if started is not None:
                broken = isinstance(exc, (BrokenConnectionError, RemoteProtocolError))
                self._metrics.command(
                    call.command.verb,
                    "BROKEN" if broken else "INTERRUPTED",
                    time.perf_counter() - started,
                    self.server,
                )
