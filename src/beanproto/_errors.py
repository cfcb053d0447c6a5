"""The exception hierarchy shared by the core and both adapters.

Theory of operation: errors are split by who is at fault, as in h11.
``LocalProtocolError`` means the caller asked for something the protocol cannot
express (and nothing was written); ``RemoteProtocolError`` means the server sent
bytes that do not fit the protocol, after which the connection cannot be trusted.
``CommandError`` subclasses are the server's ordinary refusals (``NOT_FOUND`` and
friends): the core reports them as events, and :func:`error_for_event` is the one
place that turns such an event into the exception the adapters raise.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._job import JobRef

__all__ = [
    "BadFormatError",
    "BodyDecodeError",
    "BrokenConnectionError",
    "BuriedError",
    "CommandError",
    "DeadlineSoonError",
    "DrainingError",
    "Error",
    "ExpectedCrlfError",
    "InternalServerError",
    "InvalidArgument",
    "JobTooBigError",
    "LocalProtocolError",
    "NotFoundError",
    "NotIgnoredError",
    "OutOfMemoryError",
    "ProtocolError",
    "RemoteProtocolError",
    "TimedOutError",
    "UnknownCommandError",
]


class Error(Exception):
    """Base class of every exception beanproto raises on purpose."""


class ProtocolError(Error):
    """The conversation with the server broke the protocol's rules."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol cannot express, or asked at a
    time when the connection cannot do it. Nothing was sent."""


class InvalidArgument(LocalProtocolError, ValueError):
    """An argument of a command is out of range or not allowed on the wire.

    Raised before any byte is produced, so the connection is unchanged.
    """


class RemoteProtocolError(ProtocolError):
    """The server sent something that does not fit the protocol.

    The connection is unusable afterwards.
    """


class CommandError(Error):
    """The server refused a command. The connection stays usable.

    Raised by a pipelined batch (``put_many``, ``delete_many``), it is the first
    refusal of the batch, raised after every reply was read, and
    :attr:`outcomes` holds one entry per command: the job id (``int``) where the
    command succeeded, or that command's :class:`CommandError`.
    """

    reply: ClassVar[str] = ""
    """The reply word the server sent, e.g. ``"NOT_FOUND"``."""
    outcomes: list[int | CommandError] | None = None
    """Per-command outcomes when raised by a pipelined batch (a job id, or that
    command's refusal), else ``None``."""


class NotFoundError(CommandError):
    """``NOT_FOUND``: no such job or tube, or the job is not in a state that allows it."""

    reply = "NOT_FOUND"


class TimedOutError(CommandError):
    """``TIMED_OUT``: a reserve with a timeout found no job in time."""

    reply = "TIMED_OUT"


class DeadlineSoonError(CommandError):
    """``DEADLINE_SOON``: a job this connection holds is within a second of its TTR.

    The reserve is over; touch, delete, release or bury that job, then reserve again.
    """

    reply = "DEADLINE_SOON"


class BuriedError(CommandError):
    """``BURIED``: the server buried the job instead of doing what was asked.

    After ``put`` the job exists, buried, and :attr:`id` is its id; after
    ``release`` the id is not in the reply and :attr:`id` is ``None``.
    """

    reply = "BURIED"

    def __init__(self, id: int | None = None) -> None:
        msg = "the server buried the job" if id is None else f"the server buried job {id}"
        super().__init__(msg)
        self.id = id

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle (and copy) by the constructor's arguments, not by the message.
        return (type(self), (self.id,), self.__dict__)


class NotIgnoredError(CommandError):
    """``NOT_IGNORED``: ignoring that tube would leave the watch list empty."""

    reply = "NOT_IGNORED"


class ExpectedCrlfError(CommandError):
    """``EXPECTED_CRLF``: the job body was not followed by CRLF."""

    reply = "EXPECTED_CRLF"


class JobTooBigError(CommandError):
    """``JOB_TOO_BIG``: the body is larger than the server's ``max-job-size``."""

    reply = "JOB_TOO_BIG"


class DrainingError(CommandError):
    """``DRAINING``: the server is in drain mode and accepts no new jobs."""

    reply = "DRAINING"


class BadFormatError(CommandError):
    """``BAD_FORMAT``: the server could not parse the command."""

    reply = "BAD_FORMAT"


class UnknownCommandError(CommandError):
    """``UNKNOWN_COMMAND``: the server does not know the command."""

    reply = "UNKNOWN_COMMAND"


class OutOfMemoryError(CommandError):
    """``OUT_OF_MEMORY``: the server could not allocate memory; try again later."""

    reply = "OUT_OF_MEMORY"


class InternalServerError(CommandError):
    """``INTERNAL_ERROR``: a server bug or a failed binlog write."""

    reply = "INTERNAL_ERROR"


class BrokenConnectionError(Error, ConnectionError):
    """The connection can no longer be trusted and was closed.

    Raised by every call after an exchange was interrupted (timeout,
    cancellation, ``KeyboardInterrupt``, I/O error) or the server broke the
    protocol. Open a new client.

    It is also a ``ConnectionError`` (so an ``OSError``), like the socket errors
    it stands for: code that handles lost connections with ``except
    ConnectionError`` or ``except OSError`` handles it too. Its ``errno`` is
    ``None``; the socket error, if one caused it, is its ``__cause__``.
    """


class BodyDecodeError(Error, ValueError):
    """A job's body does not decode with the client's ``encoding``, or does not
    load with its ``serializer``.

    Raised by a reserve or peek of a client with an encoding or a serializer.
    The job was reserved (or peeked) all the same: :attr:`id` and the raw
    :attr:`body` let the caller bury, release or delete it; the
    ``UnicodeDecodeError`` (or whatever ``loads`` raised) is the ``__cause__``.
    :attr:`reason` says what failed (``"does not decode as utf-8"``,
    ``"does not load with json"``); :attr:`encoding` is the client's encoding
    and :attr:`serializer` its serializer (``None`` without one); :attr:`server`
    names the job's server when a pool reserved it (as :attr:`Job.server`), so
    that :attr:`ref` finds it there.
    """

    def __init__(
        self,
        id: int,
        body: bytes,
        encoding: str | None,
        serializer: object = None,
        server: str | None = None,
    ) -> None:
        if serializer is None:
            reason = f"does not decode as {encoding}"
        else:
            name = getattr(serializer, "__name__", None) or type(serializer).__name__
            reason = f"does not load with {name}"
        super().__init__(f"the body of job {id} {reason}")
        self.id = id
        self.body = body
        self.encoding = encoding
        self.serializer = serializer
        self.reason = reason
        self.server = server

    @property
    def ref(self) -> JobRef:
        """The job's :class:`JobRef` (its server and id), for a pool's
        ``bury``/``release``/``delete``."""
        return JobRef(self.server, self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        # The serializer (often a module) is not pickled; the message and reason are.
        state = {k: v for k, v in self.__dict__.items() if k != "serializer"}
        return (type(self), (self.id, self.body, self.encoding), state)
