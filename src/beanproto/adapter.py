"""Building blocks for a client that drives :class:`beanproto.Connection` over some I/O.

Theory of operation: ``beanproto_sync`` and ``beanproto_anyio`` are two thin
drivers of the core with the same API, and everything they do alike that is not
I/O lives here, public, so that a driver for another event loop (gevent, Twisted,
a hand-written ``selectors`` loop) gets exactly what they get: the commands a
client sends at connect time for ``use=``/``watch=``, a ``reserve`` timeout as
its command, a put's body under the client's ``encoding`` and ``serializer``
(and a job's body back), the event a call
hoped for (or the error it raises instead), a reply as a :class:`~beanproto.Job`,
the outcomes of a pipelined batch, which commands may hand a job to the caller
or hold the connection, the TCP options of a client socket, and what a client
that reconnects sends again (its ``use``/``watch`` as they were) and how long
it waits between attempts, which calls may be sent again after a break
(:func:`retryable`), and the reply word a metrics hook reports
(:func:`reply_word`). Nothing here
does I/O, and ``import beanproto`` does not import this module.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar

from ._commands import (
    DEFAULT_TUBE,
    MAX_RESERVE_TIMEOUT,
    Command,
    Ignore,
    ListTubes,
    ListTubesWatched,
    ListTubeUsed,
    Peek,
    PeekBuried,
    PeekDelayed,
    PeekReady,
    Put,
    Quit,
    Reserve,
    ReserveJob,
    ReserveWithTimeout,
    Stats,
    StatsJob,
    StatsTube,
    Use,
    Watch,
)
from ._errors import BodyDecodeError, CommandError, InvalidArgument
from ._events import (
    _REFUSALS,
    Buried,
    Deleted,
    Event,
    Found,
    Inserted,
    Kicked,
    Paused,
    Released,
    Reserved,
    Touched,
    TubeList,
    Using,
    Watching,
    error_for_event,
)
from ._job import Job
from ._stats import JobStats, ServerStats, TubeStats

__all__ = [
    "KEEPALIVE",
    "RECONNECT_FIRST_DELAY",
    "RECONNECT_MAX_DELAY",
    "Serializer",
    "batch_outcomes",
    "blocks",
    "body_encoding",
    "buried",
    "deleted",
    "encode_body",
    "expect",
    "inserted_id",
    "job_from_event",
    "job_id",
    "job_stats",
    "kick_count",
    "kicked",
    "paused",
    "pipeline_commands",
    "put_commands",
    "reconnect_delay",
    "released",
    "reply_word",
    "reserve_command",
    "reserves",
    "restore_commands",
    "retryable",
    "server_stats",
    "set_tcp_options",
    "setup_commands",
    "touched",
    "tube_names",
    "tube_stats",
    "using_tube",
    "watch_count",
]

E = TypeVar("E")


class Serializer(Protocol):
    """What ``serializer=`` takes: an object with ``dumps`` and ``loads``, such
    as the ``json``, ``pickle`` or ``msgpack`` module.

    ``dumps(obj)`` returns the body as ``bytes`` (or ``str``, encoded with the
    client's encoding, UTF-8 by default); ``loads(data)`` gets the body as the
    server sent it, ``bytes``. ``loads`` returns ``Any`` here: a client with a
    serializer is a ``Client[Any]``, its jobs ``Job[Any]``.
    """

    def dumps(self, obj: Any, /) -> bytes | str: ...

    def loads(self, data: bytes, /) -> Any: ...


#: TCP keepalive: first probe after 30 s idle, then every 10 s, give up after 3
#: unanswered probes, so a dead server is noticed within about a minute even
#: while a ``reserve`` waits. (``TCP_KEEPALIVE`` is macOS's name for the idle time.)
KEEPALIVE: Final = (
    ("TCP_KEEPIDLE", 30),
    ("TCP_KEEPALIVE", 30),
    ("TCP_KEEPINTVL", 10),
    ("TCP_KEEPCNT", 3),
)


def set_tcp_options(sock: socket.socket) -> None:
    """``TCP_NODELAY`` and keepalive (:data:`KEEPALIVE`) on a TCP socket; other
    sockets are left alone."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):  # a platform without that option
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def setup_commands(use: str | None, watch: str | Iterable[str] | None) -> list[Command]:
    """The commands a client sends at connect time for ``use=`` and ``watch=``.

    ``watch`` is a tube or an iterable of tubes (read once); without
    ``"default"`` in it, ``default`` is ignored. Invalid names raise here, so
    call it before connecting, and send the list it returned.
    """
    setup: list[Command] = []
    if use is not None:
        setup.append(Use(use))
    if watch is not None:
        tubes = [watch] if isinstance(watch, str) else list(dict.fromkeys(watch))
        if not tubes:
            raise InvalidArgument("watch must name at least one tube")
        setup.extend(Watch(t) for t in tubes if t != DEFAULT_TUBE)
        if DEFAULT_TUBE not in tubes:
            setup.append(Ignore(DEFAULT_TUBE))
    return setup


def restore_commands(used: str, watched: Iterable[str]) -> list[Command]:
    """The setup that gives a new connection the used tube and watch list of
    one that broke (:attr:`beanproto.Connection.used_tube`,
    :attr:`~beanproto.Connection.watched_tubes`): nothing for a connection
    that only ever had ``default``."""
    return setup_commands(None if used == DEFAULT_TUBE else used, watched)


#: After the first failed reconnection attempt, the next waits this long (seconds).
RECONNECT_FIRST_DELAY: Final = 0.1
#: The wait between attempts doubles up to this (seconds).
RECONNECT_MAX_DELAY: Final = 5.0


def reconnect_delay(failures: int) -> float:
    """How long after its ``failures``-th failed attempt in a row a client may
    try to reconnect again: 0.1 s, doubling, at most 5 s (the first attempt
    after a break is made at once)."""
    if failures < 1:
        return 0.0
    return min(RECONNECT_FIRST_DELAY * 2.0 ** min(failures - 1, 32), RECONNECT_MAX_DELAY)


_RESERVE: Final = Reserve()
_POLL: Final = ReserveWithTimeout(0)


def reserve_command(timeout: float | None) -> Reserve | ReserveWithTimeout:
    """``reserve`` for ``None``, else ``reserve-with-timeout`` with the seconds
    rounded up (0 polls)."""
    if timeout is None:
        return _RESERVE  # commands are immutable: the common ones are built once
    if timeout == 0 and type(timeout) is int:
        return _POLL
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0 <= timeout <= MAX_RESERVE_TIMEOUT:  # NaN fails this too
        raise InvalidArgument(
            f"timeout must be between 0 and {MAX_RESERVE_TIMEOUT} seconds, got {timeout}"
        )
    return ReserveWithTimeout(math.ceil(timeout))


def blocks(command: Command) -> bool:
    """Whether the server reads nothing more from the connection until
    ``command`` is answered (``reserve``, ``reserve-with-timeout`` above 0).
    Such a wait can only be given up by closing the connection."""
    return type(command) is Reserve or (type(command) is ReserveWithTimeout and command.timeout > 0)


def pipeline_commands(commands: Iterable[Command]) -> list[Command]:
    """The commands of a client's ``pipeline()``, checked: each a core
    :class:`~beanproto.Command` that does not make the server wait and is not
    ``quit`` (:class:`~beanproto.InvalidArgument` otherwise, before anything is sent)."""
    batch = list(commands)
    for command in batch:
        if not isinstance(command, Command):
            raise TypeError(f"pipeline() takes beanproto commands, not {type(command).__name__}")
        if blocks(command):
            raise InvalidArgument(
                f"pipeline() cannot send {command!r}: the server would read nothing after "
                "it until it answers; use reserve()"
            )
        if type(command) is Quit:
            raise InvalidArgument("pipeline() cannot send Quit(); close the client instead")
    return batch


def reserves(command: Command) -> bool:
    """Whether the reply to ``command`` may reserve a job for this connection:
    a caller that gives up on such a reply must close the connection, so that
    the server puts the job back."""
    return type(command) in (Reserve, ReserveWithTimeout, ReserveJob)


_RETRYABLE: Final = frozenset(
    {
        Stats,
        StatsTube,
        StatsJob,
        Peek,
        PeekReady,
        PeekDelayed,
        PeekBuried,
        ListTubes,
        ListTubeUsed,
        ListTubesWatched,
        Reserve,
        ReserveWithTimeout,
    }
)


def retryable(command: Command) -> bool:
    """Whether a client that reconnects may send ``command`` again after its
    connection broke before the reply: a read-only command, or ``reserve`` /
    ``reserve-with-timeout`` (the server returns a job reserved on a closed
    connection to the ready queue). A command that changes state (``put``,
    ``delete``, ``release``, ...) is never sent twice: its fate is unknown."""
    return type(command) in _RETRYABLE


_REPLY_WORDS: Final[dict[type[Any], str]] = {
    Inserted: "INSERTED",
    Buried: "BURIED",
    Using: "USING",
    Reserved: "RESERVED",
    Found: "FOUND",
    Deleted: "DELETED",
    Released: "RELEASED",
    Touched: "TOUCHED",
    Kicked: "KICKED",
    Watching: "WATCHING",
    Paused: "PAUSED",
    TubeList: "OK",
    ServerStats: "OK",
    JobStats: "OK",
    TubeStats: "OK",
    # The refusals' words are their errors' (NotFound: NotFoundError.reply, ...).
    **{event: error.reply for event, error in _REFUSALS.items()},
}


def reply_word(event: Event) -> str:
    """The first word of the reply ``event`` was made of (``"INSERTED"``,
    ``"NOT_FOUND"``, ``"OK"`` for the stats and tube lists, ...): the
    ``outcome`` a client reports to :meth:`beanproto.metrics.MetricsHooks.command`."""
    return _REPLY_WORDS[type(event)]


def job_id(job_or_id: Job[Any] | int) -> int:
    """The id of a :class:`~beanproto.Job`, or the id itself."""
    return job_or_id.id if isinstance(job_or_id, Job) else job_or_id


def body_encoding(encoding: str | None, serializer: Serializer | None) -> str | None:
    """Check a client's ``encoding`` and ``serializer`` before connecting
    (``LookupError`` for an unknown encoding, ``TypeError`` for a serializer
    without ``dumps`` and ``loads``); return the encoding to use: ``encoding``,
    or UTF-8 for a serializer given none (for a ``dumps`` that returns ``str``)."""
    if serializer is not None:
        if not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise TypeError(
                "serializer must have dumps(obj) and loads(data), like the json module, "
                f"not {type(serializer).__name__}"
            )
        if encoding is None:
            return "utf-8"
    if encoding is not None:
        "".encode(encoding)  # LookupError now for an unknown encoding
    return encoding


def encode_body(body: object, encoding: str | None, serializer: Serializer | None = None) -> object:
    """A put's body as the core takes it: with a ``serializer``, ``dumps(body)``;
    a ``str`` encoded with ``encoding`` (``UnicodeEncodeError`` if it cannot be);
    anything else as it is, for :class:`~beanproto.Put` to take (bytes-like) or
    refuse (``TypeError``). Pass the encoding :func:`body_encoding` returned."""
    if serializer is not None:
        body = serializer.dumps(body)
    if encoding is not None and isinstance(body, str):
        return body.encode(encoding)
    return body


def put_commands(
    bodies: Iterable[object],
    encoding: str | None,
    priority: int,
    delay: int,
    ttr: int,
    serializer: Serializer | None = None,
) -> list[Put]:
    """The :class:`~beanproto.Put` of each body of a ``put_many``."""
    return [
        Put(encode_body(b, encoding, serializer), priority, delay, ttr)  # type: ignore[arg-type]
        for b in bodies
    ]


def expect(event: Event, kind: type[E]) -> E:
    """``event`` if it is a ``kind``, the reply a call hoped for; else raise the
    error it stands for (:func:`beanproto.error_for_event`)."""
    if type(event) is kind:
        return event
    raise error_for_event(event)


def inserted_id(event: Event) -> int:
    """The id of the job a ``put`` inserted, or its refusal raised."""
    return expect(event, Inserted).id


def using_tube(event: Event) -> str:
    """The tube of a ``USING`` reply (``use``, ``list-tube-used``)."""
    return expect(event, Using).tube


def watch_count(event: Event) -> int:
    """The watch list's size after ``watch`` or ``ignore``."""
    return expect(event, Watching).count


def tube_names(event: Event) -> list[str]:
    """The tubes of ``list-tubes`` or ``list-tubes-watched``."""
    return list(expect(event, TubeList).tubes)


def kick_count(event: Event) -> int:
    """How many jobs a ``kick`` kicked."""
    count = expect(event, Kicked).count
    assert count is not None  # the reply table gives kick a count
    return count


def _done(kind: type[Event], what: str) -> Callable[[Event], None]:
    def done(event: Event) -> None:
        expect(event, kind)

    done.__name__ = done.__qualname__ = what
    done.__doc__ = f"Check that the reply is ``{kind.__name__}``, else raise its error."
    return done


deleted: Final = _done(Deleted, "deleted")
released: Final = _done(Released, "released")
buried: Final = _done(Buried, "buried")
touched: Final = _done(Touched, "touched")
kicked: Final = _done(Kicked, "kicked")
paused: Final = _done(Paused, "paused")


def server_stats(event: Event) -> ServerStats:
    """The reply of ``stats``."""
    return expect(event, ServerStats)


def job_stats(event: Event) -> JobStats:
    """The reply of ``stats-job``."""
    return expect(event, JobStats)


def tube_stats(event: Event) -> TubeStats:
    """The reply of ``stats-tube``."""
    return expect(event, TubeStats)


def job_from_event(
    event: Event,
    encoding: str | None,
    serializer: Serializer | None = None,
    server: str | None = None,
) -> Job[Any]:
    """The job a ``RESERVED``/``FOUND`` reply carries: its body loaded with the
    ``serializer`` (which gets the raw bytes), else decoded if an ``encoding``
    is given, else the bytes; ``server`` goes into :attr:`Job.server`. A body
    that does not load or decode raises
    :class:`~beanproto.BodyDecodeError` with the job's id and raw body (the
    job is the caller's all the same); any other reply raises its error."""
    if type(event) is Reserved or type(event) is Found:
        body = event.body
        if serializer is not None:
            try:
                return Job(event.id, serializer.loads(body), server)
            except Exception as exc:
                raise BodyDecodeError(event.id, body, encoding, serializer, server) from exc
        if encoding is None:
            return Job(event.id, body, server)
        try:
            return Job(event.id, body.decode(encoding), server)
        except UnicodeDecodeError as exc:
            # The job is ours all the same: say which, so it can be dealt with.
            raise BodyDecodeError(event.id, body, encoding, None, server) from exc
    raise error_for_event(event)


def batch_outcomes(
    commands: Sequence[Command], events: Sequence[Event], success: type | None
) -> list[int | CommandError]:
    """The outcome of each command of a pipelined batch: the job id where it
    succeeded (``Inserted``, or ``success`` for commands with an ``id``; ``0``
    for the ``USING``/``WATCHING`` of a connect-time setup), else its
    :class:`~beanproto.CommandError`. If any command was refused, the first
    refusal is raised with the outcomes attached as ``.outcomes``."""
    outcomes: list[int | CommandError] = []
    first: CommandError | None = None
    for command, event in zip(commands, events, strict=True):
        if type(event) is Inserted:
            outcomes.append(event.id)
        elif success is not None and type(event) is success:
            outcomes.append(command.id)  # type: ignore[attr-defined]
        elif success is None and (type(event) is Using or type(event) is Watching):
            outcomes.append(0)
        else:
            error = error_for_event(event)
            if not isinstance(error, CommandError):
                raise error
            outcomes.append(error)
            if first is None:
                first = error
    if first is not None:
        first.outcomes = outcomes
        raise first
    return outcomes
