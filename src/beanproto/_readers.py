"""The reply reader: the receive buffer's lines and bodies in, events out.

Strategy: a reply is a line, read against its command's row of the reply table
(:func:`beanproto._replies.parse_line`), and for ``RESERVED``/``FOUND``/``OK`` the
body the line announces, framed by its length. The announced size is checked
against ``max_body_size`` (and a job id echoed back against the one asked for)
as soon as the line is read, before any of the body is kept. A body that has not
all arrived leaves its reply half read: the reader keeps the line's verdict and
goes on with the body when more bytes have come.

There is one path for every reply. :meth:`Reader.read` turns every complete
reply in the buffer into an event in one loop, because at a few hundred thousand
replies a second the cost of a call per reply is most of the budget; the
connection hands the events out one at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Set
from typing import NoReturn

from ._buffer import ReceiveBuffer
from ._commands import Command, Quit
from ._errors import RemoteProtocolError
from ._events import Event
from ._replies import USUAL, Args, Reply, parse_line

__all__ = ["Reader"]


class Reader:
    """Reads replies from a :class:`ReceiveBuffer` against the commands they answer."""

    __slots__ = ("_buffer", "_header", "_learn", "_noted")

    def __init__(
        self,
        buffer: ReceiveBuffer,
        learn: Callable[[Command, Event], None],
        noted: Set[type[Command]],
    ) -> None:
        self._buffer = buffer
        # Called with each reply to a command whose type is in noted.
        self._learn = learn
        self._noted = noted
        # The line of a reply whose body is still arriving: its Reply, its
        # arguments and the body's size.
        self._header: tuple[Reply, Args, int] | None = None

    @property
    def mid_reply(self) -> bool:
        """True while a reply's line was read and its body has not all come."""
        return self._header is not None

    def read(self, pending: deque[Command], events: deque[Event]) -> None:
        """Read every complete reply: pop its command off ``pending`` and append
        the event to ``events`` (after ``learn(command, event)`` for a command
        of a noted type).

        Stops at ``quit`` (it gets no reply) and where the bytes run out.
        Raises :class:`RemoteProtocolError` for bytes that are not a legal reply;
        the replies read before them are in ``events`` already.
        """
        buffer = self._buffer
        max_body = buffer.max_body_size
        noted = self._noted
        header = self._header
        self._header = None
        while pending:
            cmd = pending[0]
            kind = type(cmd)
            if kind is Quit:
                return
            if header is not None:
                # The reply whose line came before all of its body (only the first).
                reply, args, size = header
                header = None
                body = buffer.extract_body(size)
                if body is None:
                    self._header = (reply, args, size)
                    return
                event = reply.build(cmd, args, body)
            else:
                # The fast path: the command's usual reply, matched whole by its
                # pattern and built from the numbers it holds (Reply.fast, beside
                # the rule it shortens). Anything else takes the rule.
                usual = USUAL.get(kind)
                m = None if usual is None else buffer.match_line(usual.fast)  # type: ignore[arg-type]
                if m is not None:
                    make: Callable[..., Event] = usual.event  # type: ignore[union-attr,assignment]
                    if not usual.body:  # type: ignore[union-attr]
                        event = make(int(m[1]))
                    else:
                        number, count = m.groups()
                        size = int(count)
                        if size > max_body:
                            self._too_big(size)
                        body = buffer.extract_body(size)
                        if body is None:
                            self._header = (usual, (int(number), size), size)  # type: ignore[assignment]
                            return
                        event = make(int(number), body)
                else:
                    line = buffer.extract_line()
                    if line is None:
                        return
                    reply, args = parse_line(cmd, line)
                    if not reply.body:
                        event = reply.build(cmd, args, b"")
                    else:
                        size = args[-1]  # type: ignore[assignment]
                        if size > max_body:
                            self._too_big(size)
                        body = buffer.extract_body(size)
                        if body is None:
                            self._header = (reply, args, size)
                            return
                        event = reply.build(cmd, args, body)
            pending.popleft()
            if kind in noted:
                self._learn(cmd, event)
            events.append(event)

    def _too_big(self, size: int) -> NoReturn:
        raise RemoteProtocolError(
            f"the server announced a body of {size} bytes, over max_body_size "
            f"({self._buffer.max_body_size})"
        )
