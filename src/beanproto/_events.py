"""Typed events: what the server said, one class per reply.

Theory of operation: every reply of beanstalkd 1.10-1.13 becomes one frozen,
slotted dataclass named after its reply word, so callers compare events with
``==`` and match them with ``isinstance`` or ``match``. Refusals such as
``NOT_FOUND`` are ordinary events here (the core does not raise for them);
:func:`beanproto.error_for_event` turns them into exceptions for the adapters.
``OK`` replies become their parsed payload (``ServerStats``, ``JobStats``,
``TubeStats`` from ``_stats``, or :class:`TubeList`). ``NEED_DATA`` is an enum
member, so a type checker narrows ``event is NEED_DATA`` without casts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ._errors import (
    BadFormatError,
    BrokenConnectionError,
    BuriedError,
    CommandError,
    DeadlineSoonError,
    DrainingError,
    Error,
    ExpectedCrlfError,
    InternalServerError,
    JobTooBigError,
    NotFoundError,
    NotIgnoredError,
    OutOfMemoryError,
    RemoteProtocolError,
    TimedOutError,
    UnknownCommandError,
)
from ._slots import slot_setter
from ._stats import JobStats, ServerStats, TubeStats

__all__ = [
    "NEED_DATA",
    "BadFormat",
    "Buried",
    "ConnectionClosed",
    "DeadlineSoon",
    "Deleted",
    "Draining",
    "Event",
    "ExpectedCrlf",
    "Found",
    "Inserted",
    "InternalError",
    "JobTooBig",
    "Kicked",
    "NeedData",
    "NotFound",
    "NotIgnored",
    "OutOfMemory",
    "Paused",
    "Released",
    "Reserved",
    "TimedOut",
    "Touched",
    "TubeList",
    "UnknownCommand",
    "Using",
    "Watching",
    "error_for_event",
]


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.value


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by :meth:`Connection.next_event` when more bytes are needed (compare with ``is``)."""
NeedData = Literal[_Sentinel.NEED_DATA]
"""The type of :data:`NEED_DATA`, for annotations: ``Event | NeedData``."""


# The three events that come by the hundred thousand (a put's, a reserve's and a
# peek's) have a hand-written __init__ that sets their slots directly: the
# generated frozen one goes through object.__setattr__ once per field, which
# costs more than the rest of reading the reply. They stay frozen all the same.


@dataclass(frozen=True, slots=True, init=False)
class Inserted:
    """``INSERTED <id>``: ``put`` created job ``id``."""

    id: int

    def __init__(self, id: int) -> None:
        _set_inserted_id(self, id)


_set_inserted_id = slot_setter(Inserted, "id")


@dataclass(frozen=True, slots=True)
class Buried:
    """``BURIED`` (after ``bury`` or ``release``) or ``BURIED <id>`` (after ``put``,
    when the server was out of memory; the job exists, buried)."""

    id: int | None = None


@dataclass(frozen=True, slots=True)
class Using:
    """``USING <tube>``: the tube this connection puts into."""

    tube: str


@dataclass(frozen=True, slots=True, init=False)
class Reserved:
    """``RESERVED <id> <bytes>``: this connection now holds job ``id``."""

    id: int
    body: bytes

    def __init__(self, id: int, body: bytes) -> None:
        _set_reserved_id(self, id)
        _set_reserved_body(self, body)


_set_reserved_id = slot_setter(Reserved, "id")
_set_reserved_body = slot_setter(Reserved, "body")


@dataclass(frozen=True, slots=True, init=False)
class Found:
    """``FOUND <id> <bytes>``: the job a ``peek`` asked for."""

    id: int
    body: bytes

    def __init__(self, id: int, body: bytes) -> None:
        _set_found_id(self, id)
        _set_found_body(self, body)


_set_found_id = slot_setter(Found, "id")
_set_found_body = slot_setter(Found, "body")


@dataclass(frozen=True, slots=True)
class DeadlineSoon:
    """``DEADLINE_SOON``: a held job is within a second of its TTR; the reserve ended."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """``TIMED_OUT``: ``reserve-with-timeout`` found no job in time."""


@dataclass(frozen=True, slots=True)
class Deleted:
    """``DELETED``."""


@dataclass(frozen=True, slots=True)
class Released:
    """``RELEASED``."""


@dataclass(frozen=True, slots=True)
class Touched:
    """``TOUCHED``."""


@dataclass(frozen=True, slots=True)
class Kicked:
    """``KICKED <count>`` after ``kick``; ``KICKED`` (``count`` is ``None``) after ``kick-job``."""

    count: int | None = None


@dataclass(frozen=True, slots=True)
class Watching:
    """``WATCHING <count>``: the size of the watch list after ``watch`` or ``ignore``."""

    count: int


@dataclass(frozen=True, slots=True)
class Paused:
    """``PAUSED``."""


@dataclass(frozen=True, slots=True)
class NotFound:
    """``NOT_FOUND``."""


@dataclass(frozen=True, slots=True)
class NotIgnored:
    """``NOT_IGNORED``: the tube is the last one watched."""


@dataclass(frozen=True, slots=True)
class ExpectedCrlf:
    """``EXPECTED_CRLF``."""


@dataclass(frozen=True, slots=True)
class JobTooBig:
    """``JOB_TOO_BIG``: the body exceeds the server's ``max-job-size``."""


@dataclass(frozen=True, slots=True)
class Draining:
    """``DRAINING``: the server accepts no new jobs."""


@dataclass(frozen=True, slots=True)
class BadFormat:
    """``BAD_FORMAT``."""


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """``UNKNOWN_COMMAND``."""


@dataclass(frozen=True, slots=True)
class OutOfMemory:
    """``OUT_OF_MEMORY``."""


@dataclass(frozen=True, slots=True)
class InternalError:
    """``INTERNAL_ERROR``."""


@dataclass(frozen=True, slots=True)
class TubeList:
    """The tube names of ``list-tubes`` or ``list-tubes-watched``, in the server's order."""

    tubes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The server closed the connection cleanly (nothing was owed, or after ``quit``)."""


Event: TypeAlias = (
    Inserted
    | Buried
    | Using
    | Reserved
    | Found
    | DeadlineSoon
    | TimedOut
    | Deleted
    | Released
    | Touched
    | Kicked
    | Watching
    | Paused
    | NotFound
    | NotIgnored
    | ExpectedCrlf
    | JobTooBig
    | Draining
    | BadFormat
    | UnknownCommand
    | OutOfMemory
    | InternalError
    | ServerStats
    | JobStats
    | TubeStats
    | TubeList
    | ConnectionClosed
)
"""Any one of the event classes, i.e. what :meth:`Connection.next_event` returns
besides :data:`NEED_DATA`."""


_REFUSALS: Final[dict[type[object], type[CommandError]]] = {
    NotFound: NotFoundError,
    TimedOut: TimedOutError,
    DeadlineSoon: DeadlineSoonError,
    NotIgnored: NotIgnoredError,
    ExpectedCrlf: ExpectedCrlfError,
    JobTooBig: JobTooBigError,
    Draining: DrainingError,
    BadFormat: BadFormatError,
    UnknownCommand: UnknownCommandError,
    OutOfMemory: OutOfMemoryError,
    InternalError: InternalServerError,
}


def error_for_event(event: Event) -> Error:
    """The exception an adapter raises for an event its call did not hope for.

    Refusals map to their :class:`CommandError` subclass (``Buried`` to
    :class:`BuriedError` carrying the id, if any); :class:`ConnectionClosed`
    maps to :class:`BrokenConnectionError`; anything else (which the reply table
    makes impossible) to :class:`RemoteProtocolError`.
    """
    if type(event) is Buried:
        return BuriedError(event.id)
    cls = _REFUSALS.get(type(event))
    if cls is not None:
        return cls(cls.reply)
    if type(event) is ConnectionClosed:
        return BrokenConnectionError("the server closed the connection")
    return RemoteProtocolError(f"unexpected reply {event!r}")
