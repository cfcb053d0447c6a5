"""The receive buffer behind the reader: lines, whole-line matches and counted bodies,
whatever the chunks, and nothing changed by a read that cannot complete."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import beanproto as bp
from beanproto._buffer import ReceiveBuffer

INSERTED = re.compile(rb"INSERTED ([0-9]{1,19})\r\n").match


def buffer(*chunks: bytes, max_line_size: int = 224, max_body_size: int = 2**30) -> ReceiveBuffer:
    buf = ReceiveBuffer(max_line_size, max_body_size)
    for chunk in chunks:
        buf.feed(chunk)
    return buf


def test_extract_line_waits_for_the_crlf() -> None:
    buf = buffer(b"USING a")
    assert buf.extract_line() is None
    buf.feed(b"\r")
    assert buf.extract_line() is None
    buf.feed(b"\nDELETED\r\nNOT_")
    assert len(buf) == len(b"USING a\r\nDELETED\r\nNOT_")
    assert buf.extract_line() == b"USING a"
    assert buf.extract_line() == b"DELETED"
    assert buf.extract_line() is None
    assert len(buf) == 4


def test_match_line_takes_only_a_whole_matching_line() -> None:
    buf = buffer(b"INSERTED 12\r\nINSERTED 13\r\n")
    m = buf.match_line(INSERTED)
    assert m is not None and m[1] == b"12"
    assert len(buf) == len(b"INSERTED 13\r\n")
    m = buf.match_line(INSERTED)
    assert m is not None and m[1] == b"13"
    assert len(buf) == 0 and buf.match_line(INSERTED) is None


@pytest.mark.parametrize(
    "chunks",
    [
        [b"INSERTED 12\r"],  # not all here
        [b"INSERTED 1", b"2\r\n"],  # all here, but in two chunks: not merged by a match
        [b"BURIED 12\r\n"],  # another line
        [b"INSERTED 12345678901234567890\r\n"],  # too many digits for the pattern
    ],
)
def test_match_line_changes_nothing_when_it_fails(chunks: list[bytes]) -> None:
    buf = buffer(*chunks)
    before = len(buf)
    assert buf.match_line(INSERTED) is None
    assert len(buf) == before and buf.work == 0
    # The line is still there for extract_line, which merges chunks if need be.
    line = b"".join(chunks)
    expected = line[:-2] if line.endswith(b"\r\n") else None
    assert buf.extract_line() == expected


def test_extract_body_collects_a_body_in_pieces() -> None:
    buf = buffer(b"RESERVED 1 6\r\nab")
    assert buf.extract_line() == b"RESERVED 1 6"
    assert buf.extract_body(6) is None
    assert buf.in_body
    buf.feed(b"\r\n")
    assert buf.extract_body(6) is None
    buf.feed(b"cd\r")
    assert buf.extract_body(6) is None
    buf.feed(b"\nDELETED\r\n")  # the body's CRLF and the next reply in one chunk
    assert buf.extract_body(6) == b"ab\r\ncd"
    assert not buf.in_body
    assert buf.extract_line() == b"DELETED"
    assert len(buf) == 0


def test_extract_body_framed_by_its_size_alone() -> None:
    buf = buffer(b"\r\n\r\n\r\n")
    assert buf.extract_body(2) == b"\r\n"
    assert buf.extract_body(0) == b""
    assert len(buf) == 0


@pytest.mark.parametrize("after", [b"XY", b"\n\r", b"\r\r", b"\rX"])
@pytest.mark.parametrize("pieces", [False, True])
def test_extract_body_refuses_a_body_not_followed_by_crlf(after: bytes, pieces: bool) -> None:
    data = b"abc" + after
    buf = buffer(data[:2] if pieces else data)
    with pytest.raises(bp.RemoteProtocolError, match="not followed by CRLF"):
        if pieces:
            assert buf.extract_body(3) is None
            buf.feed(data[2:])
        buf.extract_body(3)


def test_line_limit_before_and_with_the_crlf() -> None:
    buf = buffer(b"x" * 222 + b"\r\n")  # 224 bytes with its CRLF: the longest line
    assert buf.extract_line() == b"x" * 222
    buf = buffer(b"x" * 223 + b"\r\n")
    with pytest.raises(bp.RemoteProtocolError, match="max_line_size"):
        buf.extract_line()
    buf = buffer(b"x" * 100, b"x" * 124)  # no CRLF, and already too long to end well
    with pytest.raises(bp.RemoteProtocolError, match="max_line_size"):
        buf.extract_line()


def test_eof_is_a_flag() -> None:
    buf = buffer(b"DEL")
    assert not buf.at_eof
    buf.feed_eof()
    assert buf.at_eof
    assert buf.extract_line() is None and len(buf) == 3


frames = st.lists(
    st.one_of(
        st.integers(0, 2**64).map(lambda n: ("match", b"INSERTED %d" % n)),
        st.binary(max_size=30).map(lambda b: ("line", b.replace(b"\n", b""))),
        st.binary(max_size=30).map(lambda b: ("body", b)),
    ),
    max_size=12,
)


@given(frames, st.lists(st.integers(min_value=0), max_size=12))
def test_frames_read_back_whatever_the_chunks(
    items: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    # Lines (a CR may end one early), matched lines and bodies, fed in any chunks,
    # read back as they were written: a match where the whole line is in one
    # piece, the same line by extract_line otherwise.
    items = [(kind, data.split(b"\r")[0] if kind == "line" else data) for kind, data in items]
    stream = b"".join(data + b"\r\n" for _, data in items)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    buf = ReceiveBuffer(2**20, 2**20)
    got: list[bytes] = []
    pending = list(items)
    for chunk in chunks:
        buf.feed(chunk)
        while pending:
            kind, data = pending[0]
            if kind == "body":
                body = buf.extract_body(len(data))
                if body is None:
                    break
                got.append(body)
            else:
                m = buf.match_line(INSERTED) if kind == "match" else None
                line = m[0][:-2] if m is not None else buf.extract_line()
                if line is None:
                    break
                got.append(line)
            pending.pop(0)
    assert got == [data for _, data in items]
    assert len(buf) == 0 and not buf.in_body
