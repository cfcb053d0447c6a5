"""The blocking client's public methods, each a line or two over its transport.

Theory of operation: a method builds its command (which checks its arguments,
so an invalid one raises before anything is sent), hands it to
:class:`~beanproto_sync._transport.Transport` with the function that turns the
reply into the method's value, and returns that value. Everything about the
socket, the lock, time and interrupts is the transport's; everything both
clients do alike is :mod:`beanproto.adapter`'s.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    MAX_LINE_SIZE,
    Bury,
    Command,
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
    released,
    reserve_command,
    server_stats,
    setup_commands,
    touched,
    tube_names,
    tube_stats,
    using_tube,
    watch_count,
)
from beanproto.metrics import MetricsHooks

from ._transport import Address, MeasuredTransport, Transport

__all__ = ["Client"]

BodyT = TypeVar("BodyT", bytes, str)


class Client(Generic[BodyT]):
    """A blocking client for one beanstalkd connection.

    ``address`` is ``(host, port)`` (or any two-item sequence), a Unix socket
    path (``str`` with a ``/``, or ``pathlib.Path``), an address string
    (``host:port``, ``host``, ``beanstalk://host:port``, ``unix:///path``: see
    :mod:`beanproto.address`), or an already connected ``socket.socket`` (the
    client takes it over and closes it). ``None``, the default, means
    ``$BEANSTALKD_URL``, else ``127.0.0.1:11300``; a malformed address raises
    ``ValueError`` (:class:`beanproto.address.AddressError`) naming it.

    Bodies: with ``encoding=None`` job bodies are ``bytes`` in and out
    (``Client[bytes]``); with an encoding, :meth:`put` takes ``str`` (or
    ``bytes``) and jobs carry ``str`` bodies (``Client[str]``). With a
    ``serializer`` (any object with ``dumps(obj)`` and ``loads(data)``: the
    ``json``, ``pickle`` or ``msgpack`` module), :meth:`put` takes any object
    and sends ``dumps(obj)`` (a ``str`` encoded with ``encoding``, UTF-8 by
    default), and jobs carry ``loads(body)`` (``loads`` gets the raw bytes); a
    body that does not load raises :class:`beanproto.BodyDecodeError`, as one
    that does not decode does. The type checker sees such a client as
    ``Client[Any]``: ``loads`` returns ``Any`` (:class:`beanproto.adapter.Serializer`).
    ``use`` and ``watch`` (a tube or an iterable of tubes; without
    ``"default"`` in it, ``default`` is ignored) are sent at connect time in
    one write.

    TLS: ``tls=True`` or an ``ssl_context`` (``ssl.SSLContext``; by default
    ``ssl.create_default_context()``) wraps the TCP connection in TLS, checking
    the server's certificate against the host name, e.g. to reach beanstalkd
    behind a TLS-terminating proxy. A Unix socket or a connected socket refuse
    it with :class:`beanproto.InvalidArgument`. beanstalkd itself speaks no TLS:
    a handshake with it waits for ever, so give a ``timeout``.

    ``max_body_size`` bounds the body of a reply (a job or a stats payload)
    that the client accepts; a server announcing more is refused at once with
    :class:`beanproto.RemoteProtocolError` (default: 1 GiB, beanstalkd's own
    limit on ``max-job-size``). ``max_command_size`` is the longest command line
    the server reads: pass :data:`beanproto.MAX_LINE_SIZE_1_10` for beanstalkd 1.10,
    and a command it could not read raises :class:`beanproto.InvalidArgument`
    before anything is sent (docs/versions.md).

    ``timeout`` (seconds, ``None`` for none; for a connected socket, ``None``
    keeps the socket's own timeout, and a non-blocking socket gets none)
    bounds connecting and each call as a whole, every send and every reply,
    except the wait of a reserve: ``reserve(timeout=t)`` may wait ``t`` plus
    ``timeout`` for its reply to begin, and ``reserve()`` waits for a job
    however long it takes (TCP keepalive notices a dead server within about a
    minute); once a reply has begun, its rest is bounded by ``timeout`` too.

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

    Reconnecting: with ``reconnect=True`` (not for a connected socket:
    :class:`beanproto.InvalidArgument`), a broken connection is reopened by the
    next call, before it sends anything, with the used tube and watch list the
    broken one had; the call that was in flight at the break raised and is never
    sent again, except a read-only call (:meth:`stats`, :meth:`stats_tube`,
    :meth:`stats_job`, the ``peek`` methods, :meth:`tubes`, :meth:`using`,
    :meth:`watching`) or a :meth:`reserve`: whose connection broke before the
    reply is retried once, at once, on a new connection (a reserve with a
    timeout waits only the time it has left), and returns normally if that
    works. Calls that change state (:meth:`put`, :meth:`delete`, :meth:`release`,
    ...), :meth:`reserve_job` and the batches (:meth:`put_many`,
    :meth:`delete_many`, :meth:`pipeline`) raise
    :class:`beanproto.BrokenConnectionError` and are never sent again: a lost
    reply leaves their fate unknown. After a failed attempt the next waits 0.1 s,
    doubling up to 5 s; a call before then raises
    :class:`beanproto.BrokenConnectionError` at once. :meth:`close` stops it for
    good. The ``beanproto.client`` logger reports a connection (INFO), a break
    (WARNING), a reconnection and a failed attempt with the next one's delay
    (INFO); nothing per command. The first connection is not retried: a server
    down at construction raises as without ``reconnect``.

    Metrics: ``metrics`` (a :class:`beanproto.metrics.MetricsHooks`) has its
    ``command`` hook called once per command sent, batches and the
    ``use``/``watch`` of connecting included (a retried command counts twice:
    ``BROKEN``, then its reply), with the wire name, the reply's first word
    (``BROKEN`` if the connection failed first, ``INTERRUPTED`` for a timeout or
    an interrupt), the seconds since the write, and the server as
    :func:`beanproto.address.describe` writes it (``"socket"`` for a connected
    socket). A hook that raises closes the connection, as an interrupt would.
    Without ``metrics`` nothing is measured: not even the clock is read.

    Threads: a client may be shared by threads; their calls take turns (a
    ``threading.RLock``), so a waiting :meth:`reserve` holds up the others, as on
    the server. :meth:`close` from another thread aborts the call in progress
    (e.g. a waiting :meth:`reserve`). A thread that calls the client while it is
    already in a call on it (a signal handler) gets
    :class:`~beanproto_sync.ConcurrentUseError`.
    """

    __slots__ = ("_encoding", "_serializer", "_transport")

    @overload
    def __init__(
        self: Client[bytes],
        address: Address | None = None,
        *,
        encoding: None = None,
        serializer: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = False,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[str],
        address: Address | None = None,
        *,
        encoding: str,
        serializer: None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = False,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: Client[Any],
        address: Address | None = None,
        *,
        encoding: str | None = None,
        serializer: Serializer,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = False,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None: ...

    def __init__(
        self,
        address: Address | None = None,
        *,
        encoding: str | None = None,
        serializer: Serializer | None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        timeout: float | None = None,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = False,
        metrics: MetricsHooks | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
    ) -> None:
        encoding = body_encoding(encoding, serializer)
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout must be a positive number of seconds, or None")
        if tls and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._encoding = encoding
        self._serializer = serializer
        options: dict[str, Any] = {
            "timeout": timeout,
            "max_body_size": max_body_size,
            "max_command_size": max_command_size,
            "setup": setup_commands(use, watch),  # invalid names raise before connecting
            "ssl_context": ssl_context,
            "reconnect": reconnect,
        }
        if metrics is None:
            self._transport = Transport(address, **options)
        else:
            self._transport = MeasuredTransport(address, metrics=metrics, **options)
        self._transport.open()

    def _job(self, event: Event) -> Job[BodyT]:
        return cast("Job[BodyT]", job_from_event(event, self._encoding, self._serializer))

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
        raises ``TypeError``; with a serializer, ``body`` is any object it dumps.
        """
        data = encode_body(body, self._encoding, self._serializer)
        put = Put(data, priority, delay, ttr)  # type: ignore[arg-type]
        return self._transport.request(put, inserted_id)

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
        commands = put_commands(bodies, self._encoding, priority, delay, ttr, self._serializer)
        if not commands:
            return []
        return self._transport.exchange(
            commands, lambda events: cast(list[int], batch_outcomes(commands, events, Inserted))
        )

    def use(self, tube: str) -> str:
        """Put later jobs into ``tube``; return its name."""
        return self._transport.request(Use(tube), using_tube)

    def using(self) -> str:
        """The tube :meth:`put` goes to (asks the server)."""
        return self._transport.request(ListTubeUsed(), using_tube)

    # -- consuming -------------------------------------------------------------------

    def reserve(self, timeout: float | None = None) -> Job[BodyT]:
        """Reserve a job from a watched tube.

        ``None`` waits however long it takes; a number of seconds (a float is
        rounded up) waits at most that long, ``0`` only polls. Raises
        :class:`beanproto.TimedOutError` when no job came in time and
        :class:`beanproto.DeadlineSoonError` when a job this client holds is
        about to reach its TTR. While a reserve waits for its reply to begin,
        the socket timeout is ``None`` (plain reserve) or ``timeout`` plus the
        client's timeout.
        """
        command = reserve_command(timeout)
        transport = self._transport
        return transport.request(command, self._job, transport.reserve_wait(command))

    def reserve_job(self, id: int) -> Job[BodyT]:
        """Reserve job ``id`` whatever its tube or state (beanstalkd 1.12+)."""
        return self._transport.request(ReserveJob(id), self._job)

    def delete(self, job_or_id: Job[Any] | int) -> None:
        """Delete a job (a :class:`beanproto.Job` or its id)."""
        self._transport.request(Delete(job_id(job_or_id)), deleted)

    def delete_many(self, jobs_or_ids: Iterable[Job[Any] | int]) -> None:
        """Delete many jobs in one pipelined exchange.

        Every reply is read; if any delete was refused, the first refusal is
        raised with ``exc.outcomes``: one entry per job, its id (``int``) when it
        was deleted, or the :class:`beanproto.CommandError`.
        """
        commands = [Delete(job_id(j)) for j in jobs_or_ids]
        if commands:
            self._transport.exchange(
                commands, lambda events: batch_outcomes(commands, events, Deleted)
            )

    def pipeline(self, commands: Iterable[Command]) -> list[Event]:
        """Send core commands in one pipelined exchange and return their replies,
        one event per command, in order (what the batch methods are built on).

        Refusals come back as events (``NotFound()``, ...), not raised:
        :func:`beanproto.error_for_event` makes the exception of one. A job
        reserved here (``ReserveWithTimeout(0)``, ``ReserveJob``) is the caller's,
        its body undecoded: :func:`beanproto.adapter.job_from_event` makes the
        :class:`~beanproto.Job`. Commands that make the server wait (``Reserve``,
        a reserve with a timeout) and ``Quit`` are refused with
        :class:`beanproto.InvalidArgument` before anything is sent. Writing reads
        the replies that arrive meanwhile, so a batch of any size cannot deadlock.
        """
        batch = pipeline_commands(commands)
        if not batch:
            return []
        return self._transport.exchange(batch, list)

    def release(
        self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a reserved job back into the ready queue (or delayed, by ``delay`` s)."""
        release = Release(job_id(job_or_id), priority, delay)
        self._transport.request(release, released)

    def bury(self, job_or_id: Job[Any] | int, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a reserved job aside until it is kicked."""
        self._transport.request(Bury(job_id(job_or_id), priority), buried)

    def touch(self, job_or_id: Job[Any] | int) -> None:
        """Ask for more time: restart the TTR of a reserved job."""
        self._transport.request(Touch(job_id(job_or_id)), touched)

    def watch(self, tube: str) -> int:
        """Add ``tube`` to the watch list; return how many tubes are watched."""
        return self._transport.request(Watch(tube), watch_count)

    def ignore(self, tube: str) -> int:
        """Remove ``tube`` from the watch list; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube.
        """
        return self._transport.request(Ignore(tube), watch_count)

    def watching(self) -> list[str]:
        """The watched tubes (asks the server)."""
        return self._transport.request(ListTubesWatched(), tube_names)

    # -- inspecting ------------------------------------------------------------------

    def peek(self, id: int) -> Job[BodyT]:
        """Job ``id``, in any state. Raises :class:`beanproto.NotFoundError`."""
        return self._transport.request(Peek(id), self._job)

    def peek_ready(self) -> Job[BodyT]:
        """The next ready job of the used tube."""
        return self._transport.request(PeekReady(), self._job)

    def peek_delayed(self) -> Job[BodyT]:
        """The delayed job of the used tube that becomes ready first."""
        return self._transport.request(PeekDelayed(), self._job)

    def peek_buried(self) -> Job[BodyT]:
        """The next buried job of the used tube."""
        return self._transport.request(PeekBuried(), self._job)

    def kick(self, bound: int) -> int:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube; return
        how many were kicked."""
        return self._transport.request(Kick(bound), kick_count)

    def kick_job(self, job_or_id: Job[Any] | int) -> None:
        """Kick one buried or delayed job into the ready queue."""
        self._transport.request(KickJob(job_id(job_or_id)), kicked)

    def stats(self) -> ServerStats:
        """The server's statistics."""
        return self._transport.request(Stats(), server_stats)

    def stats_job(self, job_or_id: Job[Any] | int) -> JobStats:
        """A job's statistics."""
        return self._transport.request(StatsJob(job_id(job_or_id)), job_stats)

    def stats_tube(self, tube: str) -> TubeStats:
        """A tube's statistics. Raises :class:`beanproto.NotFoundError` for a tube
        that does not exist."""
        return self._transport.request(StatsTube(tube), tube_stats)

    def tubes(self) -> list[str]:
        """Every existing tube."""
        return self._transport.request(ListTubes(), tube_names)

    def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds."""
        self._transport.request(PauseTube(tube, delay), paused)

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Idempotent, and never blocks for long.

        A healthy, idle connection is sent ``quit`` first (best effort, at most
        about a second). May be called from another thread to abort a call in
        progress (e.g. a waiting :meth:`reserve`), which then raises
        :class:`beanproto.BrokenConnectionError`.
        """
        self._transport.close()

    @property
    def closed(self) -> bool:
        """True once the client was closed or broken; every call then raises
        :class:`beanproto.BrokenConnectionError` (with ``reconnect=True``, a
        broken client reconnects on its next call, until :meth:`close`)."""
        return self._transport.closed

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
        state = "closed" if self._transport.closed else "open"
        return f"<beanproto_sync.Client {self._transport.description} {state}>"
