"""The client side of one beanstalkd connection, as a state machine.

Theory of operation: beanstalkd answers every command but ``quit`` with exactly
one reply, in order, and never speaks unasked. So the connection keeps a FIFO of
the commands sent and not yet answered; each reply is read (``_readers``)
against the command at the head of that FIFO, whose row of the reply table
(``_replies.REPLIES``) decides which reply words are legal, how many arguments
each carries and whether a body follows. Anything outside the row is a
``RemoteProtocolError`` and the connection is dead from then on, because a
client that has lost count of replies would hand one caller another's answer.
``next_event`` hands out one event per call; the reader turns every complete
reply into an event at once, and an error it meets after good replies is raised
once those are out.

What the connection knows of the server-side state (used tube, watch list) is
updated from replies, not from requests, so it is true even when a request was
refused. ``send`` changes nothing until the command has been encoded, and
commands validate themselves when they are built, so a refused argument leaves
the connection exactly as it was. ``send_failed`` marks the connection broken:
once some of its bytes may be missing, no later reply can be trusted.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final

from ._buffer import ReceiveBuffer
from ._commands import (
    DEFAULT_TUBE,
    MAX_LINE_SIZE,
    Command,
    Ignore,
    ListTubesWatched,
    ListTubeUsed,
    Put,
    Quit,
    Reserve,
    ReserveWithTimeout,
    Use,
    Watch,
)
from ._errors import InvalidArgument, LocalProtocolError, RemoteProtocolError
from ._events import NEED_DATA, ConnectionClosed, Event, NeedData, TubeList, Using, Watching
from ._readers import Reader

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_MAX_LINE_SIZE", "Connection", "State"]

#: The longest reply line beanstalkd can send fits in its 224-byte buffer.
DEFAULT_MAX_LINE_SIZE: Final = MAX_LINE_SIZE
#: beanstalkd caps ``max-job-size`` at 1 GiB; stats payloads are far smaller.
DEFAULT_MAX_BODY_SIZE: Final = 2**30


class State(enum.Enum):
    """Where a :class:`Connection` stands."""

    #: Commands may be sent.
    OPEN = "open"
    #: ``quit`` was sent; only the server's close (and replies owed before it) may come.
    QUIT_SENT = "quit sent"
    #: The server closed the connection cleanly.
    CLOSED = "closed"
    #: A protocol error, or ``send_failed``: nothing more can be trusted.
    BROKEN = "broken"


def _blocks(command: Command) -> bool:
    """Whether the server reads nothing more until ``command`` is answered."""
    return type(command) is Reserve or (type(command) is ReserveWithTimeout and command.timeout > 0)


# The commands whose replies change what the connection knows.
_NOTED: Final = frozenset({Use, Watch, Ignore, ListTubeUsed, ListTubesWatched})
# Long enough for every command but the tube ones with long names (a release with
# a 20-digit id and two 10-digit numbers is 53 bytes).
_MIN_COMMAND_SIZE: Final = 64
_OPEN: Final = State.OPEN
_QUIT_SENT: Final = State.QUIT_SENT


class Connection:
    """The client side of one beanstalkd connection: commands in, bytes out;
    bytes in, events out. It does no I/O.

    ``max_line_size`` bounds a reply line (CRLF included) and ``max_body_size``
    a reply body (job or stats payload); a server that exceeds either gets a
    :class:`RemoteProtocolError` as soon as it is known, whatever the chunking.

    ``max_command_size`` is the longest command line (CRLF included) the server
    reads: 224 bytes from beanstalkd 1.11 on, 208 in 1.10
    (:data:`MAX_LINE_SIZE_1_10`), which runs the rest of a longer line as another
    command. ``send`` refuses a longer line with :class:`InvalidArgument`, and a
    ``use`` whose ``USING`` reply would not fit the server's buffer. (Only the
    tube commands with names near 200 characters come that close.)
    """

    __slots__ = (
        "_buffer",
        "_closed_by",
        "_deferred",
        "_max_command",
        "_pending",
        "_reader",
        "_ready",
        "_state",
        "_used",
        "_watched",
    )

    def __init__(
        self,
        *,
        max_line_size: object = DEFAULT_MAX_LINE_SIZE,
        max_body_size: object = DEFAULT_MAX_BODY_SIZE,
        max_command_size: object = MAX_LINE_SIZE,
    ) -> None:
        # Typed object, not int, so that a compiled build sees a bool as a bool.
        if isinstance(max_line_size, bool) or not isinstance(max_line_size, int):
            raise TypeError("max_line_size must be an int")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise TypeError("max_body_size must be an int")
        if max_line_size < MAX_LINE_SIZE:
            raise InvalidArgument(f"max_line_size must be at least {MAX_LINE_SIZE}")
        if max_body_size < 0:
            raise InvalidArgument("max_body_size must not be negative")
        if isinstance(max_command_size, bool) or not isinstance(max_command_size, int):
            raise TypeError("max_command_size must be an int")
        if not _MIN_COMMAND_SIZE <= max_command_size <= MAX_LINE_SIZE:
            raise InvalidArgument(
                f"max_command_size must be between {_MIN_COMMAND_SIZE} and {MAX_LINE_SIZE}"
            )
        self._max_command = max_command_size
        self._buffer = ReceiveBuffer(max_line_size, max_body_size)
        self._reader = Reader(self._buffer, self._learn, _NOTED)
        self._pending: deque[Command] = deque()  # sent, awaiting replies, oldest first
        self._ready: deque[Event] = deque()  # read, not handed out yet
        # A protocol error found after the replies in _ready, raised once they are out.
        self._deferred: RemoteProtocolError | None = None
        self._state = State.OPEN
        self._closed_by: BaseException | str | None = None
        self._used = DEFAULT_TUBE
        self._watched: dict[str, None] = {DEFAULT_TUBE: None}

    def __repr__(self) -> str:
        return (
            f"<beanproto.Connection {self._state.value}, {len(self._pending)} replies owed, "
            f"using {self._used!r}>"
        )

    # -- what the connection knows -------------------------------------------------

    @property
    def state(self) -> State:
        """Where the connection stands (:class:`State`)."""
        return self._state

    @property
    def used_tube(self) -> str:
        """The tube ``put`` goes to, as confirmed by the server's last ``USING``."""
        return self._used

    @property
    def watched_tubes(self) -> tuple[str, ...]:
        """The watch list, as confirmed by the server's replies."""
        return tuple(self._watched)

    @property
    def pending(self) -> tuple[Command, ...]:
        """Commands sent whose replies have not been received yet, oldest first."""
        return tuple(self._pending)

    @property
    def reserve_waiting(self) -> bool:
        """True while a ``reserve`` (or ``reserve-with-timeout`` above 0) is unanswered.

        The server reads nothing else from the connection meanwhile, and the
        only way to abort it is to close the connection. (It looks through the
        commands pending.)
        """
        return any(map(_blocks, self._pending))

    @property
    def max_line_size(self) -> int:
        return self._buffer.max_line_size

    @property
    def max_body_size(self) -> int:
        return self._buffer.max_body_size

    @property
    def max_command_size(self) -> int:
        return self._max_command

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buffer)

    @property
    def work(self) -> int:
        """Bytes the receive path has searched or copied beyond a single pass.

        Proves the cost is linear in the bytes received; not for everyday use.
        """
        return self._buffer.work

    # -- commands in, bytes out ----------------------------------------------------

    def send(self, command: Command) -> bytes:
        """Queue ``command`` and return the bytes to write for it.

        Commands are validated when built, so nothing invalid reaches here.
        Raises :class:`LocalProtocolError` if the connection cannot send (after
        ``quit``, a close or an error) and ``TypeError`` for a non-command.
        """
        if not isinstance(command, Command):
            raise TypeError(f"send() takes a beanproto command, not {type(command).__name__}")
        if self._state is not _OPEN:
            raise self._not_open("send")
        data = command._encode()
        if len(data) > self._max_command and type(command) is not Put:
            raise InvalidArgument(
                f"a {command.verb} line of {len(data)} bytes is longer than the server reads "
                f"(max_command_size={self._max_command})"
            )
        if type(command) is Use and len(command.tube) + 8 >= self._max_command:
            raise InvalidArgument(
                f"the reply to use of a {len(command.tube)}-character tube name does not fit "
                f"the server's line buffer (max_command_size={self._max_command})"
            )
        self._pending.append(command)
        if type(command) is Quit:
            self._state = State.QUIT_SENT
        return data

    def send_failed(self) -> None:
        """Tell the connection that bytes it produced may not have been written.

        The connection is broken afterwards: the server may hold half a command.
        """
        if self._state is not State.CLOSED:
            self._state = State.BROKEN
            self._closed_by = self._closed_by or "send_failed() was called"

    # -- bytes in, events out ------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the server (any bytes-like object, copied);
        ``b""`` means it closed the connection."""
        buffer = self._buffer
        if buffer.at_eof:
            if data:
                raise LocalProtocolError("receive_data() after the end of the stream")
            return
        if self._state is State.BROKEN:
            return
        if data:
            buffer.feed(data)
        else:
            buffer.feed_eof()

    def next_event(self) -> Event | NeedData:
        """The next reply as an event, or ``NEED_DATA``.

        Raises :class:`RemoteProtocolError` (and the connection is broken) when the
        server's bytes do not fit the protocol or the pending command. Replies
        that arrived before the offending bytes are returned first.
        """
        ready = self._ready
        if ready:
            return ready.popleft()
        state = self._state
        if state is not _OPEN and state is not _QUIT_SENT:
            return self._closed_event()
        try:
            pending = self._pending
            if pending:
                self._reader.read(pending, ready)
                if ready:
                    return ready.popleft()
            return self._no_event()
        except RemoteProtocolError as exc:
            self._state = State.BROKEN
            self._closed_by = exc
            if not ready:
                raise
            self._deferred = exc
            return ready.popleft()

    def _learn(self, command: Command, event: Event) -> None:
        """What the reply to ``command`` tells the connection."""
        kind = type(event)
        if kind is Using:
            self._used = event.tube  # type: ignore[union-attr]
        elif kind is Watching:
            if type(command) is Watch:
                self._watched[command.tube] = None
            else:
                assert type(command) is Ignore
                self._watched.pop(command.tube, None)
        elif kind is TubeList:
            self._watched = dict.fromkeys(event.tubes)  # type: ignore[union-attr]

    def _no_event(self) -> Event | NeedData:
        """No reply could be read: more bytes are needed, or the stream ended."""
        buffer = self._buffer
        pending = self._pending
        buffered = len(buffer)
        if not buffered and not pending and not buffer.at_eof:
            return NEED_DATA  # all read, nothing owed: the end of every exchange
        owed = pending[0] if pending and type(pending[0]) is not Quit else None
        if buffer.at_eof:
            if buffered or self._reader.mid_reply:
                raise RemoteProtocolError(
                    "the server closed the connection in the middle of a reply"
                )
            if owed is not None:
                raise RemoteProtocolError(
                    f"the server closed the connection while a reply to {owed.verb!r} was owed"
                )
            pending.clear()
            self._state = State.CLOSED
            return ConnectionClosed()
        if owed is None and buffered:
            raise RemoteProtocolError("the server sent bytes when no reply was owed")
        return NEED_DATA

    def _closed_event(self) -> Event:
        if self._state is State.CLOSED:
            return ConnectionClosed()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            raise deferred
        raise self._not_open("read an event")

    def _not_open(self, what: str) -> LocalProtocolError:
        if self._state is State.QUIT_SENT:
            return LocalProtocolError(f"cannot {what}: quit was sent")
        if self._state is State.CLOSED:
            return LocalProtocolError(f"cannot {what}: the server closed the connection")
        reason = self._closed_by
        err = LocalProtocolError(f"cannot {what}: the connection is broken ({reason})")
        if isinstance(reason, BaseException):
            err.__cause__ = reason
        return err
