"""The receive buffer: server bytes in, framed pieces out (a line, or a counted body).

Strategy (after h11's ``_receivebuffer.py``):

* The current buffer is an immutable ``bytes`` read through an offset; it is
  never re-sliced per reply (``buf = buf[n:]`` is quadratic). Incoming chunks
  are only appended to a list.
* When the buffer ends inside a line, new chunks are not merged with that
  partial line until one of them holds a ``\\n``: so a partial line is copied
  once per line, not once per chunk, and a byte-at-a-time feed stays linear.
  The CRLF search resumes where the last failed search stopped.
* A line's limit is checked whether or not its CRLF has arrived (h11 #182).
* Bodies are framed by their announced length, never by searching for CRLF. A
  body not complete in the buffer is collected as a list of pieces and joined
  once, so a 64 KiB body fed in 4 KiB chunks costs one copy.

Its state is private: the reader asks for :meth:`extract_line` and
:meth:`extract_body` and gets ``None`` while the bytes are not all here.
``work`` counts the bytes examined by failed searches plus the bytes copied by
merges: the parts of the receive path that could go quadratic. A test feeds
replies one byte at a time and checks that it stays proportional to the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NoReturn

from ._errors import RemoteProtocolError

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received from the server and not yet handed out."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_eof",
        "_have",
        "_need",
        "_pieces",
        "_pos",
        "_scan",
        "_seen",
        "_work",
        "max_body_size",
        "max_line_size",
    )

    def __init__(self, max_line_size: int, max_body_size: int) -> None:
        self.max_line_size = max_line_size
        self.max_body_size = max_body_size
        self._buf = b""
        self._pos = 0  # start of the unread bytes in _buf
        self._scan = 0  # where the next CRLF search starts; always >= _pos
        self._chunks: list[bytes] = []  # fed, not merged into _buf yet
        self._seen = 0  # how many of _chunks are known to hold no b"\n"
        self._pieces: list[bytes | memoryview] | None = None  # a body, as it arrives
        self._have = 0  # bytes in _pieces
        self._need = 0  # bytes the body needs, its CRLF included
        self._eof = False
        self._work = 0

    def __len__(self) -> int:
        """Bytes received and not yet handed out."""
        unread = len(self._buf) - self._pos + self._have
        chunks = self._chunks
        return unread + sum(map(len, chunks)) if chunks else unread

    @property
    def in_body(self) -> bool:
        """True while a body that :meth:`extract_body` started is still arriving."""
        return self._pieces is not None

    @property
    def at_eof(self) -> bool:
        """True once :meth:`feed_eof` was called."""
        return self._eof

    @property
    def work(self) -> int:
        """Bytes searched again or copied by merges (see the module docstring)."""
        return self._work

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        if self._pos == len(self._buf) and not self._chunks and self._pieces is None:
            # All read: the chunk becomes the buffer (the one-reply-per-read case).
            self._buf = data
            self._pos = self._scan = 0
        else:
            self._chunks.append(data)

    def feed_eof(self) -> None:
        self._eof = True

    # -- lines -----------------------------------------------------------------------

    def extract_line(self) -> bytes | None:
        """The next line without its CRLF, or None until all of it has come.

        Raises :class:`RemoteProtocolError` as soon as the line is known to be
        longer than ``max_line_size`` (CRLF included).
        """
        buf = self._buf
        i = buf.find(b"\r\n", self._scan)
        while i < 0:
            if not self._more_line():
                return None
            buf = self._buf
            i = buf.find(b"\r\n", self._scan)
        pos = self._pos
        if i - pos > self.max_line_size - 2:
            self._line_too_long()
        self._pos = self._scan = i + 2
        return buf[pos:i]

    def match_line(
        self, match: Callable[[bytes, int], re.Match[bytes] | None]
    ) -> re.Match[bytes] | None:
        """The next line, if it is all here and ``match`` (a compiled pattern's
        ``match``, which must end with ``\\r\\n`` and match at most
        ``max_line_size`` bytes) accepts it where it starts: consumed, and the
        match returned. Otherwise None and nothing changed, and
        :meth:`extract_line` reads the line (merging chunks if need be)."""
        m = match(self._buf, self._pos)
        if m is not None:
            self._pos = self._scan = m.end()
        return m

    def _more_line(self) -> bool:
        """The buffer ends inside a line (or is read to its end): merge in
        chunks that may end it. True if there is new data to search."""
        buf = self._buf
        pos = self._pos
        end = len(buf)
        self._work += end - self._scan
        rest = end - pos
        if rest >= self.max_line_size:
            self._line_too_long()
        # A trailing b"\r" may be the first half of the CRLF: search it again.
        self._scan = end - 1 if rest else end
        chunks = self._chunks
        if not chunks:
            return False
        if not rest:
            self._merge()
            return True
        # Copy the partial line into a merge only when a chunk can end it.
        for k in range(len(chunks)):
            rest += len(chunks[k])
            if k >= self._seen:
                self._work += len(chunks[k])
                if b"\n" in chunks[k]:
                    self._merge()
                    return True
                self._seen = k + 1
            if rest >= self.max_line_size:
                self._line_too_long()
        return False

    def _merge(self) -> None:
        chunks = self._chunks
        pos = self._pos
        buf = self._buf
        if pos < len(buf):
            rest = buf[pos:]
            self._work += len(rest)
            self._scan -= pos
            chunks.insert(0, rest)
        else:
            self._scan = 0
        self._buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._pos = 0
        chunks.clear()
        self._seen = 0

    # -- bodies ----------------------------------------------------------------------

    def extract_body(self, size: int) -> bytes | None:
        """The next ``size`` bytes, which must be followed by CRLF, or None until
        all of them (and the CRLF) have come.

        Once it returned None, the next call must ask for the same ``size``: the
        body is being collected. Raises :class:`RemoteProtocolError` if the
        bytes after the body are not CRLF.
        """
        if self._pieces is None:
            buf = self._buf
            start = self._pos
            end = start + size
            if end + 2 <= len(buf):
                if buf[end] != 13 or buf[end + 1] != 10:
                    self._bad_terminator()
                self._pos = self._scan = end + 2
                return buf[start:end]
            self._start_body(size)
        return self._collect_body()

    def _start_body(self, size: int) -> None:
        buf = self._buf
        pos = self._pos
        self._pieces = [memoryview(buf)[pos:]] if pos < len(buf) else []
        self._have = len(buf) - pos
        self._need = size + 2
        self._buf = b""
        self._pos = self._scan = 0

    def _collect_body(self) -> bytes | None:
        pieces = self._pieces
        assert pieces is not None
        chunks = self._chunks
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
        excess = self._have - self._need
        self._pieces = None
        self._have = self._need = 0
        if excess:
            last = pieces[-1]
            keep = len(last) - excess
            self._buf = bytes(last[keep:])
            self._pos = self._scan = 0
            self._work += excess
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

    # -- errors ----------------------------------------------------------------------

    def _line_too_long(self) -> NoReturn:
        raise RemoteProtocolError(
            f"the server sent a line longer than max_line_size ({self.max_line_size} bytes)"
        )

    @staticmethod
    def _bad_terminator() -> NoReturn:
        raise RemoteProtocolError("a body sent by the server is not followed by CRLF")
