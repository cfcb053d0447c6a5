"""The async client's public methods, each a line or two over its multiplexer.

Theory of operation: a method builds its command (which checks its arguments,
so an invalid one raises before anything is sent) and hands it to the
:class:`~beanproto_anyio._multiplexer.Multiplexer` with the function that turns
the reply into the method's value. The multiplexer shares the connection
between tasks (pipelining their commands) and owns cancellation; everything both
clients do alike is :mod:`beanproto.adapter`'s.

Reconnecting (``connect(..., reconnect=True)``): a multiplexer serves one
stream and stays broken once broken, so the client replaces it. A call that
finds it broken, before submitting anything, opens a new stream (one task at
a time, under a lock; the others then use the new one, or fail at once if the
attempt failed), sends the used tube and watch list the broken connection had
confirmed, and swaps the new multiplexer in. Tasks still inside the old one
finish there and raise: nothing they sent is sent again on the new connection,
except by a call whose one command is retryable
(:func:`beanproto.adapter.retryable`: it reads, or reserves, and the server
puts back a job reserved on a closed connection): that call, once its
connection broke, reconnects and sends it once more (a reserve with a timeout
with the time it has left). A break met there is final for that call.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    MAX_LINE_SIZE,
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
    KickJob,
    ListTubes,
    ListTubesWatched,
    ListTubeUsed,
    PauseTube,
    Peek,
    PeekBuried,
    PeekDelayed,
    PeekReady,
    Put,
    Release,
    ReserveJob,
    ReserveWithTimeout,
    ServerStats,
    Stats,
    StatsJob,
    StatsTube,
    Touch,
    TubeStats,
    Use,
    Watch,
)
from beanproto.adapter import (
    Serializer,
    batch_outcomes,
    body_encoding,
    buried,
    deleted,
    encode_body,
    inserted_id,
    job_from_event,
    job_id,
    job_stats,
    kick_count,
    kicked,
    paused,
    pipeline_commands,
    put_commands,
    reconnect_delay,
    released,
    reserve_command,
    restore_commands,
    retryable,
    server_stats,
    set_tcp_options,
    setup_commands,
    touched,
    tube_names,
    tube_stats,
    using_tube,
    watch_count,
)
from beanproto.address import Address, describe, resolve_address
from beanproto.metrics import MetricsHooks

from ._multiplexer import MeasuredMultiplexer, Multiplexer

__all__ = ["Address", "Client", "connect"]

BodyT = TypeVar("BodyT", bytes, str)
T = TypeVar("T")

log = logging.getLogger("beanproto.client")


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
    (``Client[str]``). With a ``serializer`` (``dumps``/``loads``, like the
    ``json`` module), :meth:`put` takes any object and jobs carry
    ``loads(body)``, as on :class:`beanproto_sync.Client` (a ``Client[Any]``;
    a body that does not load raises :class:`beanproto.BodyDecodeError`).
    ``max_body_size`` bounds the body of a reply the client
    accepts (default 1 GiB); a server announcing more is refused at once with
    :class:`beanproto.RemoteProtocolError`. ``max_command_size`` is the longest
    command line the server reads: pass :data:`beanproto.MAX_LINE_SIZE_1_10` for
    beanstalkd 1.10, and a command it could not read raises
    :class:`beanproto.InvalidArgument` before anything is sent. The methods are
    those of :class:`beanproto_sync.Client`, as coroutines; bound them with
    ``anyio.fail_after``/``move_on_after``.

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

    Metrics: ``metrics`` (a :class:`beanproto.metrics.MetricsHooks`) has its
    ``command`` hook called in the calling task once per command sent, batches
    and the ``use``/``watch`` of connecting included (a retried command counts
    twice: ``BROKEN``, then its reply), with the wire name, the reply's first
    word (``BROKEN`` if the connection failed first, ``INTERRUPTED`` if the call
    was cancelled or interrupted), the seconds from its write until its task has
    the reply, and the server (``"stream"`` here; :func:`connect` names the
    address as :func:`beanproto.address.describe` writes it). A hook that raises
    breaks the connection, as an interrupt would. Without ``metrics`` nothing is
    measured: not even the clock is read.
    """

    __slots__ = (
        "_address",
        "_closing",
        "_encoding",
        "_failures",
        "_limits",
        "_lock",
        "_metrics",
        "_mux",
        "_opener",
        "_restore",
        "_retry_at",
        "_serializer",
        "_server",
        "_setup",
    )

    @overload
    def __init__(
        self: Client[bytes],
        stream: anyio.abc.ByteStream,
        *,
        encoding: None = None,
        serializer: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[str],
        stream: anyio.abc.ByteStream,
        *,
        encoding: str,
        serializer: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[Any],
        stream: anyio.abc.ByteStream,
        *,
        encoding: str | None = None,
        serializer: Serializer,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        encoding: str | None = None,
        serializer: Serializer | None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None:
        self._encoding = body_encoding(encoding, serializer)
        self._serializer = serializer
        self._setup = setup_commands(use, watch)
        self._limits = (max_body_size, max_command_size)
        self._metrics = metrics
        self._server = "stream"  # the name metrics reports; connect() names the address
        self._mux = self._multiplexer(stream)
        self._address = _describe(stream)
        # Reconnecting: how to open a new stream (set by connect(reconnect=True)).
        self._opener: Callable[[], Awaitable[anyio.abc.ByteStream]] | None = None
        self._closing = False  # aclose() was called: no reconnecting
        self._lock: anyio.Lock | None = None  # one reconnection attempt at a time
        self._restore: list[Command] | None = None  # the setup of the next reconnection
        self._failures = 0  # failed attempts in a row
        self._retry_at = 0.0  # no attempt before this anyio.current_time()

    def _multiplexer(self, stream: anyio.abc.ByteStream) -> Multiplexer:
        body, command = self._limits
        if self._metrics is None:
            return Multiplexer(stream, max_body_size=body, max_command_size=command)
        return MeasuredMultiplexer(
            stream,
            metrics=self._metrics,
            server=self._server,
            max_body_size=body,
            max_command_size=command,
        )

    def _name(self, server: str) -> None:
        """Name the server in metrics reports (``connect()`` knows the address)."""
        self._server = server
        if isinstance(self._mux, MeasuredMultiplexer):
            self._mux.server = server

    # Not coroutines themselves: they hand back the multiplexer's call to await,
    # so that a call costs no extra coroutine frame unless it must reconnect first
    # (or may be retried: a client that reconnects, a retryable command).
    def _request(self, command: Command, result: Callable[[Event], T]) -> Awaitable[T]:
        mux = self._mux
        if self._opener is not None:
            if mux.closed:
                return self._reconnected_request(command, result)
            if retryable(command):
                return self._retried_request(mux, command, result)
        return mux.request(command, result)

    def _exchange(
        self, commands: Sequence[Command], result: Callable[[list[Event]], T]
    ) -> Awaitable[T]:
        mux = self._mux
        if mux.closed and self._opener is not None:
            return self._reconnected_exchange(commands, result)
        return mux.exchange(commands, result)

    async def _reconnected_request(self, command: Command, result: Callable[[Event], T]) -> T:
        mux = await self._reconnect()
        if retryable(command):
            return await self._retried_request(mux, command, result)
        return await mux.request(command, result)

    async def _retried_request(
        self, mux: Multiplexer, command: Command, result: Callable[[Event], T]
    ) -> T:
        """``mux.request``, sent once more on a new connection if the connection
        broke before the reply (a :func:`~beanproto.adapter.retryable` command)."""
        timed = isinstance(command, ReserveWithTimeout) and command.timeout > 0
        started = anyio.current_time() if timed else 0.0
        try:
            return await mux.request(command, result)
        except BrokenConnectionError:
            if self._closing:
                raise
            if isinstance(command, ReserveWithTimeout) and timed:
                left = command.timeout - (anyio.current_time() - started)
                command = reserve_command(max(0.0, left))
            return await (await self._reconnect()).request(command, result)

    async def _reconnected_exchange(
        self, commands: Sequence[Command], result: Callable[[list[Event]], T]
    ) -> T:
        return await (await self._reconnect()).exchange(commands, result)

    async def _reconnect(self) -> Multiplexer:
        """Replace the broken multiplexer (``reconnect=True``), unless the last
        attempt failed too recently: then raise at once. Returns the one to use
        (still the broken one after ``aclose()``: its call raises)."""
        assert self._opener is not None
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            old = self._mux
            if not old.closed or self._closing:
                return old  # another task reconnected meanwhile, or aclose() was called
            wait = self._retry_at - anyio.current_time()
            if wait > 0:
                raise BrokenConnectionError(
                    f"the connection is unusable: next attempt to reconnect in {wait:.2f} s"
                )
            if self._restore is None:
                # What the broken connection had confirmed, kept until an attempt succeeds.
                conn = old.conn
                self._restore = restore_commands(conn.used_tube, conn.watched_tubes)
            setup = self._restore
            try:
                stream = await self._opener()
            except Exception as exc:
                raise self._attempt_failed(exc) from exc
            new = self._multiplexer(stream)
            try:
                if setup:
                    await new.exchange(setup, lambda events: batch_outcomes(setup, events, None))
                if self._closing:
                    raise BrokenConnectionError("the client was closed")
            except BaseException as exc:
                new._break("reconnecting failed")
                await anyio.aclose_forcefully(stream)
                if isinstance(exc, Exception) and not self._closing:
                    raise self._attempt_failed(exc) from exc
                raise
            new.announce = self._address
            self._mux = new
            log.info("reconnected to %s (attempt %d)", self._address, self._failures + 1)
            self._failures = 0
            self._restore = None
            return new

    def _attempt_failed(self, exc: Exception) -> BrokenConnectionError:
        self._failures += 1
        delay = reconnect_delay(self._failures)
        self._retry_at = anyio.current_time() + delay
        log.info(
            "reconnecting to %s failed (attempt %d): %s; next attempt in %.1f s",
            self._address,
            self._failures,
            exc,
            delay,
        )
        return BrokenConnectionError(f"reconnecting failed: {exc}")

    def _job(self, event: Event) -> Job[BodyT]:
        return cast("Job[BodyT]", job_from_event(event, self._encoding, self._serializer))

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
        raises ``TypeError``; with a serializer, ``body`` is any object it
        dumps. Cancelled after writing, the job may exist (its reply is
        dropped) and the client stays in sync.
        """
        data = encode_body(body, self._encoding, self._serializer)
        put = Put(data, priority, delay, ttr)  # type: ignore[arg-type]
        return await self._request(put, inserted_id)

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
        commands = put_commands(bodies, self._encoding, priority, delay, ttr, self._serializer)
        if not commands:
            await anyio.lowlevel.checkpoint()
            return []
        return await self._exchange(
            commands, lambda events: cast(list[int], batch_outcomes(commands, events, Inserted))
        )

    async def use(self, tube: str) -> str:
        """Put later jobs into ``tube``; return its name."""
        return await self._request(Use(tube), using_tube)

    async def using(self) -> str:
        """The tube :meth:`put` goes to (asks the server)."""
        return await self._request(ListTubeUsed(), using_tube)

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
        return await self._request(reserve_command(timeout), self._job)

    async def reserve_job(self, id: int) -> Job[BodyT]:
        """Reserve job ``id`` whatever its tube or state (beanstalkd 1.12+).

        Cancelled after writing: if the job was reserved, the connection is
        closed so the server returns it; otherwise the client stays in sync.
        """
        return await self._request(ReserveJob(id), self._job)

    async def delete(self, job_or_id: Job[Any] | int) -> None:
        """Delete a job (a :class:`beanproto.Job` or its id)."""
        await self._request(Delete(job_id(job_or_id)), deleted)

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
        await self._exchange(commands, lambda events: batch_outcomes(commands, events, Deleted))

    async def pipeline(self, commands: Iterable[Command]) -> list[Event]:
        """Send core commands in one pipelined exchange and return their replies,
        one event per command, in order (what the batch methods are built on).

        Refusals come back as events (``NotFound()``, ...), not raised:
        :func:`beanproto.error_for_event` makes the exception of one. A job
        reserved here (``ReserveWithTimeout(0)``, ``ReserveJob``) is the caller's,
        its body undecoded: :func:`beanproto.adapter.job_from_event` makes the
        :class:`~beanproto.Job`. Commands that make the server wait (``Reserve``,
        a reserve with a timeout) and ``Quit`` are refused with
        :class:`beanproto.InvalidArgument` before anything is sent. Cancellation
        as for :meth:`put_many`; a job reserved for a cancelled pipeline goes back
        (the connection is closed).
        """
        batch = pipeline_commands(commands)
        if not batch:
            await anyio.lowlevel.checkpoint()
            return []
        return await self._exchange(batch, list)

    async def release(
        self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a reserved job back into the ready queue (or delayed, by ``delay`` s)."""
        release = Release(job_id(job_or_id), priority, delay)
        await self._request(release, released)

    async def bury(self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a reserved job aside until it is kicked."""
        await self._request(Bury(job_id(job_or_id), priority), buried)

    async def touch(self, job_or_id: Job[Any] | int) -> None:
        """Ask for more time: restart the TTR of a reserved job."""
        await self._request(Touch(job_id(job_or_id)), touched)

    async def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        return await self._request(Watch(tube), watch_count)

    async def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube.
        """
        return await self._request(Ignore(tube), watch_count)

    async def watching(self) -> list[str]:
        """The watched tubes (asks the server)."""
        return await self._request(ListTubesWatched(), tube_names)

    # -- inspecting ------------------------------------------------------------------

    async def peek(self, id: int) -> Job[BodyT]:
        """Job ``id``, in any state. Raises :class:`beanproto.NotFoundError`."""
        return await self._request(Peek(id), self._job)

    async def peek_ready(self) -> Job[BodyT]:
        """The next ready job of the used tube."""
        return await self._request(PeekReady(), self._job)

    async def peek_delayed(self) -> Job[BodyT]:
        """The delayed job of the used tube that becomes ready first."""
        return await self._request(PeekDelayed(), self._job)

    async def peek_buried(self) -> Job[BodyT]:
        """The next buried job of the used tube."""
        return await self._request(PeekBuried(), self._job)

    async def kick(self, bound: int) -> int:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube; return
        how many were kicked."""
        return await self._request(Kick(bound), kick_count)

    async def kick_job(self, job_or_id: Job[Any] | int) -> None:
        """Kick one buried or delayed job into the ready queue."""
        await self._request(KickJob(job_id(job_or_id)), kicked)

    async def stats(self) -> ServerStats:
        """The server's statistics."""
        return await self._request(Stats(), server_stats)

    async def stats_job(self, job_or_id: Job[Any] | int) -> JobStats:
        """A job's statistics."""
        return await self._request(StatsJob(job_id(job_or_id)), job_stats)

    async def stats_tube(self, tube: str) -> TubeStats:
        """A tube's statistics. Raises :class:`beanproto.NotFoundError` for a tube
        that does not exist."""
        return await self._request(StatsTube(tube), tube_stats)

    async def tubes(self) -> list[str]:
        """Every existing tube."""
        return await self._request(ListTubes(), tube_names)

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        await self._request(PauseTube(tube, delay), paused)

    # -- lifetime --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection; idempotent.

        Follows trio's ``AsyncResource`` contract: the stream is always closed,
        even if this task is cancelled. A healthy, idle connection is first sent
        ``quit`` and closed gracefully, within about a second at most (shielded
        from cancellation for that long, no longer). Calls still in progress in
        other tasks raise :class:`beanproto.BrokenConnectionError`.
        """
        self._closing = True
        await self._mux.aclose()

    @property
    def closed(self) -> bool:
        """True once the client was closed or broken; every call then raises
        :class:`beanproto.BrokenConnectionError`."""
        return self._mux.closed

    async def __aenter__(self) -> Client[BodyT]:
        if self._setup:
            try:
                await self._exchange(
                    self._setup, lambda events: batch_outcomes(self._setup, events, None)
                )
            except BaseException:
                await self._mux.aclose()
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
        state = "closed" if self._mux.closed else "open"
        return f"<beanproto_anyio.Client {self._address} {state}>"


@overload
def connect(
    address: Address | None = None,
    *,
    encoding: None = None,
    serializer: None = None,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = False,
    metrics: MetricsHooks | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    max_command_size: int = MAX_LINE_SIZE,
) -> AbstractAsyncContextManager[Client[bytes]]: ...


@overload
def connect(
    address: Address | None = None,
    *,
    encoding: str,
    serializer: None = None,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = False,
    metrics: MetricsHooks | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    max_command_size: int = MAX_LINE_SIZE,
) -> AbstractAsyncContextManager[Client[str]]: ...


@overload
def connect(
    address: Address | None = None,
    *,
    encoding: str | None = None,
    serializer: Serializer,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = False,
    metrics: MetricsHooks | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    max_command_size: int = MAX_LINE_SIZE,
) -> AbstractAsyncContextManager[Client[Any]]: ...


def connect(
    address: Address | None = None,
    *,
    encoding: str | None = None,
    serializer: Serializer | None = None,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = False,
    metrics: MetricsHooks | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    max_command_size: int = MAX_LINE_SIZE,
) -> AbstractAsyncContextManager[Client[Any]]:
    """Connect to beanstalkd: ``async with connect(address) as client``.

    ``address`` is ``(host, port)`` (TCP, with ``TCP_NODELAY`` and keepalive),
    any two-item sequence, a Unix socket path (``str`` with a ``/``, or
    ``pathlib.Path``) or an address string (``host:port``,
    ``beanstalk://host:port``, ``unix:///path``: :mod:`beanproto.address`);
    ``None``, the default, means ``$BEANSTALKD_URL``, else ``127.0.0.1:11300``.
    ``tls=True`` or an ``ssl_context`` (``ssl.SSLContext``) wraps a TCP
    connection in TLS, e.g. to reach beanstalkd behind a TLS-terminating
    proxy. The other arguments are :class:`Client`'s; invalid ones (a
    malformed address: ``ValueError``) raise before connecting. Leaving the
    block closes the client.

    ``reconnect=True``: a broken connection is reopened by the next call,
    before it sends anything, with the used tube and watch list the broken one
    had; the calls in flight at the break raised and are never sent again.
    After a failed attempt the next waits 0.1 s, doubling up to 5 s; a call
    before then raises :class:`beanproto.BrokenConnectionError` at once.
    ``aclose()`` stops it for good. Exception: a read-only call (``stats``,
    ``stats_tube``, ``stats_job``, the ``peek`` methods, ``tubes``, ``using``,
    ``watching``) or a ``reserve`` whose connection broke before the reply is
    retried once, at once, on a new connection (a reserve with a timeout waits
    only the time it has left). Calls that change state (``put``, ``delete``,
    ``release``, ...), ``reserve_job`` and the batches (``put_many``,
    ``delete_many``, ``pipeline``) raise and are never sent again: a lost reply
    leaves their fate unknown. The ``beanproto.client`` logger reports a
    connection (INFO), a break (WARNING), a reconnection and a failed attempt
    with the next one's delay (INFO); nothing per command. The first connection
    is not retried. (:class:`Client` over a stream you give cannot reconnect.)
    ``metrics`` is :class:`Client`'s, with the address as the server's name.
    """
    encoding = body_encoding(encoding, serializer)
    if watch is not None and not isinstance(watch, str):
        watch = list(watch)  # read once: an iterator is used up by the check below
    setup_commands(use, watch)  # invalid tube names raise before connecting
    Connection(max_body_size=max_body_size, max_command_size=max_command_size)  # and limits
    target = resolve_address(address)
    if isinstance(target, str) and (tls or ssl_context is not None):
        raise InvalidArgument("TLS needs a (host, port) address, not a Unix socket")
    return _connect(
        target,
        encoding,
        serializer,
        use,
        watch,
        tls,
        ssl_context,
        reconnect,
        metrics,
        max_body_size,
        max_command_size,
    )


@asynccontextmanager
async def _connect(
    address: tuple[str, int] | str,
    encoding: str | None,
    serializer: Serializer | None,
    use: str | None,
    watch: str | Iterable[str] | None,
    tls: bool,
    ssl_context: ssl.SSLContext | None,
    reconnect: bool,
    metrics: MetricsHooks | None,
    max_body_size: int,
    max_command_size: int,
) -> AsyncIterator[Client[Any]]:
    stream = await _open_stream(address, tls, ssl_context)
    try:
        client: Client[Any] = Client(
            stream,
            encoding=encoding,
            serializer=serializer,
            use=use,
            watch=watch,
            metrics=metrics,
            max_body_size=max_body_size,
            max_command_size=max_command_size,
        )
        client._name(describe(address))
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    if reconnect:
        client._opener = functools.partial(_open_stream, address, tls, ssl_context)
        client._mux.announce = client._address
    async with client:
        log.info("connected to %s", client._server)
        yield client


async def _open_stream(
    address: tuple[str, int] | str, tls: bool, ssl_context: ssl.SSLContext | None
) -> anyio.abc.ByteStream:
    if isinstance(address, str):
        return await anyio.connect_unix(address)
    host, port = address
    raw = await anyio.connect_tcp(host, port)
    set_tcp_options(raw.extra(anyio.abc.SocketAttribute.raw_socket))
    if not (tls or ssl_context is not None):
        return raw
    try:
        return await TLSStream.wrap(
            raw, hostname=host, ssl_context=ssl_context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(raw)
        raise
