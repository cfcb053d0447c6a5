"""The receive buffer: framing of server bytes into replies (a line, and for
``RESERVED``/``FOUND``/``OK`` the body it announces).

Strategy (after h11's ``_receivebuffer.py``, tuned with the bench anchors' numbers):

* The current buffer is an immutable ``bytes`` read through an offset; it is
  never re-sliced per reply (``buf = buf[n:]`` is quadratic). Incoming chunks
  are only appended to a list.
* When the buffer ends inside a line, new chunks are not merged with that
  partial line until one of them holds a ``\\n``: so a partial line is copied
  once per line, not once per chunk, and a byte-at-a-time feed stays linear.
  The CRLF search resumes where the last failed search stopped.
* A line's limit is checked whether or not its CRLF has arrived (h11 #182).
* Bodies are framed by their announced length, never by searching for CRLF.
  The announced size is checked against ``max_body_size`` before any of the
  body is kept. A body not complete in the buffer is collected as a list of
  pieces and joined once, so a 64 KiB body fed in 4 KiB chunks costs one copy.

``work`` counts the bytes examined by failed searches plus the bytes copied by
merges: the parts of the receive path that could go quadratic. A test feeds
replies one byte at a time and checks that it stays proportional to the input.
"""

from __future__ import annotations

from typing import Final, NoReturn

from ._errors import RemoteProtocolError

__all__ = ["BODY_WORDS", "ReceiveBuffer"]

#: The replies followed by a counted body; the count is their last argument.
BODY_WORDS: Final = frozenset({b"RESERVED", b"FOUND", b"OK"})


class ReceiveBuffer:
    __slots__ = (
        "_have",
        "_need",
        "_pieces",
        "_seen",
        "buf",
        "chunks",
        "eof",
        "max_body_size",
        "max_line_size",
        "pos",
        "scan",
        "work",
    )

    def __init__(self, max_line_size: int, max_body_size: int) -> None:
        self.max_line_size = max_line_size
        self.max_body_size = max_body_size
        # The reader parses complete frames straight from buf, from pos on, and
        # stores pos and scan back; the methods below handle everything else.
        self.buf = b""
        self.pos = 0  # start of the unread bytes in buf
        self.scan = 0  # where the next CRLF search starts; always >= pos
        self.chunks: list[bytes] = []  # fed, not merged into buf yet
        self._seen = 0  # how many of _chunks are known to hold no b"\n"
        self._pieces: list[bytes | memoryview] | None = None  # that body, as it arrives
        self._have = 0
        self._need = 0
        self.eof = False
        self.work = 0

    def __len__(self) -> int:
        """Bytes received and not yet handed out in a frame."""
        return len(self.buf) - self.pos + sum(map(len, self.chunks)) + self._have

    @property
    def in_body(self) -> bool:
        """True while a body announced by a header is being collected."""
        return self._pieces is not None

    def feed(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        if self.pos == len(self.buf) and not self.chunks and self._pieces is None:
            # All read: the chunk becomes the buffer (the one-reply-per-read case).
            self.buf = data
            self.pos = self.scan = 0
        else:
            self.chunks.append(data)

    def start_body(self, size: int) -> None:
        """The header ending at ``pos`` announced ``size`` body bytes that are not
        all in ``buf``: collect them as they come."""
        buf = self.buf
        pos = self.pos
        self._pieces = [memoryview(buf)[pos:]] if pos < len(buf) else []
        self._have = len(buf) - pos
        self._need = size + 2
        self.buf = b""
        self.pos = self.scan = 0

    def need_line(self) -> bool:
        """The buffer ends inside a line: merge in chunks that may end it.
        True if there is new data to search."""
        buf = self.buf
        pos = self.pos
        end = len(buf)
        self.work += end - self.scan
        rest = end - pos
        if rest >= self.max_line_size:
            self.line_too_long()
        # A trailing b"\r" may be the first half of the CRLF: search it again.
        self.scan = end - 1 if rest else end
        chunks = self.chunks
        if not rest:  # the reader calls with buf read to the end only when chunks wait
            self._merge()
            return True
        # Copy the partial line into a merge only when a chunk can end it.
        for k in range(len(chunks)):
            rest += len(chunks[k])
            if k >= self._seen:
                self.work += len(chunks[k])
                if b"\n" in chunks[k]:
                    self._merge()
                    return True
                self._seen = k + 1
            if rest >= self.max_line_size:
                self.line_too_long()
        return False

    def _merge(self) -> None:
        chunks = self.chunks
        pos = self.pos
        buf = self.buf
        if pos < len(buf):
            rest = buf[pos:]
            self.work += len(rest)
            self.scan -= pos
            chunks.insert(0, rest)
        else:
            self.scan = 0
        self.buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.pos = 0
        chunks.clear()
        self._seen = 0

    def body(self) -> bytes | None:
        """The body being collected, without its CRLF, once all of it has come."""
        pieces = self._pieces
        assert pieces is not None
        chunks = self.chunks
        if chunks:
            # Take only what the body needs, so any excess lies in the last piece.
            k = 0
            while k < len(chunks) and self._have < self._need:
                pieces.append(chunks[k])
                self._have += len(chunks[k])
                k += 1
            del chunks[:k]
            self._seen = 0
        if self._have < self._need:
            return None
        return self._assemble(pieces)

    def _assemble(self, pieces: list[bytes | memoryview]) -> bytes:
        excess = self._have - self._need
        self._pieces = None
        self._have = self._need = 0
        if excess:
            last = pieces[-1]
            keep = len(last) - excess
            self.buf = bytes(last[keep:])
            self.work += excess
            pieces[-1] = memoryview(last)[:keep]
        # Take the CRLF off the end; it may straddle two pieces.
        tail = b""
        while len(tail) < 2:
            piece = pieces[-1]
            want = 2 - len(tail)
            if len(piece) <= want:
                tail = bytes(piece) + tail
                pieces.pop()
            else:
                tail = bytes(piece[len(piece) - want :]) + tail
                pieces[-1] = memoryview(piece)[: len(piece) - want]
        if tail != b"\r\n":
            self._bad_terminator()
        return b"".join(pieces)

    def line_too_long(self) -> NoReturn:
        raise RemoteProtocolError(
            f"the server sent a line longer than max_line_size ({self.max_line_size} bytes)"
        )

    def _bad_terminator(self) -> NoReturn:
        raise RemoteProtocolError("a body sent by the server is not followed by CRLF")
