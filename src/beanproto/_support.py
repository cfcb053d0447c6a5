"""What both adapters share beyond the protocol engine itself.

Theory of operation: ``beanproto_sync`` and ``beanproto_anyio`` are two thin
drivers of :class:`beanproto.Connection` with the same API. Everything they do
alike that is not I/O lives here once: turning ``use``/``watch`` into the
commands sent at connect time, a ``reserve`` timeout into its command, a reply
into a :class:`Job`, the replies of a pipelined batch into per-command
outcomes, and the TCP options both set. This module is not imported by
``beanproto`` itself, so the core stays free of sockets.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ._commands import (
    DEFAULT_TUBE,
    MAX_RESERVE_TIMEOUT,
    Command,
    Ignore,
    Reserve,
    ReserveWithTimeout,
    Use,
    Watch,
    check_put,
    slot_setter,
)
from ._errors import BodyDecodeError, CommandError, InvalidArgument
from ._events import Event, Found, Inserted, Reserved, Using, Watching, error_for_event
from ._job import Job

__all__ = [
    "KEEPALIVE",
    "batch_outcomes",
    "job_from_event",
    "job_id",
    "put_body",
    "reserve_command",
    "set_tcp_options",
    "setup_commands",
]

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
    """``TCP_NODELAY`` and keepalive on a TCP socket; other sockets are left alone."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):  # a platform without that option
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def job_id(job_or_id: Job[Any] | int) -> int:
    """The id of a :class:`Job`, or the id itself."""
    return job_or_id.id if isinstance(job_or_id, Job) else job_or_id


def setup_commands(use: str | None, watch: str | Iterable[str] | None) -> list[Command]:
    """The commands a client sends at connect time for ``use=`` and ``watch=``.

    ``watch`` is a tube or an iterable of tubes; without ``"default"`` in it,
    ``default`` is ignored. Built (and so validated) before connecting.
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


_RESERVE: Final = Reserve()
_POLL: Final = ReserveWithTimeout(0)


def put_body(body: object, encoding: str | None, priority: int, delay: int, ttr: int) -> bytes:
    """A put's body as ``bytes``, for one that is not already: a ``str`` encoded
    with the client's ``encoding`` (``UnicodeEncodeError`` if it cannot be),
    another bytes-like copied. Anything else raises as :func:`check_put` does,
    which then also checks the numbers (a ``str`` without an encoding is a
    ``TypeError``)."""
    if type(body) is str and encoding is not None:
        return body.encode(encoding)
    return check_put(body, priority, delay, ttr)


def reserve_command(timeout: float | None) -> Reserve | ReserveWithTimeout:
    """``reserve`` for ``None``, else ``reserve-with-timeout`` with the seconds
    rounded up (0 polls)."""
    if timeout is None:
        return _RESERVE
    if timeout == 0 and type(timeout) is int:
        return _POLL  # commands are immutable: the common ones are built once
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0 <= timeout <= MAX_RESERVE_TIMEOUT:  # NaN fails this too
        raise InvalidArgument(
            f"timeout must be between 0 and {MAX_RESERVE_TIMEOUT} seconds, got {timeout}"
        )
    return ReserveWithTimeout(math.ceil(timeout))


# Jobs are frozen dataclasses; a worker builds one per reserve, so build them
# through their slots (as the core does its hot events) rather than __init__.
_new = object.__new__
_set_job_id: Final = slot_setter(Job, "id")
_set_job_body: Final = slot_setter(Job, "body")


def job_from_event(event: Event, encoding: str | None) -> Job[Any]:
    """The job a ``RESERVED``/``FOUND`` reply carries, its body decoded if an
    ``encoding`` is given (:class:`BodyDecodeError`, with the job's id, if it
    does not decode); any other reply raises its error."""
    if type(event) is Reserved or type(event) is Found:
        body = event.body
        if encoding is None:
            job: Job[Any] = _new(Job)
            _set_job_id(job, event.id)
            _set_job_body(job, body)
            return job
        try:
            return Job(event.id, body.decode(encoding))
        except UnicodeDecodeError as exc:
            # The job is ours all the same: say which, so it can be dealt with.
            raise BodyDecodeError(event.id, body, encoding) from exc
    raise error_for_event(event)


def batch_outcomes(
    commands: Sequence[Command], events: Sequence[Event], success: type | None
) -> list[int | CommandError]:
    """The outcome of each command of a pipelined batch: the job id where it
    succeeded (``Inserted``, or ``success`` for commands with an ``id``; ``0``
    for the ``USING``/``WATCHING`` of a connect-time setup), else its
    :class:`CommandError`. If any command was refused, the first refusal is
    raised with the outcomes attached as ``.outcomes``."""
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
