"""The client side of one beanstalkd connection, as a state machine.

Theory of operation: beanstalkd answers every command but ``quit`` with exactly
one reply, in order, and never speaks unasked. So the connection keeps a FIFO of
the commands sent and not yet answered; each reply is read against the command
at the head of that FIFO, which decides (through ``REPLIES``, one row per
command type) which reply words are legal, how many arguments each carries and
whether a body follows. The same word can mean different things (``BURIED <id>``
after ``put``, bare ``BURIED`` after ``bury``), which is why the table is keyed
by command and not by word. Anything outside the row is a
``RemoteProtocolError`` and the connection is dead from then on, because a
client that has lost count of replies would hand one caller another's answer.

What the connection knows of the server-side state (used tube, watch list) is
updated from replies, not from requests, so it is true even when a request was
refused. ``send`` changes nothing until the command has been encoded, and
commands validate themselves when they are built, so a refused argument leaves
the connection exactly as it was. ``send_failed`` marks the connection broken:
once some of its bytes may be missing, no later reply can be trusted.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from typing import Final

from ._buffer import BODY_WORDS, ReceiveBuffer
from ._commands import (
    DEFAULT_TUBE,
    MAX_LINE_SIZE,
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
    Matcher,
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
    Usual,
    Watch,
    check_tube,
    slot_setter,
)
from ._errors import InvalidArgument, LocalProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    BadFormat,
    Buried,
    ConnectionClosed,
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
    NeedData,
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

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_MAX_LINE_SIZE", "REPLIES", "Connection", "State"]

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


def _bad_number(token: bytes, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"the server sent {token[:30]!r} where {what} belongs")


def _number(token: bytes, what: str) -> int:
    # bytes.isdigit is ASCII-only; int() alone would accept "+1", " 1" and "1_0".
    if not token.isdigit() or len(token) > 20:
        raise _bad_number(token, what)
    value = int(token)
    if value > MAX_U64:
        raise _bad_number(token, what)
    return value


def _tube(cmd: Command, token: bytes) -> str:
    tube = token.decode("ascii", "replace")
    if type(cmd) is Use:
        if tube != cmd.tube:
            raise RemoteProtocolError(f"'use {cmd.tube}' was answered with USING {tube!r}")
        return tube
    try:
        return check_tube(tube)
    except InvalidArgument:
        raise RemoteProtocolError(f"the server sent an invalid tube name {token[:40]!r}") from None


# Events are frozen dataclasses; building the hot ones through their slots
# skips the frozen __init__'s object.__setattr__ calls (about half the cost).
_new = object.__new__
_set_reserved_id = slot_setter(Reserved, "id")
_set_reserved_body = slot_setter(Reserved, "body")
_set_found_id = slot_setter(Found, "id")
_set_found_body = slot_setter(Found, "body")
_set_inserted_id = slot_setter(Inserted, "id")


def _job_id(token: bytes) -> int:
    # The common case inline; _number() for the message, and for the 20-digit
    # ids that may still be at most MAX_U64.
    return int(token) if token.isdigit() and len(token) < 20 else _number(token, "a job id")


def _reserved(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    event = _new(Reserved)
    _set_reserved_id(event, _job_id(parts[1]))
    _set_reserved_body(event, body)
    return event


def _reserved_job(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    id = _number(parts[1], "a job id")
    if type(cmd) is ReserveJob and id != cmd.id:
        raise RemoteProtocolError(f"'reserve-job {cmd.id}' was answered with job {id}")
    return Reserved(id, body)


def _found(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    id = _number(parts[1], "a job id")
    if type(cmd) is Peek and id != cmd.id:
        raise RemoteProtocolError(f"'peek {cmd.id}' was answered with job {id}")
    event = _new(Found)
    _set_found_id(event, id)
    _set_found_body(event, body)
    return event


def _inserted(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    event = _new(Inserted)
    _set_inserted_id(event, _job_id(parts[1]))
    return event


def _check_job_header(cmd: Command, parts: list[bytes]) -> None:
    if parts[0] != b"OK":
        id = _number(parts[1], "a job id")
        if (type(cmd) is Peek or type(cmd) is ReserveJob) and id != cmd.id:
            raise RemoteProtocolError(f"'{cmd.verb} {cmd.id}' was answered with job {id}")


def _stats_job(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    stats = parse_job_stats(body)
    if type(cmd) is StatsJob and stats.id != cmd.id:
        raise RemoteProtocolError(f"'stats-job {cmd.id}' was answered for job {stats.id}")
    return stats


Build = Callable[[Command, list[bytes], bytes], Event]
#: (arguments on the line, a body follows, build the event, tokens on the line,
#: the event changes what the connection knows, the event itself when it is
#: always the same one, e.g. ``Deleted()``).
ReplySpec = tuple[int, bool, Build, int, bool, "Event | None"]


def _reply(arity: int, build: Build) -> tuple[int, Build]:
    return (arity, build)


def _const(event: Event) -> tuple[int, Build]:
    build: Build = lambda cmd, parts, body: event  # noqa: E731
    _CONSTANTS[build] = event
    return (0, build)


_CONSTANTS: Final[dict[Build, Event]] = {}


def _tube_list(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return TubeList(parse_tube_list(body))


def _server_stats(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return parse_server_stats(body)


def _tube_stats(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return parse_tube_stats(body)


def _using(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return Using(_tube(cmd, parts[1]))


def _watching(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return Watching(_number(parts[1], "a count"))


def _kicked(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return Kicked(_number(parts[1], "a count"))


def _buried_id(cmd: Command, parts: list[bytes], body: bytes) -> Event:
    return Buried(_number(parts[1], "a job id"))


_GENERAL: Final[dict[bytes, tuple[int, Build]]] = {
    b"BAD_FORMAT": _const(BadFormat()),
    b"UNKNOWN_COMMAND": _const(UnknownCommand()),
    b"OUT_OF_MEMORY": _const(OutOfMemory()),
    b"INTERNAL_ERROR": _const(InternalError()),
}
_NOT_FOUND: Final = {b"NOT_FOUND": _const(NotFound())}
_FOUND: Final = {b"FOUND": _reply(2, _found), **_NOT_FOUND}
_USING: Final = {b"USING": _reply(1, _using)}
_WATCHING: Final = {b"WATCHING": _reply(1, _watching)}
_RESERVE: Final = {
    b"RESERVED": _reply(2, _reserved),
    b"DEADLINE_SOON": _const(DeadlineSoon()),
    b"TIMED_OUT": _const(TimedOut()),
}
_TUBE_LIST: Final = {b"OK": _reply(1, _tube_list)}

_ROWS: Final[dict[type[Command], dict[bytes, tuple[int, Build]]]] = {
    Put: {
        b"INSERTED": _reply(1, _inserted),
        b"BURIED": _reply(1, _buried_id),
        b"EXPECTED_CRLF": _const(ExpectedCrlf()),
        b"JOB_TOO_BIG": _const(JobTooBig()),
        b"DRAINING": _const(Draining()),
    },
    Use: _USING,
    Reserve: _RESERVE,
    ReserveWithTimeout: _RESERVE,
    ReserveJob: {b"RESERVED": _reply(2, _reserved_job), **_NOT_FOUND},
    Delete: {b"DELETED": _const(Deleted()), **_NOT_FOUND},
    Release: {b"RELEASED": _const(Released()), b"BURIED": _const(Buried()), **_NOT_FOUND},
    Bury: {b"BURIED": _const(Buried()), **_NOT_FOUND},
    Touch: {b"TOUCHED": _const(Touched()), **_NOT_FOUND},
    Watch: _WATCHING,
    Ignore: {**_WATCHING, b"NOT_IGNORED": _const(NotIgnored())},
    Peek: _FOUND,
    PeekReady: _FOUND,
    PeekDelayed: _FOUND,
    PeekBuried: _FOUND,
    Kick: {b"KICKED": _reply(1, _kicked)},
    KickJob: {b"KICKED": _const(Kicked()), **_NOT_FOUND},
    StatsJob: {b"OK": _reply(1, _stats_job), **_NOT_FOUND},
    StatsTube: {b"OK": _reply(1, _tube_stats), **_NOT_FOUND},
    Stats: {b"OK": _reply(1, _server_stats)},
    ListTubes: _TUBE_LIST,
    ListTubeUsed: _USING,
    ListTubesWatched: _TUBE_LIST,
    PauseTube: {b"PAUSED": _const(Paused()), **_NOT_FOUND},
    Quit: {},
}
# Commands whose replies change what the connection knows.
_STATEFUL: Final = frozenset({Use, Watch, Ignore, ListTubeUsed, ListTubesWatched})
REPLIES: Final[dict[type[Command], dict[bytes, ReplySpec]]] = {
    kind: {
        word: (
            arity,
            word in BODY_WORDS,
            build,
            arity + 1,
            kind in _STATEFUL,
            _CONSTANTS.get(build),
        )
        for word, (arity, build) in ({**row, **_GENERAL} if kind is not Quit else {}).items()
    }
    for kind, row in _ROWS.items()
}
"""Every command's reply row: reply word -> :data:`ReplySpec` (arguments on the
line, whether a body follows, how to build the event, tokens on the line,
whether the event changes what the connection knows, the event when it is
always the same one). The general errors can follow any command but ``quit``,
which gets no reply at all."""

for _kind, _row in REPLIES.items():
    _kind._replies = _row  # the reader finds a command's row through its class

# One regex per common reply checks the word, the arity, that the numbers are
# digits (19 at most, so an id fits in u64 and a size in an int cheaply) and
# the CRLF, in a single call: about half the cost of splitting the line and
# looking the word up. A reply the regex does not match (other words, a 20-digit
# id, garbage) is read by the general path, which also produces the errors.
_INSERTED: Final = re.compile(rb"INSERTED ([0-9]{1,19})\r\n")
_FAST_INSERTED: Final[Matcher] = _INSERTED.match
_FAST_RESERVED: Final[Matcher] = re.compile(rb"RESERVED ([0-9]{1,19}) ([0-9]{1,19})\r\n").match
# The same header after the CRLF that ends the body before it: the batch reader
# proves one reply's CRLF and reads the next one's header in a single call.
_TAIL_RESERVED: Final[Matcher] = re.compile(rb"\r\nRESERVED ([0-9]{1,19}) ([0-9]{1,19})\r\n").match
Put._fast = _FAST_INSERTED
Reserve._fast = _FAST_RESERVED
ReserveWithTimeout._fast = _FAST_RESERVED
# The constant replies a worker gets for each job are compared whole.
for _kind, _word in [
    (Delete, b"DELETED"),
    (Release, b"RELEASED"),
    (Bury, b"BURIED"),
    (Touch, b"TOUCHED"),
    (KickJob, b"KICKED"),
]:
    _kind._exact = (_word + b"\r\n", REPLIES[_kind][_word][5])

# The request/response reader (``Command._usual``): the same replies, when the
# bytes from ``pos`` on are exactly one of them. One function per reply, so the
# round trip of a blocking client pays for no dispatch on the reply's kind.
_WHOLE_INSERTED: Final[Matcher] = _INSERTED.fullmatch


def _usual_inserted(buf: bytes, pos: int, max_body: int) -> Event | None:
    m = _WHOLE_INSERTED(buf, pos)
    if m is None:
        return None
    event = _new(Inserted)
    _set_inserted_id(event, int(m[1]))
    return event


def _usual_reserved(buf: bytes, pos: int, max_body: int) -> Event | None:
    m = _FAST_RESERVED(buf, pos)
    if m is None:
        return None
    token, size_token = m.groups()
    start = m.end()
    end = start + int(size_token)
    if end + 2 != len(buf) or end - start > max_body or buf[end] != 13 or buf[end + 1] != 10:
        return None
    event = _new(Reserved)
    _set_reserved_id(event, int(token))
    _set_reserved_body(event, buf[start:end])
    return event


def _usual_exact(line: bytes, event: Event) -> Usual:
    def usual(buf: bytes, pos: int, max_body: int) -> Event | None:
        return event if buf[pos:] == line else None

    return usual


# Static: a plain function stored on a class would bind to the instance.
Put._usual = staticmethod(_usual_inserted)
Reserve._usual = ReserveWithTimeout._usual = staticmethod(_usual_reserved)
for _kind in (Delete, Release, Bury, Touch, KickJob):
    assert _kind._exact is not None
    _kind._usual = staticmethod(_usual_exact(*_kind._exact))


def _blocks(command: Command) -> bool:
    """Whether the server reads nothing more until ``command`` is answered."""
    return type(command) is Reserve or (type(command) is ReserveWithTimeout and command.timeout > 0)


_OPEN: Final = State.OPEN
_BROKEN: Final = State.BROKEN
_QUIT_SENT: Final = State.QUIT_SENT


class Connection:
    """The client side of one beanstalkd connection: commands in, bytes out;
    bytes in, events out. It does no I/O.

    ``max_line_size`` bounds a reply line (CRLF included) and ``max_body_size``
    a reply body (job or stats payload); a server that exceeds either gets a
    :class:`RemoteProtocolError` as soon as it is known, whatever the chunking.
    """

    __slots__ = (
        "_blocking",
        "_buffer",
        "_closed_by",
        "_deferred",
        "_head",
        "_partial",
        "_pending",
        "_ready",
        "_state",
        "_used",
        "_watched",
    )

    def __init__(
        self,
        *,
        max_line_size: int = DEFAULT_MAX_LINE_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        for what, value in (("max_line_size", max_line_size), ("max_body_size", max_body_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int")
        if max_line_size < MAX_LINE_SIZE:
            raise InvalidArgument(f"max_line_size must be at least {MAX_LINE_SIZE}")
        if max_body_size < 0:
            raise InvalidArgument("max_body_size must not be negative")
        self._buffer = ReceiveBuffer(max_line_size, max_body_size)
        # Commands awaiting replies are _pending[_head:]; the reader advances
        # _head instead of popping, and the list is trimmed when it is drained.
        self._pending: list[Command] = []
        self._head = 0
        self._ready: deque[Event] = deque()  # parsed, not yet handed out
        self._deferred: RemoteProtocolError | None = None
        self._state = State.OPEN
        self._closed_by: BaseException | str | None = None
        self._partial: tuple[ReplySpec, list[bytes]] | None = None  # header of a body
        # Where in _pending the last blocking reserve went (see reserve_waiting).
        self._blocking = -1
        self._used = DEFAULT_TUBE
        self._watched: dict[str, None] = {DEFAULT_TUBE: None}

    def __repr__(self) -> str:
        return (
            f"<beanproto.Connection {self._state.value}, {self._owed()} replies owed, "
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
        return tuple(self._pending[self._head :])

    @property
    def reserve_waiting(self) -> bool:
        """True while a ``reserve`` (or ``reserve-with-timeout`` above 0) is unanswered.

        The server reads nothing else from the connection meanwhile, and the
        only way to abort it is to close the connection.
        """
        # _blocking is exact from a blocking reserve's send until _pending is
        # cleared (the reserve was answered) or trimmed (_blocking moves with it).
        # After a clear it may point at a later command: one that is not a
        # blocking reserve, or else the newest one sent would have moved it.
        i = self._blocking
        pending = self._pending
        return self._head <= i < len(pending) and _blocks(pending[i])

    def _owed(self) -> int:
        return len(self._pending) - self._head

    @property
    def max_line_size(self) -> int:
        return self._buffer.max_line_size

    @property
    def max_body_size(self) -> int:
        return self._buffer.max_body_size

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
        self._pending.append(command)
        if command._noted:
            self._note(command)
        return data

    def _note(self, command: Command) -> None:
        """What sending ``quit`` or a reserve that may block changes."""
        if type(command) is Quit:
            self._state = State.QUIT_SENT
        elif _blocks(command):
            self._blocking = len(self._pending) - 1

    def send_failed(self) -> None:
        """Tell the connection that bytes it produced may not have been written.

        The connection is broken afterwards: the server may hold half a command.
        """
        if self._state is not State.CLOSED:
            self._state = State.BROKEN
            self._closed_by = self._closed_by or "send_failed() was called"

    # -- bytes in, events out ------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the server; ``b""`` means it closed the connection."""
        if self._buffer.eof:
            if data:
                raise LocalProtocolError("receive_data() after the end of the stream")
            return
        if self._state is _BROKEN:
            return
        if data:
            self._buffer.feed(data)
        else:
            self._buffer.eof = True

    # -- the adapters' request/response steps ---------------------------------------
    #
    # A blocking round trip reads one reply to one command. These let an adapter
    # do it in one step when the reply is the usual one, and do the checks while
    # the server is busy answering: between its write and its read.

    def _lone(self) -> bool:
        """Whether :meth:`_read_lone` may read the reply to the one command
        pending: nothing else is owed, received or parsed, and the command has
        a usual reply (``Command._usual``)."""
        pending = self._pending
        if len(pending) != 1:
            return False
        # One command pending means the head is 0: the head only ever reaches the
        # end of pending together with pending being cleared. Nothing may be
        # buffered: received bytes are in buf past pos, or in a body being
        # collected (_partial); chunks wait only behind one of those.
        buffer = self._buffer
        return (
            pending[0]._usual is not None
            and self._state is _OPEN
            and not self._ready
            and buffer.pos == len(buffer.buf)
            and self._partial is None
            and not buffer.eof
        )

    def _read_lone(self, data: bytes) -> Event | None:
        """After :meth:`_lone` said True, with nothing sent or received since: if
        ``data`` is exactly the reply, in its usual form, consume it and return
        the event (and then no byte follows it: no need to ask
        :meth:`next_event`). Otherwise None, and nothing changed: hand ``data``
        to :meth:`receive_data`."""
        if type(data) is not bytes:
            return None
        pending = self._pending
        usual = pending[0]._usual
        assert usual is not None
        event = usual(data, 0, self._buffer.max_body_size)
        if event is not None:
            pending.clear()
        return event

    def _read_inserted(self, data: bytes) -> int | None:
        """:meth:`_read_lone` for a put whose adapter wants only the job's id:
        if ``data`` is exactly ``INSERTED <id>\\r\\n``, consume it and return
        the id (the :class:`Inserted` event's, without building it). Otherwise
        None, and nothing changed: every other reply to a put (``BURIED``,
        ``JOB_TOO_BIG``, ...) takes :meth:`receive_data`."""
        assert type(self._pending[0]) is Put
        if type(data) is bytes:
            m = _WHOLE_INSERTED(data)
            if m is not None:
                self._pending.clear()
                return int(m[1])
        return None

    def _sent(self, command: Command) -> None:
        """:meth:`send` for an adapter that has the command's bytes already, so
        it can record the command after writing them, or even build it then (a
        put: ``put_wire``, write, then ``checked_put``), as long as it sends
        nothing else in between. The bytes must be ``command._encode()``. Raises
        :class:`LocalProtocolError` as :meth:`send` does (if the bytes are out,
        the adapter then breaks the connection)."""
        if self._state is not _OPEN:
            raise self._not_open("send")
        self._pending.append(command)
        if command._noted:
            self._note(command)

    def next_event(self) -> Event | NeedData:
        """The next reply as an event, or ``NEED_DATA``.

        Raises :class:`RemoteProtocolError` (and the connection is broken) when the
        server's bytes do not fit the protocol or the pending command; replies
        that arrived before the offending bytes are returned first.
        """
        ready = self._ready
        if ready:
            return ready.popleft()
        state = self._state
        if state is not _OPEN and state is not _QUIT_SENT:
            return self._closed_event()
        try:
            buffer = self._buffer
            buf = buffer.buf
            pos = buffer.pos
            n = len(buf)
            if pos == n and not buffer.chunks and not buffer.eof:
                return NEED_DATA  # all read: the common end of a drain loop
            # Request/response: the buffer holds exactly the one reply owed, and
            # it is the usual one. Built here without _parse's set-up (a third
            # of a blocking put's core time); anything else goes to _parse.
            pending = self._pending
            if len(pending) == 1 and not buffer.chunks and self._partial is None:
                usual = pending[0]._usual  # one pending: the head is 0
                if usual is not None:
                    event = usual(buf, pos, buffer.max_body_size)
                    if event is not None:
                        buffer.pos = buffer.scan = n
                        pending.clear()
                        return event
            self._parse()
            if ready:
                return ready.popleft()
            return self._no_event()
        except RemoteProtocolError as exc:
            self._state = State.BROKEN
            self._closed_by = exc
            if not ready:
                raise
            # Replies that came before the offending bytes are still good.
            self._deferred = exc
            return ready.popleft()

    def _closed_event(self) -> Event:
        if self._state is State.CLOSED:
            return ConnectionClosed()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            raise deferred
        raise self._not_open("read an event")

    def _parse(self) -> None:
        # Turns every complete reply in the buffer into an event, in one loop
        # with everything in locals: at 100,000s of replies a second the cost
        # of a method call per reply is most of the budget. Frames that are
        # complete in buffer.buf are parsed here; ReceiveBuffer handles the rest
        # (merging chunks, collecting a body that is still arriving).
        pending = self._pending
        head = self._parse_from(self._head)
        self._head = head
        if head:
            if head == len(pending):
                pending.clear()
                self._head = 0
            elif head > 1024 and head * 2 > len(pending):
                del pending[:head]
                self._head = 0
                self._blocking -= head

    def _parse_from(self, head: int) -> int:
        """Parse from pending command ``head`` on; return the new head. (After an
        error the head is left behind, which no longer matters.)"""
        buffer = self._buffer
        pending = self._pending
        append = self._ready.append
        longest = buffer.max_line_size - 2  # without the CRLF
        spec: ReplySpec | None
        event: Event | None
        max_body = buffer.max_body_size
        # Per reply in the run loop below: locals, not globals.
        tail = _TAIL_RESERVED
        new = _new
        reserved = Reserved
        set_id = _set_reserved_id
        set_body = _set_reserved_body
        while True:
            partial = self._partial
            if partial is not None:
                body = buffer.body()
                if body is None:
                    return head
                self._partial = None
                cmd = pending[head]
                spec = partial[0]
                event = spec[2](cmd, partial[1], body)
                head += 1
                if spec[4]:
                    self._after(cmd, event)
                append(event)
            buf = buffer.buf
            pos = buffer.pos
            scan = buffer.scan
            find = buf.find
            n = len(buf)
            owed = len(pending)
            while True:
                # The fast path: the reply the pending command usually gets,
                # matched and validated by one regex (see _FAST), and only when
                # the whole frame is here. Anything else takes the general path
                # below, which also gives the errors.
                if head < owed:
                    cmd = pending[head]
                    fast = cmd._fast
                    if fast is None:
                        exact = cmd._exact
                        if exact is not None and buf.startswith(exact[0], pos):
                            pos = scan = pos + len(exact[0])
                            head += 1
                            append(exact[1])
                            continue
                    else:
                        m = fast(buf, pos)
                        if m is not None:
                            if fast is _FAST_INSERTED:
                                event = _new(Inserted)
                                _set_inserted_id(event, int(m[1]))
                                pos = scan = m.end()
                                head += 1
                                append(event)
                                continue
                            # A run of reserves, one reply per pass. Invariant at
                            # the top: m is a RESERVED header matched at pos, and
                            # pending[head] is the reserve it answers. The body's
                            # CRLF is proven by matching _TAIL_RESERVED at the
                            # body's end when the next command is the same kind
                            # of reserve: one call that also reads the next
                            # header. The run's last body has its CRLF checked
                            # byte by byte instead. A reply the run cannot read
                            # whole and valid is left, at pos and head, to the
                            # general path, which also gives the errors.
                            kind = type(cmd)
                            general = True  # whether the run stops at a reply it left
                            while True:
                                token, size_token = m.groups()  # RESERVED <id> <bytes>
                                size = int(size_token)
                                if size > max_body:
                                    break
                                start = m.end()
                                end = start + size
                                head += 1  # the next command's, while the run goes on
                                if head < owed and type(pending[head]) is kind:
                                    m = tail(buf, end)
                                    if m is not None:
                                        event = new(reserved)
                                        set_id(event, int(token))
                                        set_body(event, buf[start:end])
                                        pos = end + 2
                                        append(event)
                                        continue
                                if end + 2 <= n and buf[end] == 13 and buf[end + 1] == 10:  # CRLF
                                    event = new(reserved)
                                    set_id(event, int(token))
                                    set_body(event, buf[start:end])
                                    pos = end + 2
                                    append(event)
                                    general = False
                                else:
                                    head -= 1
                                break
                            if scan < pos:  # scan may be ahead if the run read nothing
                                scan = pos
                            if not general:
                                continue  # it ended on a good reply: read on from the top
                i = find(b"\r\n", scan)
                if i < 0:
                    if pos == n and not buffer.chunks:
                        buffer.pos = buffer.scan = pos
                        return head
                    buffer.pos = pos
                    buffer.scan = scan
                    if buffer.need_line():
                        break
                    return head
                if i - pos > longest:
                    buffer.line_too_long()
                parts = buf[pos:i].split(b" ")
                if head == owed:
                    raise RemoteProtocolError(
                        f"the server sent {buf[pos:i][:60]!r} when no reply was owed"
                    )
                cmd = pending[head]
                spec = cmd._replies.get(parts[0])
                if spec is None or len(parts) != spec[3]:
                    raise self._unexpected(cmd, parts, spec)
                event = spec[5]
                if spec[1]:
                    token = parts[-1]
                    if not token.isdigit():
                        raise _bad_number(token, "a body size")
                    size = int(token)  # at most 222 digits: the line is bounded
                    if size > max_body:
                        raise RemoteProtocolError(
                            f"the server announced a body of {size} bytes, over max_body_size "
                            f"({max_body})"
                        )
                    start = i + 2
                    end = start + size
                    if end + 2 > n:
                        # Check the header now, not after up to max_body_size bytes.
                        _check_job_header(cmd, parts)
                        buffer.pos = buffer.scan = start
                        buffer.start_body(size)
                        self._partial = (spec, parts)
                        break
                    if buf[end : end + 2] != b"\r\n":
                        raise RemoteProtocolError(
                            "a body sent by the server is not followed by CRLF"
                        )
                    event = spec[2](cmd, parts, buf[start:end])
                    pos = scan = end + 2
                else:
                    if event is None:
                        event = spec[2](cmd, parts, b"")
                    pos = scan = i + 2
                head += 1
                if spec[4]:
                    self._after(cmd, event)
                append(event)

    @staticmethod
    def _unexpected(
        cmd: Command, parts: list[bytes], spec: ReplySpec | None
    ) -> RemoteProtocolError:
        line = b" ".join(parts)[:60]
        if spec is None:
            return RemoteProtocolError(
                f"the server answered {cmd.verb!r} with {line!r}, which is not a reply to it"
            )
        return RemoteProtocolError(
            f"the server answered {cmd.verb!r} with {line!r}: "
            f"{parts[0].decode()} takes {spec[0]} argument(s) there"
        )

    def _after(self, cmd: Command, event: Event) -> None:
        if type(event) is Using:
            self._used = event.tube
        elif type(event) is Watching:
            if type(cmd) is Watch:
                self._watched[cmd.tube] = None
            else:
                assert type(cmd) is Ignore
                self._watched.pop(cmd.tube, None)
        elif type(event) is TubeList:
            self._watched = dict.fromkeys(event.tubes)

    def _no_event(self) -> Event | NeedData:
        buffer = self._buffer
        pending = self._pending
        first = pending[self._head] if self._owed() else None
        if buffer.eof:
            if buffer.in_body or len(buffer):
                raise RemoteProtocolError(
                    "the server closed the connection in the middle of a reply"
                )
            if first is not None and type(first) is not Quit:
                raise RemoteProtocolError(
                    f"the server closed the connection while a reply to {first.verb!r} was owed"
                )
            pending.clear()
            self._head = 0
            self._state = State.CLOSED
            return ConnectionClosed()
        if len(buffer) and (first is None or type(first) is Quit):
            raise RemoteProtocolError("the server sent bytes when no reply was owed")
        return NEED_DATA

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
