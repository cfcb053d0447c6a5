"""Commands: what the client asks, one frozen class per protocol command.

Theory of operation: a command validates its arguments when it is built, so an
invalid one cannot exist and nothing invalid can reach the wire. The rules are
the server's (protocol-notes §4): tube names of 1-200 bytes from
``A-Za-z0-9-+/;.$_()`` not starting with ``-``; priorities, delays, TTRs and
kick bounds 0..2**32-1; ids 0..2**64-1; reserve timeouts 0..2**31-1 (the
portable range; older servers read the value as a signed int). Numbers are
written as plain unsigned decimal, which every version parses the same way.
``bool`` is refused where an ``int`` is expected (``True`` is never meant as
priority 1), and bodies must be bytes-like: text needs an explicit encoding,
which is the adapters' business. Every command is a plain frozen dataclass
that checks its fields in ``__post_init__``; ``_encode`` writes its bytes
(``Connection.send`` calls it). With valid arguments no line can exceed the
server's 224-byte line buffer, and ``_encode_line`` asserts it anyway because a
225-byte line makes the server swallow the next command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from ._errors import InvalidArgument
from ._slots import slot_setter

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_TTR",
    "DEFAULT_TUBE",
    "MAX_LINE_SIZE",
    "MAX_LINE_SIZE_1_10",
    "MAX_RESERVE_TIMEOUT",
    "MAX_U32",
    "MAX_U64",
    "AnyCommand",
    "Bury",
    "Command",
    "Delete",
    "Ignore",
    "Kick",
    "KickJob",
    "ListTubeUsed",
    "ListTubes",
    "ListTubesWatched",
    "PauseTube",
    "Peek",
    "PeekBuried",
    "PeekDelayed",
    "PeekReady",
    "Put",
    "Quit",
    "Release",
    "Reserve",
    "ReserveJob",
    "ReserveWithTimeout",
    "Stats",
    "StatsJob",
    "StatsTube",
    "Touch",
    "Use",
    "Watch",
    "check_tube",
]

DEFAULT_PRIORITY: Final = 2**16
"""The priority of a job when none is given (65536; 0 is the most urgent)."""
DEFAULT_TTR: Final = 60
"""The time to run of a job when none is given, in seconds."""
DEFAULT_TUBE: Final = "default"
"""The tube a new connection uses and watches."""
MAX_U32: Final = 2**32 - 1
"""The largest priority, delay, ttr, kick bound or pause delay."""
MAX_U64: Final = 2**64 - 1
"""The largest job id."""
MAX_RESERVE_TIMEOUT: Final = 2**31 - 1
"""The largest ``reserve-with-timeout`` timeout, in seconds."""
MAX_LINE_SIZE: Final = 224
"""The server's line buffer, CRLF included (``LINE_BUF_SIZE`` in beanstalkd): the
longest command line it accepts."""
MAX_LINE_SIZE_1_10: Final = 208
"""The line buffer of beanstalkd 1.10, CRLF included: give it to a client of a 1.10
server as ``max_command_size`` (see :class:`~beanproto.Connection`)."""

_TUBE_NAME = re.compile(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()\-]{0,199}")


def check_tube(tube: object) -> str:
    """Return ``tube`` if it is a valid tube name, else raise.

    Raises ``TypeError`` for a non-``str`` and :class:`InvalidArgument` for a
    name the server would refuse (or that could smuggle another command).
    """
    if not isinstance(tube, str):
        raise TypeError(f"a tube name must be a str, not {type(tube).__name__}")
    if _TUBE_NAME.fullmatch(tube) is None:
        raise InvalidArgument(
            f"invalid tube name {tube[:40]!r}{'...' if len(tube) > 40 else ''}: a tube name "
            "is 1 to 200 characters from A-Z a-z 0-9 - + / ; . $ _ ( ) and does not start "
            "with '-'"
        )
    return tube


def _check_int(what: str, value: object, maximum: int) -> None:
    if type(value) is int:
        number = value
    elif isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    else:
        # An int subclass (an IntEnum, say) may override its comparisons; "%d"
        # formats the int it holds, so that is what is checked.
        number = int.__index__(value)
    if not 0 <= number <= maximum:
        raise InvalidArgument(f"{what} must be between 0 and {maximum}, got {number}")


def _encode_line(line: bytes) -> bytes:
    if len(line) > MAX_LINE_SIZE - 2:  # pragma: no cover - unreachable with valid arguments
        raise InvalidArgument(f"command line of {len(line) + 2} bytes exceeds {MAX_LINE_SIZE}")
    return line + b"\r\n"


class Command:
    """Base class of every command. Instances are immutable and already valid."""

    __slots__ = ()

    #: The protocol's name of the command, e.g. ``"reserve-with-timeout"``.
    verb: ClassVar[str]

    def _encode(self) -> bytes:
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True, slots=True, init=False)
class Put(Command):
    """``put``: insert a job into the used tube. ``body`` must be bytes-like (a
    ``bytearray`` or ``memoryview`` is copied to ``bytes``)."""

    body: bytes
    priority: int = DEFAULT_PRIORITY
    delay: int = 0
    ttr: int = DEFAULT_TTR

    verb: ClassVar[str] = "put"

    # Written by hand, through the slots, because producers build one per job:
    # the generated frozen __init__ goes through object.__setattr__ per field,
    # and the common case is checked in one expression.
    def __init__(
        self,
        body: bytes,
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
    ) -> None:
        if type(body) is not bytes:
            body = _as_body(body)
        if not (
            type(priority) is int
            and type(delay) is int
            and type(ttr) is int
            and 0 <= priority <= MAX_U32
            and 0 <= delay <= MAX_U32
            and 0 <= ttr <= MAX_U32
        ):
            _check_int("priority", priority, MAX_U32)
            _check_int("delay", delay, MAX_U32)
            _check_int("ttr", ttr, MAX_U32)
        _set_put_body(self, body)
        _set_put_priority(self, priority)
        _set_put_delay(self, delay)
        _set_put_ttr(self, ttr)

    def _encode(self) -> bytes:
        body = self.body
        return b"put %d %d %d %d\r\n%b\r\n" % (
            self.priority,
            self.delay,
            self.ttr,
            len(body),
            body,
        )


def _as_body(body: object) -> bytes:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        hint = (
            " (encode text first, or give the client an encoding)" if isinstance(body, str) else ""
        )
        raise TypeError(f"a job body must be bytes-like, not {type(body).__name__}{hint}")
    return bytes(body)


_set_put_body = slot_setter(Put, "body")
_set_put_priority = slot_setter(Put, "priority")
_set_put_delay = slot_setter(Put, "delay")
_set_put_ttr = slot_setter(Put, "ttr")


class _TubeCommand(Command):
    __slots__ = ()
    tube: str

    def __post_init__(self) -> None:
        check_tube(self.tube)

    def _encode(self) -> bytes:
        # str.encode, not the method: a str subclass cannot write other bytes.
        return _encode_line(b"%s %s" % (self.verb.encode(), str.encode(self.tube, "ascii")))


class _IdCommand(Command):
    __slots__ = ()
    id: int

    def __post_init__(self) -> None:
        id = self.id
        if type(id) is not int or not 0 <= id <= MAX_U64:
            _check_int("a job id", id, MAX_U64)

    def _encode(self) -> bytes:
        return b"%s %d\r\n" % (self.verb.encode(), self.id)


class _BareCommand(Command):
    __slots__ = ()

    def _encode(self) -> bytes:
        return self.verb.encode() + b"\r\n"


@dataclass(frozen=True, slots=True)
class Use(_TubeCommand):
    """``use``: put later jobs into ``tube`` (created if needed)."""

    tube: str
    verb: ClassVar[str] = "use"


@dataclass(frozen=True, slots=True)
class Reserve(_BareCommand):
    """``reserve``: wait, however long it takes, for a job from a watched tube.

    While it waits the server reads nothing else from this connection.
    """

    verb: ClassVar[str] = "reserve"


@dataclass(frozen=True, slots=True)
class ReserveWithTimeout(Command):
    """``reserve-with-timeout``: wait up to ``timeout`` whole seconds (0 polls)."""

    timeout: int
    verb: ClassVar[str] = "reserve-with-timeout"

    def __post_init__(self) -> None:
        _check_int("a reserve timeout", self.timeout, MAX_RESERVE_TIMEOUT)

    def _encode(self) -> bytes:
        return b"reserve-with-timeout %d\r\n" % self.timeout


@dataclass(frozen=True, slots=True)
class ReserveJob(_IdCommand):
    """``reserve-job`` (beanstalkd 1.12+): reserve job ``id`` whatever its tube or state."""

    id: int
    verb: ClassVar[str] = "reserve-job"


@dataclass(frozen=True, slots=True)
class Delete(_IdCommand):
    """``delete``: remove job ``id``."""

    id: int
    verb: ClassVar[str] = "delete"


@dataclass(frozen=True, slots=True)
class Release(Command):
    """``release``: put a reserved job back as ready (or delayed by ``delay`` seconds)."""

    id: int
    priority: int = DEFAULT_PRIORITY
    delay: int = 0
    verb: ClassVar[str] = "release"

    def __post_init__(self) -> None:
        _check_int("a job id", self.id, MAX_U64)
        _check_int("priority", self.priority, MAX_U32)
        _check_int("delay", self.delay, MAX_U32)

    def _encode(self) -> bytes:
        return b"release %d %d %d\r\n" % (self.id, self.priority, self.delay)


@dataclass(frozen=True, slots=True)
class Bury(Command):
    """``bury``: set a reserved job aside until it is kicked."""

    id: int
    priority: int = DEFAULT_PRIORITY
    verb: ClassVar[str] = "bury"

    def __post_init__(self) -> None:
        _check_int("a job id", self.id, MAX_U64)
        _check_int("priority", self.priority, MAX_U32)

    def _encode(self) -> bytes:
        return b"bury %d %d\r\n" % (self.id, self.priority)


@dataclass(frozen=True, slots=True)
class Touch(_IdCommand):
    """``touch``: restart the TTR of a reserved job."""

    id: int
    verb: ClassVar[str] = "touch"


@dataclass(frozen=True, slots=True)
class Watch(_TubeCommand):
    """``watch``: add ``tube`` to the watch list (created if needed)."""

    tube: str
    verb: ClassVar[str] = "watch"


@dataclass(frozen=True, slots=True)
class Ignore(_TubeCommand):
    """``ignore``: remove ``tube`` from the watch list."""

    tube: str
    verb: ClassVar[str] = "ignore"


@dataclass(frozen=True, slots=True)
class Peek(_IdCommand):
    """``peek``: look at job ``id`` in any tube and state."""

    id: int
    verb: ClassVar[str] = "peek"


@dataclass(frozen=True, slots=True)
class PeekReady(_BareCommand):
    """``peek-ready``: the next ready job of the used tube."""

    verb: ClassVar[str] = "peek-ready"


@dataclass(frozen=True, slots=True)
class PeekDelayed(_BareCommand):
    """``peek-delayed``: the delayed job of the used tube that becomes ready first."""

    verb: ClassVar[str] = "peek-delayed"


@dataclass(frozen=True, slots=True)
class PeekBuried(_BareCommand):
    """``peek-buried``: the oldest buried job of the used tube."""

    verb: ClassVar[str] = "peek-buried"


@dataclass(frozen=True, slots=True)
class Kick(Command):
    """``kick``: move up to ``bound`` buried (or, if none, delayed) jobs of the used
    tube to ready."""

    bound: int
    verb: ClassVar[str] = "kick"

    def __post_init__(self) -> None:
        _check_int("a kick bound", self.bound, MAX_U32)

    def _encode(self) -> bytes:
        return b"kick %d\r\n" % self.bound


@dataclass(frozen=True, slots=True)
class KickJob(_IdCommand):
    """``kick-job``: move buried or delayed job ``id`` to ready."""

    id: int
    verb: ClassVar[str] = "kick-job"


@dataclass(frozen=True, slots=True)
class StatsJob(_IdCommand):
    """``stats-job``: the statistics of job ``id``."""

    id: int
    verb: ClassVar[str] = "stats-job"


@dataclass(frozen=True, slots=True)
class StatsTube(_TubeCommand):
    """``stats-tube``: the statistics of ``tube``."""

    tube: str
    verb: ClassVar[str] = "stats-tube"


@dataclass(frozen=True, slots=True)
class Stats(_BareCommand):
    """``stats``: the server's statistics."""

    verb: ClassVar[str] = "stats"


@dataclass(frozen=True, slots=True)
class ListTubes(_BareCommand):
    """``list-tubes``: every existing tube."""

    verb: ClassVar[str] = "list-tubes"


@dataclass(frozen=True, slots=True)
class ListTubeUsed(_BareCommand):
    """``list-tube-used``: the tube this connection puts into."""

    verb: ClassVar[str] = "list-tube-used"


@dataclass(frozen=True, slots=True)
class ListTubesWatched(_BareCommand):
    """``list-tubes-watched``: this connection's watch list."""

    verb: ClassVar[str] = "list-tubes-watched"


@dataclass(frozen=True, slots=True)
class PauseTube(Command):
    """``pause-tube``: reserves skip ``tube`` for ``delay`` seconds (0 ends a pause)."""

    tube: str
    delay: int
    verb: ClassVar[str] = "pause-tube"

    def __post_init__(self) -> None:
        check_tube(self.tube)
        _check_int("delay", self.delay, MAX_U32)

    def _encode(self) -> bytes:
        return _encode_line(b"pause-tube %s %d" % (str.encode(self.tube, "ascii"), self.delay))


@dataclass(frozen=True, slots=True)
class Quit(_BareCommand):
    """``quit``: the server closes the connection; it sends no reply."""

    verb: ClassVar[str] = "quit"


AnyCommand: TypeAlias = (
    Put
    | Use
    | Reserve
    | ReserveWithTimeout
    | ReserveJob
    | Delete
    | Release
    | Bury
    | Touch
    | Watch
    | Ignore
    | Peek
    | PeekReady
    | PeekDelayed
    | PeekBuried
    | Kick
    | KickJob
    | StatsJob
    | StatsTube
    | Stats
    | ListTubes
    | ListTubeUsed
    | ListTubesWatched
    | PauseTube
    | Quit
)
"""Any one of the command classes (for type annotations and ``match``)."""
