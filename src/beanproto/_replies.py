"""The reply table: for each command type, the replies it may get.

Theory of operation: beanstalkd answers every command but ``quit`` with one reply,
and the same word can mean different things after different commands (``BURIED
<id>`` after ``put``, bare ``BURIED`` after ``bury``; ``KICKED <n>`` after ``kick``,
bare ``KICKED`` after ``kick-job``). So legality is data keyed by command type:
:data:`REPLIES` maps each type to its legal reply words, and each :class:`Reply`
says how many arguments the line carries, whether a counted body follows (its size
is the last argument) and how the event is built. A reply outside its command's
row is a :class:`RemoteProtocolError`.

:func:`parse_line` reads a reply line against its command's row. The replies that come
by the hundred thousand (``INSERTED`` after ``put``, ``RESERVED`` after a reserve,
``FOUND`` after a peek) also have a ``fast`` pattern, written beside its rule: one regex that
checks the word, the arity and that every number is 1-19 digits (so it fits in a
u64), in one call instead of a split, a look-up and a check per argument. A line
the pattern does not match takes the general rule, which also produces the
errors; a property test proves both give the same result for any line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from ._commands import (
    MAX_U64,
    Bury,
    Command,
    Delete,
    Ignore,
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
    Quit,
    Release,
    Reserve,
    ReserveJob,
    ReserveWithTimeout,
    Stats,
    StatsJob,
    StatsTube,
    Touch,
    Use,
    Watch,
    check_tube,
)
from ._errors import InvalidArgument, RemoteProtocolError
from ._events import (
    BadFormat,
    Buried,
    DeadlineSoon,
    Deleted,
    Draining,
    Event,
    ExpectedCrlf,
    Found,
    Inserted,
    InternalError,
    JobTooBig,
    Kicked,
    NotFound,
    NotIgnored,
    OutOfMemory,
    Paused,
    Released,
    Reserved,
    TimedOut,
    Touched,
    TubeList,
    UnknownCommand,
    Using,
    Watching,
)
from ._stats import parse_job_stats, parse_server_stats, parse_tube_list, parse_tube_stats

__all__ = ["REPLIES", "USUAL", "Args", "Build", "Reply", "parse_line"]

Args = tuple["int | str", ...]
Build = Callable[[Command, Args, bytes], Event]
"""Builds a reply's event from its command, its arguments and its body (``b""``
when none follows)."""


class Reply(NamedTuple):
    """One legal reply to a command: a row entry of :data:`REPLIES`."""

    word: bytes
    """The reply word, e.g. ``b"INSERTED"``."""
    arity: int
    """How many arguments follow the word on the line."""
    body: bool
    """Whether a counted body follows the line (its size is the last argument)."""
    build: Build
    """Builds the event from the command, the arguments and the body."""
    numbers: bool = True
    """Whether the arguments are unsigned numbers (else one tube name)."""
    fast: Callable[[bytes, int], re.Match[bytes] | None] | None = None
    """The reply's whole line, CRLF included, as one pattern (its ``match``) whose
    groups are its arguments: tried by the reader before the general rule."""
    event: Callable[..., Event] | None = None
    """With ``fast``: the event class, built from the job id and the body (if
    any), as ``build`` builds it."""


def _bad_number(token: bytes, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"the server sent {token[:30]!r} where {what} belongs")


def _number(token: bytes) -> int:
    # bytes.isdigit is ASCII-only; int() alone would accept "+1", " 1" and "1_0".
    if not token.isdigit() or len(token) > 20:
        raise _bad_number(token, "a number")
    value = int(token)
    if value > MAX_U64:
        raise _bad_number(token, "a number")
    return value


def _const(word: bytes, event: Event) -> Reply:
    """A reply without arguments, whose event is always the same one."""

    def build(cmd: Command, args: Args, body: bytes) -> Event:
        return event

    return Reply(word, 0, False, build)


# -- the replies, each with its rule and, for a usual reply, its fast pattern ---------

_NUMBER: Final = rb"([0-9]{1,19})"


def _fast(word: bytes, arity: int) -> Callable[[bytes, int], re.Match[bytes] | None]:
    return re.compile(b" ".join([word] + [_NUMBER] * arity) + b"\r\n").match


def _inserted(cmd: Command, args: Args, body: bytes) -> Event:
    return Inserted(args[0])  # type: ignore[arg-type]


INSERTED: Final = Reply(
    b"INSERTED", 1, False, _inserted, fast=_fast(b"INSERTED", 1), event=Inserted
)


def _reserved(cmd: Command, args: Args, body: bytes) -> Event:
    return Reserved(args[0], body)  # type: ignore[arg-type]


RESERVED: Final = Reply(b"RESERVED", 2, True, _reserved, fast=_fast(b"RESERVED", 2), event=Reserved)


def _found(cmd: Command, args: Args, body: bytes) -> Event:
    return Found(args[0], body)  # type: ignore[arg-type]


FOUND: Final = Reply(b"FOUND", 2, True, _found, fast=_fast(b"FOUND", 2), event=Found)


def _buried_id(cmd: Command, args: Args, body: bytes) -> Event:
    return Buried(args[0])  # type: ignore[arg-type]


def _using(cmd: Command, args: Args, body: bytes) -> Event:
    tube = args[0]
    assert isinstance(tube, str)
    if type(cmd) is Use and tube != cmd.tube:
        raise RemoteProtocolError(f"'use {cmd.tube}' was answered with USING {tube!r}")
    return Using(tube)


def _watching(cmd: Command, args: Args, body: bytes) -> Event:
    return Watching(args[0])  # type: ignore[arg-type]


def _kicked(cmd: Command, args: Args, body: bytes) -> Event:
    return Kicked(args[0])  # type: ignore[arg-type]


def _tube_list(cmd: Command, args: Args, body: bytes) -> Event:
    return TubeList(parse_tube_list(body))


def _server_stats(cmd: Command, args: Args, body: bytes) -> Event:
    return parse_server_stats(body)


def _tube_stats(cmd: Command, args: Args, body: bytes) -> Event:
    return parse_tube_stats(body)


def _job_stats(cmd: Command, args: Args, body: bytes) -> Event:
    return parse_job_stats(body, cmd.id if type(cmd) is StatsJob else None)


NOT_FOUND: Final = _const(b"NOT_FOUND", NotFound())
USING: Final = Reply(b"USING", 1, False, _using, numbers=False)
WATCHING: Final = Reply(b"WATCHING", 1, False, _watching)
OK_TUBES: Final = Reply(b"OK", 1, True, _tube_list)


def _row(*replies: Reply) -> Mapping[bytes, Reply]:
    # The general errors can follow any command but quit.
    general = (
        _const(b"BAD_FORMAT", BadFormat()),
        _const(b"UNKNOWN_COMMAND", UnknownCommand()),
        _const(b"OUT_OF_MEMORY", OutOfMemory()),
        _const(b"INTERNAL_ERROR", InternalError()),
    )
    return {reply.word: reply for reply in (*replies, *general)}


_RESERVE_ROW: Final = _row(
    RESERVED, _const(b"DEADLINE_SOON", DeadlineSoon()), _const(b"TIMED_OUT", TimedOut())
)
_PEEK_ROW: Final = _row(FOUND, NOT_FOUND)

REPLIES: Final[Mapping[type[Command], Mapping[bytes, Reply]]] = {
    Put: _row(
        INSERTED,
        Reply(b"BURIED", 1, False, _buried_id),
        _const(b"EXPECTED_CRLF", ExpectedCrlf()),
        _const(b"JOB_TOO_BIG", JobTooBig()),
        _const(b"DRAINING", Draining()),
    ),
    Use: _row(USING),
    Reserve: _RESERVE_ROW,
    ReserveWithTimeout: _RESERVE_ROW,
    ReserveJob: _row(RESERVED, NOT_FOUND),
    Delete: _row(_const(b"DELETED", Deleted()), NOT_FOUND),
    Release: _row(_const(b"RELEASED", Released()), _const(b"BURIED", Buried()), NOT_FOUND),
    Bury: _row(_const(b"BURIED", Buried()), NOT_FOUND),
    Touch: _row(_const(b"TOUCHED", Touched()), NOT_FOUND),
    Watch: _row(WATCHING),
    Ignore: _row(WATCHING, _const(b"NOT_IGNORED", NotIgnored())),
    Peek: _PEEK_ROW,
    PeekReady: _PEEK_ROW,
    PeekDelayed: _PEEK_ROW,
    PeekBuried: _PEEK_ROW,
    Kick: _row(Reply(b"KICKED", 1, False, _kicked)),
    KickJob: _row(_const(b"KICKED", Kicked()), NOT_FOUND),
    StatsJob: _row(Reply(b"OK", 1, True, _job_stats), NOT_FOUND),
    StatsTube: _row(Reply(b"OK", 1, True, _tube_stats), NOT_FOUND),
    Stats: _row(Reply(b"OK", 1, True, _server_stats)),
    ListTubes: _row(OK_TUBES),
    ListTubeUsed: _row(USING),
    ListTubesWatched: _row(OK_TUBES),
    PauseTube: _row(_const(b"PAUSED", Paused()), NOT_FOUND),
    Quit: {},
}
"""Every command type's legal replies: reply word -> :class:`Reply`."""

#: Commands whose reply names the job id they asked for: checked on the header,
#: before a body of up to ``max_body_size`` is collected.
_ECHOES_ID: Final = frozenset({Peek, ReserveJob})

USUAL: Final[Mapping[type[Command], Reply]] = {
    kind: reply
    for kind, row in REPLIES.items()
    for reply in row.values()
    if reply.fast is not None and kind not in _ECHOES_ID
}
"""The reply a command usually gets, for the commands whose usual reply has a
fast pattern (one per row at most)."""


def parse_line(cmd: Command, line: bytes) -> tuple[Reply, Args]:
    """Read the reply line ``line`` (without its CRLF) as a reply to ``cmd``: its
    :class:`Reply` and its arguments (numbers as ``int``, a tube name as ``str``).

    Raises :class:`RemoteProtocolError` for a line that is not a legal reply to it.
    """
    kind = type(cmd)
    args: Args
    parts = line.split(b" ")
    reply = REPLIES[kind].get(parts[0])
    if reply is None:
        raise RemoteProtocolError(
            f"the server answered {cmd.verb!r} with {line[:60]!r}, which is not a reply to it"
        )
    if len(parts) != reply.arity + 1:
        raise RemoteProtocolError(
            f"the server answered {cmd.verb!r} with {line[:60]!r}: "
            f"{reply.word.decode()} takes {reply.arity} argument(s) there"
        )
    if not reply.numbers:
        args = (_tube(parts[1]),)
    else:
        args = tuple(map(_number, parts[1:]))
        if reply.body and kind in _ECHOES_ID:
            _check_id(cmd, args)
    return reply, args


def _check_id(cmd: Command, args: Args) -> None:
    asked: int = cmd.id  # type: ignore[attr-defined]
    if args[0] != asked:
        raise RemoteProtocolError(f"'{cmd.verb} {asked}' was answered with job {args[0]}")


def _tube(token: bytes) -> str:
    try:
        return check_tube(token.decode("ascii", "replace"))
    except InvalidArgument:
        raise RemoteProtocolError(f"the server sent an invalid tube name {token[:40]!r}") from None
