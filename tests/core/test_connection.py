"""Bytes to events: the reply table (``bp.REPLIES``) against one written from the
protocol notes, the reply matrix (every command x every reply word x arity x body),
reply semantics, EOF, the state the connection tracks, pipelining, chunking
independence (hypothesis), the fast path against the general rule (hypothesis, and
mutated patterns it must catch), limits, and linear cost measured by counting work."""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stats_samples import (
    JOB_EXPECTED,
    JOB_UNQUOTED,
    SERVER_SAMPLES,
    STATS_1_12,
    TUBE_EXPECTED,
    TUBE_LIST,
    TUBE_LIST_EXPECTED,
    TUBE_UNQUOTED,
)

import beanproto as bp
from beanproto import _readers, _replies

Outcome = tuple[list[Any], bool]  # (events, ended in RemoteProtocolError)

# -- payloads (the stats samples are stats_samples.py's, shared with test_stats.py) ----------

SERVER_PAYLOAD = STATS_1_12
SERVER_STATS = bp.ServerStats(**SERVER_SAMPLES["1.12"][1])
JOB_PAYLOAD = JOB_UNQUOTED
JOB_STATS = bp.JobStats(**JOB_EXPECTED)
JOB_ID = JOB_STATS.id  # the id the payload describes, and so the one stats-job asks for
TUBE_PAYLOAD = TUBE_UNQUOTED
TUBE_STATS = bp.TubeStats(**TUBE_EXPECTED)
LIST_PAYLOAD = TUBE_LIST
TUBES = bp.TubeList(TUBE_LIST_EXPECTED)

JOB_BODY = b"a\r\n\x00b\xff\r"  # 7 bytes: CRLF, NUL and non-ASCII inside a body
assert len(JOB_BODY) == 7

# -- the reply matrix ------------------------------------------------------------------------

WORDS = [
    "INSERTED",
    "BURIED",
    "USING",
    "RESERVED",
    "FOUND",
    "OK",
    "DEADLINE_SOON",
    "TIMED_OUT",
    "DELETED",
    "RELEASED",
    "TOUCHED",
    "KICKED",
    "WATCHING",
    "PAUSED",
    "NOT_FOUND",
    "NOT_IGNORED",
    "EXPECTED_CRLF",
    "JOB_TOO_BIG",
    "DRAINING",
    "BAD_FORMAT",
    "UNKNOWN_COMMAND",
    "OUT_OF_MEMORY",
    "INTERNAL_ERROR",
]

SAMPLES: dict[type[bp.Command], bp.Command] = {
    bp.Put: bp.Put(b"x"),
    bp.Use: bp.Use("t"),
    bp.Reserve: bp.Reserve(),
    bp.ReserveWithTimeout: bp.ReserveWithTimeout(5),
    bp.ReserveJob: bp.ReserveJob(7),
    bp.Delete: bp.Delete(7),
    bp.Release: bp.Release(7),
    bp.Bury: bp.Bury(7),
    bp.Touch: bp.Touch(7),
    bp.Watch: bp.Watch("t"),
    bp.Ignore: bp.Ignore("t"),
    bp.Peek: bp.Peek(7),
    bp.PeekReady: bp.PeekReady(),
    bp.PeekDelayed: bp.PeekDelayed(),
    bp.PeekBuried: bp.PeekBuried(),
    bp.Kick: bp.Kick(3),
    bp.KickJob: bp.KickJob(7),
    bp.StatsJob: bp.StatsJob(JOB_ID),
    bp.StatsTube: bp.StatsTube("t"),
    bp.Stats: bp.Stats(),
    bp.ListTubes: bp.ListTubes(),
    bp.ListTubeUsed: bp.ListTubeUsed(),
    bp.ListTubesWatched: bp.ListTubesWatched(),
    bp.PauseTube: bp.PauseTube("t", 5),
    bp.Quit: bp.Quit(),
}

Key = tuple[str, int, bool]  # (reply word, arguments on the line, a body follows)
GENERAL: dict[Key, Any] = {
    ("BAD_FORMAT", 0, False): bp.BadFormat(),
    ("UNKNOWN_COMMAND", 0, False): bp.UnknownCommand(),
    ("OUT_OF_MEMORY", 0, False): bp.OutOfMemory(),
    ("INTERNAL_ERROR", 0, False): bp.InternalError(),
}
NOT_FOUND: dict[Key, Any] = {("NOT_FOUND", 0, False): bp.NotFound()}
RESERVE_ROW: dict[Key, Any] = {
    ("RESERVED", 2, True): bp.Reserved(7, JOB_BODY),
    ("DEADLINE_SOON", 0, False): bp.DeadlineSoon(),
    ("TIMED_OUT", 0, False): bp.TimedOut(),
}
FOUND_ROW: dict[Key, Any] = {("FOUND", 2, True): bp.Found(7, JOB_BODY), **NOT_FOUND}

# Written from protocol-notes §2-§3, for the sample command of each type above.
EXPECTED: dict[type[bp.Command], dict[Key, Any]] = {
    bp.Put: {
        ("INSERTED", 1, False): bp.Inserted(7),
        ("BURIED", 1, False): bp.Buried(7),
        ("EXPECTED_CRLF", 0, False): bp.ExpectedCrlf(),
        ("JOB_TOO_BIG", 0, False): bp.JobTooBig(),
        ("DRAINING", 0, False): bp.Draining(),
    },
    bp.Use: {("USING", 1, False): bp.Using("t")},
    bp.Reserve: RESERVE_ROW,
    bp.ReserveWithTimeout: RESERVE_ROW,
    bp.ReserveJob: {("RESERVED", 2, True): bp.Reserved(7, JOB_BODY), **NOT_FOUND},
    bp.Delete: {("DELETED", 0, False): bp.Deleted(), **NOT_FOUND},
    bp.Release: {
        ("RELEASED", 0, False): bp.Released(),
        ("BURIED", 0, False): bp.Buried(None),
        **NOT_FOUND,
    },
    bp.Bury: {("BURIED", 0, False): bp.Buried(None), **NOT_FOUND},
    bp.Touch: {("TOUCHED", 0, False): bp.Touched(), **NOT_FOUND},
    bp.Watch: {("WATCHING", 1, False): bp.Watching(7)},
    bp.Ignore: {("WATCHING", 1, False): bp.Watching(7), ("NOT_IGNORED", 0, False): bp.NotIgnored()},
    bp.Peek: FOUND_ROW,
    bp.PeekReady: FOUND_ROW,
    bp.PeekDelayed: FOUND_ROW,
    bp.PeekBuried: FOUND_ROW,
    bp.Kick: {("KICKED", 1, False): bp.Kicked(7)},
    bp.KickJob: {("KICKED", 0, False): bp.Kicked(None), **NOT_FOUND},
    bp.StatsJob: {("OK", 1, True): JOB_STATS, **NOT_FOUND},
    bp.StatsTube: {("OK", 1, True): TUBE_STATS, **NOT_FOUND},
    bp.Stats: {("OK", 1, True): SERVER_STATS},
    bp.ListTubes: {("OK", 1, True): TUBES},
    bp.ListTubeUsed: {("USING", 1, False): bp.Using("t")},
    bp.ListTubesWatched: {("OK", 1, True): TUBES},
    bp.PauseTube: {("PAUSED", 0, False): bp.Paused(), **NOT_FOUND},
}
for _kind, _row in EXPECTED.items():
    _row.update(GENERAL)
EXPECTED[bp.Quit] = {}

OK_PAYLOADS: dict[type[bp.Command], bytes] = {
    bp.StatsJob: JOB_PAYLOAD,
    bp.StatsTube: TUBE_PAYLOAD,
    bp.Stats: SERVER_PAYLOAD,
}


def reply_for(kind: type[bp.Command], word: str, arity: int, with_body: bool) -> bytes:
    """A reply of `word` with `arity` arguments, followed by a body chunk if asked."""
    body = OK_PAYLOADS.get(kind, LIST_PAYLOAD) if word == "OK" else JOB_BODY
    if arity == 0:
        args: list[str] = []
    elif arity == 1:
        args = ["t" if word == "USING" else str(len(body)) if word == "OK" else "7"]
    else:
        args = ["7", str(len(body))]
    line = " ".join([word, *args]).encode() + b"\r\n"
    return line + body + b"\r\n" if with_body else line


def drain(conn: bp.Connection) -> Outcome:
    """Every event until NEED_DATA or ConnectionClosed; whether a RemoteProtocolError ended it."""
    events: list[Any] = []
    while True:
        try:
            event = conn.next_event()
        except bp.RemoteProtocolError:
            return events, True
        if event is bp.NEED_DATA:
            return events, False
        events.append(event)
        if type(event) is bp.ConnectionClosed:
            return events, False


def broken_problem(conn: bp.Connection) -> str | None:
    """What is wrong with a connection that should be broken for good, if anything."""
    if conn.state is not bp.State.BROKEN:
        return f"state is {conn.state}, not BROKEN"
    try:
        conn.send(bp.Stats())
    except bp.LocalProtocolError:
        pass
    else:
        return "send() still works"
    for _ in range(2):
        try:
            event = conn.next_event()
        except bp.ProtocolError:
            pass
        else:
            return f"next_event() returned {event!r}"
    return None


def assert_broken(conn: bp.Connection) -> None:
    problem = broken_problem(conn)
    assert problem is None, problem


def test_expected_table_matches_replies() -> None:
    assert set(EXPECTED) == set(bp.REPLIES) == set(SAMPLES)
    assert all(type(SAMPLES[kind]) is kind for kind in SAMPLES)
    for kind, row in bp.REPLIES.items():
        for word, reply in row.items():
            assert isinstance(reply, bp.Reply) and reply.word == word, (kind.__name__, word)
            # Every argument is a number but the tube name of USING.
            assert reply.numbers == (word != b"USING"), (kind.__name__, word)
        actual = {(reply.word.decode(), reply.arity, reply.body) for reply in row.values()}
        assert actual == set(EXPECTED[kind]), kind.__name__


def test_each_reply_builds_its_expected_event() -> None:
    # Each row's build, given the arguments and body that reply_for() writes,
    # makes the event the protocol notes say: the table, read without the reader.
    for kind, row in bp.REPLIES.items():
        for reply in row.values():
            data = reply_for(kind, reply.word.decode(), reply.arity, reply.body)
            line, _, rest = data.partition(b"\r\n")
            parsed, args = _replies.parse_line(SAMPLES[kind], line)
            assert parsed is reply
            body = rest[: int(args[-1])] if reply.body else b""
            event = reply.build(SAMPLES[kind], args, body)
            assert event == EXPECTED[kind][reply.word.decode(), reply.arity, reply.body]


# The usual replies: the one reply of a command's row that has a fast pattern.
USUAL = {
    bp.Put: b"INSERTED",
    bp.Reserve: b"RESERVED",
    bp.ReserveWithTimeout: b"RESERVED",
    bp.PeekReady: b"FOUND",
    bp.PeekDelayed: b"FOUND",
    bp.PeekBuried: b"FOUND",
}


def test_the_usual_replies_have_fast_patterns() -> None:
    assert {kind: reply.word for kind, reply in _replies.USUAL.items()} == USUAL
    for kind, reply in _replies.USUAL.items():
        assert bp.REPLIES[kind][reply.word] is reply
        # The event class builds what the rule builds.
        args = (5, 1)[: reply.arity]
        body = b"x" if reply.body else b""
        assert reply.event is not None
        built = reply.event(5, body) if reply.body else reply.event(5)
        assert built == reply.build(SAMPLES[kind], args, body)
    # peek and reserve-job echo the id asked for: the rule checks it, so they have
    # no usual reply, though their rows hold the same FOUND and RESERVED.
    assert bp.REPLIES[bp.Peek][b"FOUND"] is bp.REPLIES[bp.PeekReady][b"FOUND"]
    assert bp.REPLIES[bp.ReserveJob][b"RESERVED"] is bp.REPLIES[bp.Reserve][b"RESERVED"]
    for kind, row in bp.REPLIES.items():
        for reply in row.values():
            assert (reply.fast is None) == (reply.event is None)
            if reply.fast is not None:
                assert reply.word in (b"INSERTED", b"RESERVED", b"FOUND"), kind


@pytest.mark.parametrize("kind", list(bp.REPLIES), ids=lambda k: k.__name__)
def test_reply_matrix(kind: type[bp.Command]) -> None:
    words = sorted(set(WORDS) | {w.decode() for row in bp.REPLIES.values() for w in row})
    assert len(words) == len(WORDS)
    failures = []
    checked = 0
    for word in words:
        for arity in (0, 1, 2):
            for with_body in (False, True):
                data = reply_for(kind, word, arity, with_body)
                conn = bp.Connection()
                conn.send(SAMPLES[kind])
                if kind is bp.Quit:
                    assert conn.state is bp.State.QUIT_SENT
                conn.receive_data(data)
                conn.receive_data(b"")
                row = EXPECTED[kind]
                if (word, arity, with_body) in row:
                    expected: Outcome = (
                        [row[word, arity, with_body], bp.ConnectionClosed()],
                        False,
                    )
                elif with_body and (word, arity, False) in row:
                    # the line is a whole reply; the chunk after it is unsolicited
                    expected = ([row[word, arity, False]], True)
                else:
                    expected = ([], True)
                try:
                    outcome = drain(conn)
                except Exception as exc:
                    failures.append(f"{data[:40]!r}: raised {exc!r}")
                    continue
                if outcome != expected:
                    failures.append(f"{data[:40]!r}: got {outcome}, expected {expected}")
                    continue
                if expected[1]:
                    problem = broken_problem(conn)
                else:
                    problem = None if conn.state is bp.State.CLOSED else f"state {conn.state}"
                    if conn.next_event() != bp.ConnectionClosed():
                        problem = "closed, but next_event() is not ConnectionClosed()"
                if problem:
                    failures.append(f"{data[:40]!r}: {problem}")
                    continue
                checked += 1
    assert not failures, "\n".join(failures)
    assert checked == len(words) * 6


# -- reply semantics -------------------------------------------------------------------------


def outcome_of(commands: Sequence[bp.Command], data: bytes, eof: bool = False) -> Outcome:
    conn = bp.Connection()
    for cmd in commands:
        conn.send(cmd)
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    return drain(conn)


def test_buried_carries_an_id_only_after_put() -> None:
    assert outcome_of([bp.Put(b"x")], b"BURIED 9\r\n") == ([bp.Buried(9)], False)
    assert outcome_of([bp.Bury(9)], b"BURIED\r\n") == ([bp.Buried(None)], False)
    assert outcome_of([bp.Release(9)], b"BURIED\r\n") == ([bp.Buried(None)], False)
    assert outcome_of([bp.Put(b"x")], b"BURIED\r\n") == ([], True)
    assert outcome_of([bp.Bury(9)], b"BURIED 9\r\n") == ([], True)
    assert outcome_of([bp.Release(9)], b"BURIED 9\r\n") == ([], True)


def test_kicked_carries_a_count_only_after_kick() -> None:
    assert outcome_of([bp.Kick(5)], b"KICKED 3\r\n") == ([bp.Kicked(3)], False)
    assert outcome_of([bp.Kick(5)], b"KICKED 0\r\n") == ([bp.Kicked(0)], False)
    assert outcome_of([bp.KickJob(5)], b"KICKED\r\n") == ([bp.Kicked(None)], False)
    assert outcome_of([bp.Kick(5)], b"KICKED\r\n") == ([], True)
    assert outcome_of([bp.KickJob(5)], b"KICKED 1\r\n") == ([], True)


def test_using_must_echo_the_used_tube() -> None:
    assert outcome_of([bp.Use("a")], b"USING a\r\n") == ([bp.Using("a")], False)
    for reply in (b"USING b\r\n", b"USING A\r\n", b"USING a \r\n", b"USING \r\n", b"USING\r\n"):
        assert outcome_of([bp.Use("a")], reply) == ([], True), reply
    assert outcome_of([bp.ListTubeUsed()], b"USING b\r\n") == ([bp.Using("b")], False)
    for reply in (b"USING -x\r\n", b"USING a b\r\n", "USING é\r\n".encode(), b"USING a:b\r\n"):
        assert outcome_of([bp.ListTubeUsed()], reply) == ([], True), reply


def test_found_id_must_match_peek() -> None:
    assert outcome_of([bp.Peek(7)], b"FOUND 7 1\r\nx\r\n") == ([bp.Found(7, b"x")], False)
    assert outcome_of([bp.Peek(7)], b"FOUND 8 1\r\nx\r\n") == ([], True)
    assert outcome_of([bp.PeekReady()], b"FOUND 8 1\r\nx\r\n") == ([bp.Found(8, b"x")], False)


def test_reserved_id_must_match_reserve_job() -> None:
    ok = ([bp.Reserved(7, b"x")], False)
    assert outcome_of([bp.ReserveJob(7)], b"RESERVED 7 1\r\nx\r\n") == ok
    assert outcome_of([bp.ReserveJob(7)], b"RESERVED 8 1\r\nx\r\n") == ([], True)
    assert outcome_of([bp.Reserve()], b"RESERVED 8 1\r\nx\r\n") == ([bp.Reserved(8, b"x")], False)


def test_stats_job_must_describe_the_job_asked_for() -> None:
    data = b"OK %d\r\n%b\r\n" % (len(JOB_PAYLOAD), JOB_PAYLOAD)
    assert outcome_of([bp.StatsJob(JOB_ID)], data) == ([JOB_STATS], False)
    assert outcome_of([bp.StatsJob(7)], data) == ([], True)


BAD_NUMBERS = [
    b"+5",
    b"-5",
    b" 5",
    b"5 ",
    b"",
    b"5x",
    b"0x5",
    b"1_0",
    b"5.0",
    b"1e3",
    "\uff15".encode(),  # fullwidth digit five
    "\u0663".encode(),  # Arabic-Indic digit three
    b"\xb2",  # superscript two in latin-1
    b"18446744073709551616",
    b"99999999999999999999",
    b"1" * 30,
]


@pytest.mark.parametrize("token", BAD_NUMBERS)
def test_malformed_numbers_refused(token: bytes) -> None:
    for cmd, line in [
        (bp.Put(b"x"), b"INSERTED %b\r\n"),
        (bp.Put(b"x"), b"BURIED %b\r\n"),
        (bp.Kick(1), b"KICKED %b\r\n"),
        (bp.Watch("t"), b"WATCHING %b\r\n"),
        (bp.Reserve(), b"RESERVED %b 1\r\nx\r\n"),
        (bp.Reserve(), b"RESERVED 1 %b\r\nx\r\n"),
        (bp.PeekReady(), b"FOUND %b 1\r\nx\r\n"),
        (bp.ListTubes(), b"OK %b\r\n---\n\r\n"),
    ]:
        assert outcome_of([cmd], line % token, eof=True) == ([], True), line % token


def test_largest_numbers_accepted() -> None:
    big = 2**64 - 1
    assert outcome_of([bp.Put(b"x")], b"INSERTED %d\r\n" % big) == ([bp.Inserted(big)], False)
    data = b"RESERVED %d 0\r\n\r\n" % big
    assert outcome_of([bp.Reserve()], data) == ([bp.Reserved(big, b"")], False)


@pytest.mark.parametrize(
    "data",
    [
        b"RESERVED 7 3\r\nabcXY",
        b"RESERVED 7 3\r\nabc\n\r",
        b"RESERVED 7 3\r\nabc\r\r\n",
        b"RESERVED 7 3\r\nabcd\r\n",
        b"RESERVED 7 3\r\nab\r\nXY",
        b"RESERVED 7 0\r\nX\r\n",
    ],
)
def test_body_not_followed_by_crlf_refused(data: bytes) -> None:
    assert outcome_of([bp.Reserve(), bp.Reserve()], data) == ([], True)
    assert_outcome_same_byte_by_byte([bp.Reserve(), bp.Reserve()], data)


def test_body_size_over_limit_refused_at_the_header() -> None:
    conn = bp.Connection(max_body_size=10)
    assert conn.max_body_size == 10
    conn.send(bp.Reserve())
    conn.send(bp.Reserve())
    conn.receive_data(b"RESERVED 1 10\r\n0123456789\r\n")
    assert conn.next_event() == bp.Reserved(1, b"0123456789")
    conn.receive_data(b"RESERVED 2 11\r\n")  # no body byte yet
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_broken(conn)
    for cmd in (bp.Stats(), bp.ListTubes(), bp.Peek(1)):
        conn = bp.Connection(max_body_size=0)
        conn.send(cmd)
        conn.receive_data(b"FOUND 1 1\r\n" if type(cmd) is bp.Peek else b"OK 1\r\n")
        with pytest.raises(bp.RemoteProtocolError):
            conn.next_event()


def test_unexpected_body_reply_refused_at_its_line() -> None:
    # A reply word the pending command cannot get is refused when its line arrives,
    # not after buffering the body it announces (up to max_body_size, 1 GiB by default).
    for cmd, line in [
        (bp.Put(b"x"), b"RESERVED 1 1000000\r\n"),
        (bp.Delete(1), b"OK 1000000\r\n"),
        (bp.Stats(), b"FOUND 1 1000000\r\n"),
        (bp.Put(b"x"), b"OK 1000000\r\nxyz"),
        (bp.Peek(1), b"RESERVED 1 1000000\r\n"),
    ]:
        conn = bp.Connection()
        conn.send(cmd)
        conn.receive_data(line)
        with pytest.raises(bp.RemoteProtocolError):
            conn.next_event()
        assert conn.state is bp.State.BROKEN


def test_mismatched_id_refused_at_its_line() -> None:
    # The id on a FOUND/RESERVED line is known to be wrong before the body arrives.
    for cmd, line in [
        (bp.Peek(1), b"FOUND 2 1000000\r\n"),
        (bp.ReserveJob(1), b"RESERVED 2 1000000\r\n"),
        (bp.Peek(1), b"FOUND x 1000000\r\n"),
        (bp.Reserve(), b"RESERVED +1 1000000\r\n"),
    ]:
        conn = bp.Connection()
        conn.send(cmd)
        conn.receive_data(line)
        with pytest.raises(bp.RemoteProtocolError):
            conn.next_event()
        assert conn.state is bp.State.BROKEN


def test_line_limit_applies_without_crlf() -> None:
    conn = bp.Connection()
    assert conn.max_line_size == 224
    conn.send(bp.ListTubeUsed())
    conn.receive_data(b"USING " + b"a" * 200)  # 206 bytes, may still end well
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"a" * 100)  # no CRLF, and already longer than 224
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_broken(conn)
    # the same bytes are fine under a larger limit
    conn = bp.Connection(max_line_size=1000)
    conn.send(bp.ListTubeUsed())
    conn.receive_data(b"USING " + b"a" * 300)
    assert conn.next_event() is bp.NEED_DATA
    # and the longest legal reply line passes the default limit
    tube = "b" * 200
    assert outcome_of([bp.Use(tube)], b"USING %b\r\n" % tube.encode()) == ([bp.Using(tube)], False)


def test_limits_are_validated() -> None:
    with pytest.raises(bp.InvalidArgument):
        bp.Connection(max_line_size=223)
    with pytest.raises(bp.InvalidArgument):
        bp.Connection(max_body_size=-1)
    with pytest.raises(TypeError):
        bp.Connection(max_line_size=300.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bp.Connection(max_body_size=True)
    assert bp.Connection(max_body_size=0).max_body_size == 0


@pytest.mark.parametrize("data", [b"I", b"INSERTED 1\r\n", b"\r\n", b"OK 5\r\n"])
def test_unsolicited_bytes_refused(data: bytes) -> None:
    conn = bp.Connection()
    conn.receive_data(data)
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_broken(conn)
    # also after every owed reply was read
    conn = bp.Connection()
    conn.send(bp.Delete(1))
    conn.receive_data(b"DELETED\r\n" + data)
    assert drain(conn) == ([bp.Deleted()], True)


@pytest.mark.parametrize("data", [b"x", b"USING default\r\n", b"\r\n", b"OK 5\r\n"])
def test_bytes_after_quit_refused(data: bytes) -> None:
    conn = bp.Connection()
    conn.send(bp.ListTubeUsed())
    conn.send(bp.Quit())
    assert conn.state is bp.State.QUIT_SENT
    conn.receive_data(b"USING default\r\n" + data)
    assert drain(conn) == ([bp.Using("default")], True)
    assert_broken(conn)


# -- EOF --------------------------------------------------------------------------------------


def test_eof_with_nothing_owed_closes() -> None:
    conn = bp.Connection()
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    assert conn.state is bp.State.CLOSED
    assert conn.next_event() == bp.ConnectionClosed()
    conn.receive_data(b"")  # a second EOF is harmless
    assert conn.next_event() == bp.ConnectionClosed()
    with pytest.raises(bp.LocalProtocolError):
        conn.receive_data(b"x")
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Stats())


def test_eof_after_quit_closes() -> None:
    conn = bp.Connection()
    assert conn.send(bp.Quit()) == b"quit\r\n"
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Stats())
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    assert conn.state is bp.State.CLOSED
    assert conn.pending == ()


def test_eof_after_replies_and_quit() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.send(bp.Quit())
    conn.receive_data(b"INSERTED 1\r\n")
    conn.receive_data(b"")
    assert drain(conn) == ([bp.Inserted(1), bp.ConnectionClosed()], False)


@pytest.mark.parametrize(
    ("commands", "data"),
    [
        ([bp.Stats()], b""),
        ([bp.Reserve()], b""),
        ([bp.Put(b"x"), bp.Quit()], b""),
        ([bp.Put(b"x"), bp.Put(b"y")], b"INSERTED 1\r\n"),
        ([bp.Put(b"x")], b"INSERTED 1"),
        ([bp.Put(b"x")], b"INSERTED 1\r"),
        ([bp.Reserve()], b"RESERVED 1 5\r\n"),
        ([bp.Reserve()], b"RESERVED 1 5\r\nab"),
        ([bp.Reserve()], b"RESERVED 1 5\r\nabcde"),
        ([bp.Reserve()], b"RESERVED 1 5\r\nabcde\r"),
    ],
)
def test_eof_while_a_reply_is_owed_or_incomplete(commands: list[bp.Command], data: bytes) -> None:
    conn = bp.Connection()
    for cmd in commands:
        conn.send(cmd)
    if data:
        conn.receive_data(data)
    before = drain(conn)[0]
    conn.receive_data(b"")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_broken(conn)
    assert before == ([bp.Inserted(1)] if data == b"INSERTED 1\r\n" else [])


def test_complete_replies_before_eof_come_first() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.send(bp.Reserve())
    conn.send(bp.Stats())
    conn.receive_data(b"INSERTED 1\r\nRESERVED 1 1\r\nx\r\nOK 5\r\n---\n")
    conn.receive_data(b"")
    assert conn.next_event() == bp.Inserted(1)
    assert conn.next_event() == bp.Reserved(1, b"x")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()


def test_receive_data_after_eof_is_local_error() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.receive_data(b"INSERTED 1\r\n")
    conn.receive_data(b"")
    with pytest.raises(bp.LocalProtocolError):
        conn.receive_data(b"x")
    assert drain(conn) == ([bp.Inserted(1), bp.ConnectionClosed()], False)


# -- connection state ------------------------------------------------------------------------


def feed(conn: bp.Connection, data: bytes) -> list[Any]:
    conn.receive_data(data)
    events, failed = drain(conn)
    assert not failed
    return events


def test_used_tube_changes_only_on_using() -> None:
    conn = bp.Connection()
    assert conn.used_tube == "default"
    conn.send(bp.Use("a"))
    assert conn.used_tube == "default"
    assert feed(conn, b"USING a\r\n") == [bp.Using("a")]
    assert conn.used_tube == "a"
    conn.send(bp.Use("b"))
    assert feed(conn, b"BAD_FORMAT\r\n") == [bp.BadFormat()]
    assert conn.used_tube == "a"
    conn.send(bp.ListTubeUsed())
    assert feed(conn, b"USING c\r\n") == [bp.Using("c")]
    assert conn.used_tube == "c"


def test_watched_tubes_change_only_on_replies() -> None:
    conn = bp.Connection()
    assert conn.watched_tubes == ("default",)
    conn.send(bp.Watch("a"))
    assert conn.watched_tubes == ("default",)
    assert feed(conn, b"WATCHING 2\r\n") == [bp.Watching(2)]
    assert conn.watched_tubes == ("default", "a")
    conn.send(bp.Watch("b"))
    assert feed(conn, b"OUT_OF_MEMORY\r\n") == [bp.OutOfMemory()]
    assert conn.watched_tubes == ("default", "a")
    conn.send(bp.Watch("a"))  # already watched: same count, no duplicate
    assert feed(conn, b"WATCHING 2\r\n") == [bp.Watching(2)]
    assert conn.watched_tubes == ("default", "a")
    conn.send(bp.Ignore("default"))
    assert feed(conn, b"WATCHING 1\r\n") == [bp.Watching(1)]
    assert conn.watched_tubes == ("a",)
    conn.send(bp.Ignore("a"))
    assert feed(conn, b"NOT_IGNORED\r\n") == [bp.NotIgnored()]
    assert conn.watched_tubes == ("a",)
    conn.send(bp.Ignore("zzz"))  # not watched: the server says the count, nothing changes
    assert feed(conn, b"WATCHING 1\r\n") == [bp.Watching(1)]
    assert conn.watched_tubes == ("a",)
    conn.send(bp.ListTubesWatched())
    assert feed(conn, b"OK 14\r\n---\n- x\n- y.z\n\r\n") == [bp.TubeList(("x", "y.z"))]
    assert conn.watched_tubes == ("x", "y.z")
    conn.send(bp.ListTubes())  # the list of all tubes is not the watch list
    assert feed(conn, b"OK 8\r\n---\n- q\n\r\n") == [bp.TubeList(("q",))]
    assert conn.watched_tubes == ("x", "y.z")


@pytest.mark.parametrize("word", [b"BAD_FORMAT", b"UNKNOWN_COMMAND", b"OUT_OF_MEMORY"])
def test_refused_list_tubes_watched_keeps_watch_list(word: bytes) -> None:
    conn = bp.Connection()
    conn.send(bp.ListTubesWatched())
    assert feed(conn, word + b"\r\n") == [EXPECTED[bp.Stats][word.decode(), 0, False]]
    assert conn.watched_tubes == ("default",)


def test_reserve_waiting() -> None:
    conn = bp.Connection()
    assert not conn.reserve_waiting
    conn.send(bp.ReserveWithTimeout(0))
    assert not conn.reserve_waiting
    assert feed(conn, b"TIMED_OUT\r\n") == [bp.TimedOut()]
    conn.send(bp.Reserve())
    assert conn.reserve_waiting
    assert feed(conn, b"RESERVED 1 0\r\n\r\n") == [bp.Reserved(1, b"")]
    assert not conn.reserve_waiting
    conn.send(bp.ReserveWithTimeout(5))
    assert conn.reserve_waiting
    conn.receive_data(b"DEADLINE_SOO")
    assert conn.next_event() is bp.NEED_DATA
    assert conn.reserve_waiting
    assert feed(conn, b"N\r\n") == [bp.DeadlineSoon()]
    assert not conn.reserve_waiting
    conn.send(bp.Reserve())
    conn.send(bp.ReserveWithTimeout(1))
    assert feed(conn, b"TIMED_OUT\r\n") == [bp.TimedOut()]
    assert conn.reserve_waiting
    assert feed(conn, b"BAD_FORMAT\r\n") == [bp.BadFormat()]
    assert not conn.reserve_waiting
    conn.send(bp.ReserveJob(3))
    assert not conn.reserve_waiting
    assert feed(conn, b"NOT_FOUND\r\n") == [bp.NotFound()]
    conn.send(bp.Reserve())
    conn.send(bp.Stats())  # queued behind the reserve: the reserve is what waits
    assert conn.reserve_waiting
    assert feed(conn, b"RESERVED 2 1\r\nx\r\n") == [bp.Reserved(2, b"x")]
    assert not conn.reserve_waiting
    assert conn.pending == (bp.Stats(),)
    # After the reserve was answered, a command sent in its place does not wait.
    assert feed(conn, b"BAD_FORMAT\r\n") == [bp.BadFormat()]
    conn.send(bp.Reserve())
    conn.send(bp.Delete(1))
    assert feed(conn, b"TIMED_OUT\r\nNOT_FOUND\r\n") == [bp.TimedOut(), bp.NotFound()]
    conn.send(bp.Delete(1))
    conn.send(bp.Delete(1))
    assert not conn.reserve_waiting


def test_reserve_waiting_in_a_long_pending_list() -> None:
    # reserve_waiting looks through every command pending, however many.
    puts = 1100
    conn = bp.Connection()
    for _ in range(puts):
        conn.send(bp.Put(b"x"))
    conn.send(bp.Reserve())
    conn.send(bp.Put(b"x"))
    assert conn.reserve_waiting
    assert len(feed(conn, b"INSERTED 1\r\n" * puts)) == puts
    assert conn.reserve_waiting and conn.pending == (bp.Reserve(), bp.Put(b"x"))
    assert feed(conn, b"RESERVED 1 0\r\n\r\n") == [bp.Reserved(1, b"")]
    assert not conn.reserve_waiting
    # A reserve answered is not waiting, with many commands still pending.
    conn = bp.Connection()
    conn.send(bp.Reserve())
    for _ in range(puts):
        conn.send(bp.Put(b"x"))
    assert feed(conn, b"RESERVED 1 0\r\n\r\n" + b"INSERTED 1\r\n" * (puts - 10))
    assert not conn.reserve_waiting and len(conn.pending) == 10


def test_pending_is_fifo() -> None:
    conn = bp.Connection()
    cmds = [bp.Put(b"a"), bp.Use("x"), bp.Reserve(), bp.Delete(1), bp.Stats()]
    for cmd in cmds:
        conn.send(cmd)
    assert conn.pending == tuple(cmds)
    assert feed(conn, b"INSERTED 1\r\nUSING x\r\n") == [bp.Inserted(1), bp.Using("x")]
    assert conn.pending == tuple(cmds[2:])
    assert feed(conn, b"RESERVED 1 1\r\na\r\nNOT_FOUND\r\n") == [
        bp.Reserved(1, b"a"),
        bp.NotFound(),
    ]
    assert conn.pending == (bp.Stats(),)
    assert conn.buffered == 0
    conn.receive_data(b"OK 9")
    assert conn.next_event() is bp.NEED_DATA
    assert conn.buffered == 4


def test_send_failed_breaks_the_connection() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.send_failed()
    assert conn.state is bp.State.BROKEN
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Stats())
    with pytest.raises(bp.LocalProtocolError):
        conn.next_event()


def test_send_after_quit_and_non_commands() -> None:
    conn = bp.Connection()
    with pytest.raises(TypeError):
        conn.send("junk")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send(b"stats\r\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send(None)  # type: ignore[arg-type]
    assert conn.pending == ()
    conn.send(bp.Quit())
    for cmd in (bp.Stats(), bp.Quit(), bp.Put(b"x")):
        with pytest.raises(bp.LocalProtocolError):
            conn.send(cmd)
    assert conn.pending == (bp.Quit(),)


def test_error_breaks_the_connection_for_good() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.receive_data(b"DELETED\r\n")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_broken(conn)
    conn.receive_data(b"INSERTED 1\r\n")  # ignored or refused, never an event
    with pytest.raises(bp.ProtocolError):
        conn.next_event()


# -- pipelining and the reply pool ------------------------------------------------------------

Triple = tuple[bp.Command, bytes, Any]


def _fixed_pool() -> list[Triple]:
    stats = b"OK %d\r\n%b\r\n" % (len(SERVER_PAYLOAD), SERVER_PAYLOAD)
    return [
        (bp.Put(b"x"), b"INSERTED 12\r\n", bp.Inserted(12)),
        (bp.Put(b"x"), b"BURIED 13\r\n", bp.Buried(13)),
        (bp.Put(b"x"), b"JOB_TOO_BIG\r\n", bp.JobTooBig()),
        (bp.Use("tube-1"), b"USING tube-1\r\n", bp.Using("tube-1")),
        (bp.ReserveWithTimeout(0), b"TIMED_OUT\r\n", bp.TimedOut()),
        (bp.Reserve(), b"RESERVED 5 7\r\n%b\r\n" % JOB_BODY, bp.Reserved(5, JOB_BODY)),
        (bp.ReserveJob(5), b"RESERVED 5 2\r\n\r\n\r\n", bp.Reserved(5, b"\r\n")),
        (bp.Delete(5), b"DELETED\r\n", bp.Deleted()),
        (bp.Delete(5), b"NOT_FOUND\r\n", bp.NotFound()),
        (bp.Release(5, 1, 2), b"RELEASED\r\n", bp.Released()),
        (bp.Bury(5), b"BURIED\r\n", bp.Buried()),
        (bp.Touch(5), b"TOUCHED\r\n", bp.Touched()),
        (bp.Peek(5), b"FOUND 5 0\r\n\r\n", bp.Found(5, b"")),
        (bp.PeekBuried(), b"NOT_FOUND\r\n", bp.NotFound()),
        (bp.Kick(9), b"KICKED 9\r\n", bp.Kicked(9)),
        (bp.KickJob(9), b"KICKED\r\n", bp.Kicked()),
        (bp.Stats(), stats, SERVER_STATS),
        (bp.StatsJob(JOB_ID), b"OK %d\r\n%b\r\n" % (len(JOB_PAYLOAD), JOB_PAYLOAD), JOB_STATS),
        (bp.StatsTube("t"), b"OK %d\r\n%b\r\n" % (len(TUBE_PAYLOAD), TUBE_PAYLOAD), TUBE_STATS),
        (bp.ListTubes(), b"OK %d\r\n%b\r\n" % (len(LIST_PAYLOAD), LIST_PAYLOAD), TUBES),
        (bp.ListTubeUsed(), b"USING tube-1\r\n", bp.Using("tube-1")),
        (bp.PauseTube("t", 1), b"PAUSED\r\n", bp.Paused()),
        (bp.Watch("w"), b"WATCHING 2\r\n", bp.Watching(2)),
        (bp.Ignore("w"), b"WATCHING 1\r\n", bp.Watching(1)),
        (bp.Ignore("w"), b"NOT_IGNORED\r\n", bp.NotIgnored()),
        (bp.StatsTube("t"), b"UNKNOWN_COMMAND\r\n", bp.UnknownCommand()),
        (bp.StatsJob(7), b"NOT_FOUND\r\n", bp.NotFound()),
        (bp.ReserveJob(8), b"NOT_FOUND\r\n", bp.NotFound()),
        (bp.Reserve(), b"DEADLINE_SOON\r\n", bp.DeadlineSoon()),
        (bp.ReserveWithTimeout(3), b"TIMED_OUT\r\n", bp.TimedOut()),
        (bp.Put(b""), b"EXPECTED_CRLF\r\n", bp.ExpectedCrlf()),
        (bp.Put(b"y"), b"DRAINING\r\n", bp.Draining()),
        (bp.PeekDelayed(), b"FOUND 1 4\r\n\r\n\r\n\r\n", bp.Found(1, b"\r\n\r\n")),
        (bp.Release(5), b"BURIED\r\n", bp.Buried()),
        (bp.ListTubesWatched(), b"OK 12\r\n---\n- w\n- x\n\r\n", bp.TubeList(("w", "x"))),
        (bp.KickJob(1), b"INTERNAL_ERROR\r\n", bp.InternalError()),
    ]


FIXED_POOL = _fixed_pool()


def test_pipelining_1000_mixed_commands() -> None:
    conn = bp.Connection()
    triples = [FIXED_POOL[(i * 7) % len(FIXED_POOL)] for i in range(1000)]
    wire = b"".join(conn.send(cmd) for cmd, _, _ in triples)
    assert wire.count(b"\r\n") >= 1000
    assert len(conn.pending) == 1000
    conn.receive_data(b"".join(reply for _, reply, _ in triples))
    events, failed = drain(conn)
    assert not failed
    assert events == [event for _, _, event in triples]
    assert [type(e) for e in events] == [type(event) for _, _, event in triples]
    assert conn.pending == ()
    assert conn.buffered == 0
    assert conn.next_event() is bp.NEED_DATA


tubes = st.from_regex(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]{0,30}", fullmatch=True)
u64 = st.integers(0, 2**64 - 1)
job_bodies = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00", b"OK 5\r\n", b"x"])).map(b"".join),
)
_general = st.sampled_from(
    [
        (b"BAD_FORMAT\r\n", bp.BadFormat()),
        (b"UNKNOWN_COMMAND\r\n", bp.UnknownCommand()),
        (b"OUT_OF_MEMORY\r\n", bp.OutOfMemory()),
        (b"INTERNAL_ERROR\r\n", bp.InternalError()),
    ]
)


@st.composite
def _reserved(draw: st.DrawFn) -> Triple:
    id = draw(u64)
    body = draw(job_bodies)
    cmd = draw(
        st.sampled_from(
            [bp.Reserve(), bp.ReserveWithTimeout(0), bp.ReserveWithTimeout(9), bp.ReserveJob(id)]
        )
    )
    return cmd, b"RESERVED %d %d\r\n%b\r\n" % (id, len(body), body), bp.Reserved(id, body)


@st.composite
def _found(draw: st.DrawFn) -> Triple:
    id = draw(u64)
    body = draw(job_bodies)
    cmd = draw(st.sampled_from([bp.Peek(id), bp.PeekReady(), bp.PeekDelayed(), bp.PeekBuried()]))
    return cmd, b"FOUND %d %d\r\n%b\r\n" % (id, len(body), body), bp.Found(id, body)


@st.composite
def _tube_list(draw: st.DrawFn) -> Triple:
    names = draw(st.lists(tubes, max_size=8))
    payload = ("---\n" + "".join(f"- {n}\n" for n in names)).encode()
    cmd = draw(st.sampled_from([bp.ListTubes(), bp.ListTubesWatched()]))
    return cmd, b"OK %d\r\n%b\r\n" % (len(payload), payload), bp.TubeList(tuple(names))


@st.composite
def _general_reply(draw: st.DrawFn) -> Triple:
    cmd = draw(st.sampled_from([c for c in SAMPLES.values() if type(c) is not bp.Quit]))
    reply, event = draw(_general)
    return cmd, reply, event


triples = st.one_of(
    st.sampled_from(FIXED_POOL),
    u64.map(lambda i: (bp.Put(b"x"), b"INSERTED %d\r\n" % i, bp.Inserted(i))),
    u64.map(lambda i: (bp.Put(b"x"), b"BURIED %d\r\n" % i, bp.Buried(i))),
    u64.map(lambda n: (bp.Kick(1), b"KICKED %d\r\n" % n, bp.Kicked(n))),
    u64.map(lambda n: (bp.Watch("w"), b"WATCHING %d\r\n" % n, bp.Watching(n))),
    tubes.map(lambda t: (bp.Use(t), b"USING %b\r\n" % t.encode(), bp.Using(t))),
    tubes.map(lambda t: (bp.ListTubeUsed(), b"USING %b\r\n" % t.encode(), bp.Using(t))),
    _reserved(),
    _found(),
    _tube_list(),
    _general_reply(),
)


def run_chunks(
    commands: Sequence[bp.Command], chunks: Iterable[bytes], eof: bool = False
) -> tuple[Outcome, Any]:
    """Feed chunks one at a time (then EOF if asked), reading events after each; stop at
    the first error. Returns the outcome and what the connection knows at the end."""
    conn = bp.Connection()
    for cmd in commands:
        conn.send(cmd)
    events: list[Any] = []
    for chunk in [*(c for c in chunks if c), *([b""] if eof else [])]:
        conn.receive_data(chunk)
        more, failed = drain(conn)
        events += more
        if failed:
            return (events, True), conn.state
    known = (conn.state, conn.used_tube, conn.watched_tubes, conn.pending, conn.reserve_waiting)
    return (events, False), known


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def assert_outcome_same_byte_by_byte(commands: Sequence[bp.Command], data: bytes) -> None:
    assert run_chunks(commands, [data]) == run_chunks(commands, bytewise(data))


@given(
    st.lists(triples, max_size=20),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_any_chunking_gives_the_same_events(
    pairs: list[Triple], quit: bool, cuts: list[int]
) -> None:
    commands = [cmd for cmd, _, _ in pairs]
    data = b"".join(reply for _, reply, _ in pairs)
    expected = [event for _, _, event in pairs]
    if quit:
        commands.append(bp.Quit())
    whole = run_chunks(commands, [data], eof=quit)
    assert whole[0] == (expected + ([bp.ConnectionClosed()] if quit else []), False)
    assert run_chunks(commands, bytewise(data), eof=quit) == whole
    assert run_chunks(commands, split(data, cuts), eof=quit) == whole


@st.composite
def _mangled(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(triples, min_size=1, max_size=3))
    data = bytearray(b"".join(reply for _, reply, _ in pairs))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        if how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif how == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            del data[at:]
    return bytes(data)


garbage = st.one_of(
    st.binary(max_size=300),
    _mangled(),
    st.lists(
        st.sampled_from(
            [b"\r\n", b"\r", b"\n", b" ", b"0", b"7", b"OK", b"FOUND", b"RESERVED", b"USING"]
        ),
        max_size=30,
    ).map(b"".join),
)


@given(
    st.lists(st.sampled_from(list(SAMPLES.values())), min_size=1, max_size=3),
    garbage,
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_arbitrary_bytes_only_raise_remote_protocol_error(
    commands: list[bp.Command], data: bytes, eof: bool, cuts: list[int]
) -> None:
    if bp.Quit() in commands:  # nothing can be sent after quit
        commands = [*commands[: commands.index(bp.Quit())], bp.Quit()]
    # drain() lets only RemoteProtocolError through as an outcome; anything else fails here
    whole = run_chunks(commands, [data], eof)
    if whole[0][1]:
        assert whole[1] is bp.State.BROKEN
    assert run_chunks(commands, bytewise(data), eof)[0] == whole[0]
    assert run_chunks(commands, split(data, cuts), eof)[0] == whole[0]


@given(
    st.integers(224, 400),
    st.booleans(),
    st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"")),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_line_limit_whatever_the_chunking(
    max_line: int, with_prefix: bool, filler: bytes, with_crlf: bool, cuts: list[int]
) -> None:
    # a line with no CR in it, at least max_line bytes long (or max_line - 1 plus CRLF)
    line = (
        (filler * (max_line // max(len(filler), 1) + 2))[:max_line] if filler else b"x" * max_line
    )
    if with_crlf:
        line = line[:-1] + b"\r\n"
    prefix = b"INSERTED 1\r\n" if with_prefix else b""
    data = prefix + line
    conn = bp.Connection(max_line_size=max_line)
    conn.send(bp.Put(b"x"))
    conn.send(bp.Put(b"y"))
    events: list[Any] = []
    fed = 0
    for chunk in split(data, cuts):
        conn.receive_data(chunk)
        fed += len(chunk)
        more, failed = drain(conn)
        events += more
        if failed:
            break
        # no longer owed the benefit of the doubt once max_line bytes of the line are in
        assert fed - len(prefix) < max_line
    else:
        pytest.fail("an over-long line was not refused")
    assert events == ([bp.Inserted(1)] if with_prefix else [])
    assert conn.state is bp.State.BROKEN


@given(
    st.integers(0, 1000),
    st.integers(1, 10**9),
    st.binary(max_size=50),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_body_limit_whatever_the_chunking(
    max_body: int, over: int, body_start: bytes, cuts: list[int]
) -> None:
    header = b"RESERVED 7 %d\r\n" % (max_body + over)
    data = b"INSERTED 1\r\n" + header + body_start
    conn = bp.Connection(max_body_size=max_body)
    conn.send(bp.Put(b"x"))
    conn.send(bp.Reserve())
    events: list[Any] = []
    fed = 0
    for chunk in split(data, cuts):
        conn.receive_data(chunk)
        fed += len(chunk)
        more, failed = drain(conn)
        events += more
        if failed:
            break
        assert fed < 12 + len(header), "the header was complete and not refused"
    else:
        pytest.fail("an over-size body was not refused")
    assert events == [bp.Inserted(1)]


# -- the fast path and the general rule ------------------------------------------------------
# The reader tries a command's usual reply (INSERTED after put, RESERVED after a
# reserve, FOUND after peek-ready/-delayed/-buried) with one pattern, Reply.fast,
# before the general rule (parse_line). The pattern only shortens the rule: with
# the fast path turned off, every stream must read the same, whatever the chunking.

Result = tuple[list[Any], str | None]  # (events, "ExceptionType: message" of the error)


def read_result(
    commands: Sequence[bp.Command], chunks: Iterable[bytes], max_body_size: int = 2**30
) -> Result:
    """Feed the chunks one at a time, reading every event after each; stop at the
    first exception of any type (a RemoteProtocolError must break the connection)."""
    conn = bp.Connection(max_body_size=max_body_size)
    for cmd in commands:
        conn.send(cmd)
    events: list[Any] = []
    for chunk in chunks:
        if not chunk:
            continue  # b"" would be the end of the stream
        conn.receive_data(chunk)
        while True:
            try:
                event = conn.next_event()
            except Exception as exc:
                if isinstance(exc, bp.RemoteProtocolError):
                    assert conn.state is bp.State.BROKEN
                return events, f"{type(exc).__name__}: {exc}"
            if event is bp.NEED_DATA:
                break
            events.append(event)
    assert conn.pending == tuple(commands[len(events) :])  # the rest, in order
    return events, None


def protocol_error(message: str) -> str:
    return f"RemoteProtocolError: {message}"


# A compiled core (scripts/compiled-core.sh) reads its module globals from C, where a
# patch cannot reach them: the tests that patch the reader run on the pure build, which
# is the same source.
COMPILED = _readers.__file__ is not None and _readers.__file__.endswith((".so", ".pyd"))


@contextlib.contextmanager
def general_rule_only(usual: Any = None) -> Iterator[None]:
    """Turn the fast path off (or give the reader other usual replies)."""
    if COMPILED:
        pytest.skip("patches the reader's globals, which a compiled core does not read")
    usual = {} if usual is None else usual
    with mock.patch.object(_replies, "USUAL", usual), mock.patch.object(_readers, "USUAL", usual):
        yield


# Replies at the edges of the fast patterns, with what they must read as (with
# max_body_size=3): each alone, after a good reply to the same command, fed whole
# and byte by byte, with the fast path and without.
FAST_EDGES: list[tuple[bp.Command, bytes, list[Any], bool]] = [
    (bp.Put(b"x"), b"INSERTED 9999999999999999999\r\n", [bp.Inserted(9999999999999999999)], False),
    (bp.Put(b"x"), b"INSERTED 18446744073709551615\r\n", [bp.Inserted(2**64 - 1)], False),
    (bp.Put(b"x"), b"INSERTED 18446744073709551616\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 99999999999999999999\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 00000000000000000007\r\n", [bp.Inserted(7)], False),
    (bp.Put(b"x"), b"INSERTED 000000000000000000007\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 07\r\n", [bp.Inserted(7)], False),
    (bp.Put(b"x"), b"INSERTED \r\n", [], True),
    (bp.Put(b"x"), b"INSERTED +7\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7 \r\n", [], True),
    (bp.Put(b"x"), b"INSERTED  7\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED\t7\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7 8\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7\n\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7\r\nX", [bp.Inserted(7)], True),  # nothing more is owed
    (bp.Put(b"x"), b"BURIED 7\r\n", [bp.Buried(7)], False),
    (bp.Put(b"x"), b"inserted 7\r\n", [], True),
    (
        bp.Reserve(),
        b"RESERVED 18446744073709551615 1\r\nx\r\n",
        [bp.Reserved(2**64 - 1, b"x")],
        False,
    ),
    (bp.Reserve(), b"RESERVED 18446744073709551616 1\r\nx\r\n", [], True),
    (bp.Reserve(), b"RESERVED 1 0000000000000000001\r\nx\r\n", [bp.Reserved(1, b"x")], False),
    (bp.Reserve(), b"RESERVED 1 9999999999999999999\r\nx\r\n", [], True),  # over 3 bytes
    (bp.Reserve(), b"RESERVED 1 4\r\nabcd\r\n", [], True),  # over max_body_size=3
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\r\n", [bp.Reserved(1, b"abc")], False),
    (bp.Reserve(), b"RESERVED 1 3\r\nabcd\n", [], True),
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\rX", [], True),
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\r\nX", [bp.Reserved(1, b"abc")], True),
    (bp.Reserve(), b"RESERVED 1\r\n", [], True),
    (bp.ReserveWithTimeout(0), b"RESERVED 1 2\r\n\r\n\r\n", [bp.Reserved(1, b"\r\n")], False),
    (bp.ReserveWithTimeout(0), b"RESERVED 1  2\r\nab\r\n", [], True),
    (bp.ReserveWithTimeout(0), b"TIMED_OUT\r\n", [bp.TimedOut()], False),
    (bp.ReserveJob(1), b"RESERVED 2 1\r\nx\r\n", [], True),  # not the job asked for
    (bp.PeekReady(), b"FOUND 18446744073709551615 0\r\n\r\n", [bp.Found(2**64 - 1, b"")], False),
    (bp.PeekDelayed(), b"FOUND 2 1\r\nx\r\n", [bp.Found(2, b"x")], False),
    (bp.PeekBuried(), b"FOUND 2 +1\r\nx\r\n", [], True),
    (bp.PeekBuried(), b"NOT_FOUND\r\n", [bp.NotFound()], False),
    (bp.Peek(1), b"FOUND 2 1\r\nx\r\n", [], True),  # not the job asked for
    (bp.Delete(1), b"DELETED\r\n", [bp.Deleted()], False),
    (bp.Delete(1), b"DELETED \r\n", [], True),
    (bp.Delete(1), b"DELETED\r\nX", [bp.Deleted()], True),
    (bp.Release(1), b"BURIED\r\n", [bp.Buried()], False),
    (bp.Bury(1), b"BURIED 1\r\n", [], True),
]
# A good reply to the same command, to put before each edge case.
FIRST: dict[type[bp.Command], tuple[Any, bytes]] = {
    bp.Put: (bp.Inserted(1), b"INSERTED 1\r\n"),
    bp.Reserve: (bp.Reserved(1, b""), b"RESERVED 1 0\r\n\r\n"),
    bp.ReserveWithTimeout: (bp.Reserved(1, b""), b"RESERVED 1 0\r\n\r\n"),
    bp.ReserveJob: (bp.NotFound(), b"NOT_FOUND\r\n"),
    bp.PeekReady: (bp.Found(1, b""), b"FOUND 1 0\r\n\r\n"),
    bp.PeekDelayed: (bp.Found(1, b""), b"FOUND 1 0\r\n\r\n"),
    bp.PeekBuried: (bp.Found(1, b""), b"FOUND 1 0\r\n\r\n"),
    bp.Peek: (bp.Found(1, b""), b"FOUND 1 0\r\n\r\n"),
    bp.Delete: (bp.Deleted(), b"DELETED\r\n"),
    bp.Release: (bp.Released(), b"RELEASED\r\n"),
    bp.Bury: (bp.Buried(), b"BURIED\r\n"),
}


def edge_streams(
    cmd: bp.Command, data: bytes, events: list[Any], error: bool
) -> Iterator[tuple[list[bp.Command], bytes, Outcome]]:
    """An edge case alone, and after a good reply to the same command."""
    first, prefix = FIRST[type(cmd)]
    yield [cmd], data, (events, error)
    yield [cmd, cmd], prefix + data, ([first, *events], error)


@pytest.mark.parametrize(("cmd", "data", "events", "error"), FAST_EDGES)
def test_edge_replies_read_the_same_with_and_without_the_fast_path(
    cmd: bp.Command, data: bytes, events: list[Any], error: bool
) -> None:
    for commands, stream, expected in edge_streams(cmd, data, events, error):
        results = []
        for fast in (True, False):
            with contextlib.nullcontext() if fast else general_rule_only():
                for chunks in ([stream], bytewise(stream)):
                    result = read_result(commands, chunks, max_body_size=3)
                    assert (result[0], result[1] is not None) == expected, (fast, chunks)
                    assert result[1] is None or result[1].startswith("RemoteProtocolError")
                    results.append(result)
        # The same error too, fed the same way.
        assert results[0] == results[2] and results[1] == results[3]


def usual_with(
    number: bytes = rb"([0-9]{1,19})",
    sep: bytes = b" ",
    end: bytes = b"\r\n",
    word: bytes | None = None,
    kinds: Iterable[type[bp.Command]] = (),
) -> dict[type[bp.Command], bp.Reply]:
    """The reader's usual replies with their patterns written from these parts (the
    defaults give the real ones), and also for ``kinds``."""
    usual = dict(_replies.USUAL)
    for kind in kinds:
        usual[kind] = bp.REPLIES[kind][b"FOUND" if b"FOUND" in bp.REPLIES[kind] else b"RESERVED"]
    for kind, reply in usual.items():
        line = sep.join([reply.word if word is None else word] + [number] * reply.arity) + end
        usual[kind] = reply._replace(fast=re.compile(line).match)
    return usual


def disagreements(usual: dict[type[bp.Command], bp.Reply]) -> list[bytes]:
    """The edge cases that read otherwise with ``usual`` than by the general rule."""
    found = []
    for case in FAST_EDGES:
        for commands, stream, _ in edge_streams(*case):
            with general_rule_only(usual):
                fast = read_result(commands, [stream], max_body_size=3)
            with general_rule_only():
                general = read_result(commands, [stream], max_body_size=3)
            if fast != general:
                found.append(stream)
    return found


@pytest.mark.parametrize(
    "wrong",
    [
        {"number": rb"([0-9]{1,20})"},  # 20 digits may not fit in a u64
        {"number": rb"([0-9]{1,21})"},
        {"number": rb"([0-9]{0,19})"},
        {"number": rb"(\+?[0-9]{1,19})"},
        {"number": rb"([0-9]+)"},
        {"sep": b" +"},
        {"sep": b"\\s"},
        {"end": b"\r?\n"},
        {"end": b"\\s*\r\n"},
        {"word": rb"[A-Z]+"},
        {"word": b"(?i:INSERTED|RESERVED|FOUND)"},
        {"kinds": [bp.Peek, bp.ReserveJob]},  # their ids must be checked
    ],
    ids=repr,
)
def test_the_edge_replies_tell_a_wrong_fast_pattern(wrong: dict[str, Any]) -> None:
    # The comparison above (and the property test below) would catch these
    # mistakes in a fast pattern; the patterns as written agree with the rule.
    assert disagreements(usual_with()) == []
    assert disagreements(usual_with(**wrong)) != []


def test_usual_replies_take_the_fast_path() -> None:
    # Read whole, the usual replies never reach the general rule; anything else
    # (another reply, a 20-digit number, a command that echoes its id) does.
    cases: list[tuple[bp.Command, bytes, Any, int]] = [
        (bp.Put(b"x"), b"INSERTED 5\r\n", bp.Inserted(5), 0),
        (bp.Reserve(), b"RESERVED 5 1\r\nx\r\n", bp.Reserved(5, b"x"), 0),
        (bp.ReserveWithTimeout(0), b"RESERVED 5 0\r\n\r\n", bp.Reserved(5, b""), 0),
        (bp.PeekReady(), b"FOUND 5 1\r\nx\r\n", bp.Found(5, b"x"), 0),
        (bp.PeekDelayed(), b"FOUND 5 1\r\nx\r\n", bp.Found(5, b"x"), 0),
        (bp.PeekBuried(), b"FOUND 5 1\r\nx\r\n", bp.Found(5, b"x"), 0),
        (bp.Put(b"x"), b"INSERTED 18446744073709551615\r\n", bp.Inserted(2**64 - 1), 1),
        (bp.Put(b"x"), b"BURIED 5\r\n", bp.Buried(5), 1),
        (bp.Peek(5), b"FOUND 5 1\r\nx\r\n", bp.Found(5, b"x"), 1),
        (bp.ReserveJob(5), b"RESERVED 5 1\r\nx\r\n", bp.Reserved(5, b"x"), 1),
        (bp.Reserve(), b"TIMED_OUT\r\n", bp.TimedOut(), 1),
        (bp.Delete(5), b"DELETED\r\n", bp.Deleted(), 1),
    ]
    for cmd, data, event, rule_calls in cases:
        if COMPILED:
            pytest.skip("patches the reader's globals, which a compiled core does not read")
        with mock.patch.object(_readers, "parse_line", wraps=_replies.parse_line) as rule:
            assert read_result([cmd, cmd], [data + data]) == ([event, event], None)
        assert rule.call_count == 2 * rule_calls, data


def test_general_rule_only_turns_the_fast_path_off() -> None:
    # Else the comparisons with it would compare the fast path with itself.
    with (
        general_rule_only(),
        mock.patch.object(_readers, "parse_line", wraps=_replies.parse_line) as rule,
    ):
        assert read_result([bp.Put(b"x")], [b"INSERTED 5\r\n"]) == ([bp.Inserted(5)], None)
    assert rule.call_count == 1


# A reply line in the shape of a usual reply, near it or at its edges: numbers of
# 1-22 digits (19 fit the pattern, 20 may or may not fit a u64), leading zeros,
# signs, spaces, other words, arities and line ends; a body of the announced size
# or not, followed by CRLF or not.
_numbers = st.one_of(
    st.text("0123456789", min_size=1, max_size=22).map(str.encode),
    st.tuples(st.integers(0, 3), st.integers(0, 2**64 + 5)).map(
        lambda t: b"0" * t[0] + b"%d" % t[1]
    ),
    st.sampled_from(
        [
            b"18446744073709551615",
            b"18446744073709551616",
            b"9999999999999999999",
            b"99999999999999999999",
            b"0000000000000000001",
            b"00000000000000000001",
            b"000000000000000000001",
        ]
    ),
    st.sampled_from([b"", b"+1", b"-1", b"1_0", b"0x1", b"1.0", "\u0663".encode(), b"\xb2"]),
)
_usual_words = st.one_of(
    st.sampled_from([b"INSERTED", b"RESERVED", b"FOUND"]),
    st.sampled_from([b"BURIED", b"DELETED", b"NOT_FOUND", b"TIMED_OUT", b"INSERTE", b"found"]),
)
_FOR_WORD: dict[bytes, list[bp.Command]] = {
    b"INSERTED": [bp.Put(b"x")],
    b"RESERVED": [bp.Reserve(), bp.ReserveWithTimeout(0), bp.ReserveWithTimeout(5)],
    b"FOUND": [bp.PeekReady(), bp.PeekDelayed(), bp.PeekBuried()],
}
_ANY_COMMAND = [
    *(cmd for cmds in _FOR_WORD.values() for cmd in cmds),
    bp.Peek(1),
    bp.ReserveJob(1),
    bp.Delete(1),
    bp.Release(1),
]


@st.composite
def usual_replies(draw: st.DrawFn) -> tuple[bp.Command, bytes]:
    word = draw(_usual_words)
    if word in _FOR_WORD and draw(st.integers(0, 7)):
        cmd = draw(st.sampled_from(_FOR_WORD[word]))
    else:
        cmd = draw(st.sampled_from(_ANY_COMMAND))
    with_body = word in (b"RESERVED", b"FOUND")
    body = draw(st.binary(max_size=6).map(lambda b: b.replace(b"Z", b"\r\n")))
    args = [draw(_numbers)]
    if with_body:
        right = st.integers(0, 2).map(lambda z: b"0" * z + b"%d" % len(body))
        args.append(draw(st.one_of(right, right, _numbers)))
    arity = draw(st.sampled_from([0] * 8 + [-1, 1]))
    if arity < 0:
        args.pop()
    elif arity > 0:
        args.append(draw(_numbers))
    sep = draw(st.sampled_from([b" "] * 8 + [b"  ", b"\t"]))
    end = draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b" \r\n", b"\r\r\n"]))
    reply = sep.join([word, *args]) + end
    if with_body:
        reply += body + draw(st.sampled_from([b"\r\n"] * 6 + [b"", b"\n", b"X\r\n", b"\r"]))
    return cmd, reply


@given(
    st.lists(usual_replies(), min_size=1, max_size=6),
    st.none() | st.tuples(st.integers(0), st.sampled_from([b" ", b"\r", b"\n", b"0", b"X", b"9"])),
    st.sampled_from([0, 1, 2, 3, 8, 2**30]),
    st.lists(st.integers(min_value=0), max_size=8),
)
@example([(bp.Put(b"x"), b"INSERTED 18446744073709551616\r\n")], None, 2**30, [])
@example([(bp.Reserve(), b"RESERVED 1 4\r\nabcd\r\n")], None, 3, [])
@example([(bp.Put(b"x"), b"INSERTED 99999999999999999999\r\n")], None, 2**30, [])
@example([(bp.Reserve(), b"RESERVED 18446744073709551616 1\r\nx\r\n")], None, 2**30, [])
@example([(bp.PeekReady(), b"FOUND 1 00000000000000000001\r\nx\r\n")], None, 0, [])
@example([(bp.Put(b"x"), b"INSERTED 1\r\n"), (bp.Put(b"x"), b"INSERTED 2\r\n")], (12, b"\r"), 3, [])
def test_fast_path_agrees_with_the_general_rule(
    replies: list[tuple[bp.Command, bytes]],
    junk: tuple[int, bytes] | None,
    max_body: int,
    cuts: list[int],
) -> None:
    commands = [cmd for cmd, _ in replies]
    data = b"".join(reply for _, reply in replies)
    if junk is not None:
        at = junk[0] % (len(data) + 1)
        data = data[:at] + junk[1] + data[at:]
    for chunks in ([data], split(data, cuts)):
        fast = read_result(commands, chunks, max_body)
        with general_rule_only():
            general = read_result(commands, chunks, max_body)
        assert fast == general, chunks


# -- pipelined reserves -----------------------------------------------------------------------
# Consecutive RESERVED replies to pipelined reserves: fed whole, each header is read by
# the fast pattern and each body framed by its size; cut in two anywhere or fed byte
# by byte, lines come in pieces and take the general rule. All must give the same
# events, and the same error at the same reply.


def _res(id: int, body: bytes) -> bytes:
    return b"RESERVED %d %d\r\n%b\r\n" % (id, len(body), body)


def assert_reads_alike(
    commands: Sequence[bp.Command], data: bytes, expected: Result, max_body_size: int = 2**30
) -> None:
    """``data`` gives ``expected`` fed whole, cut in two at every offset, and byte by
    byte; and fed whole without the fast path."""
    assert read_result(commands, [data], max_body_size) == expected
    for i in range(len(data) + 1):
        cut = [data[:i], data[i:]]
        assert read_result(commands, cut, max_body_size) == expected, i
    assert read_result(commands, bytewise(data), max_body_size) == expected
    with general_rule_only():
        assert read_result(commands, [data], max_body_size) == expected


_NOT_CRLF = protocol_error("a body sent by the server is not followed by CRLF")
# Bodies that look like replies, or end like a header would.
_BODIES = [b"", b"x", b"\r\n", b"RESERVED 9 1\r\nx\r\n", b"ab\r", b"\nRESERVED 1 1"]


def test_pipelined_reserves_read_every_reply() -> None:
    replies = [_res(i + 1, body) for i, body in enumerate(_BODIES)]
    events = [bp.Reserved(i + 1, body) for i, body in enumerate(_BODIES)]
    data = b"".join(replies)
    assert_reads_alike([bp.Reserve()] * 6, data, (events, None))
    # Either kind of reserve, in any order.
    kinds = [bp.Reserve(), bp.ReserveWithTimeout(0), bp.ReserveWithTimeout(0), bp.Reserve()]
    assert_reads_alike([*kinds, bp.ReserveWithTimeout(5), bp.Reserve()], data, (events, None))


@pytest.mark.parametrize("at", [0, 1, 2])  # the first, a middle and the last body
@pytest.mark.parametrize("after", [b"XY", b"\n\r", b"\r\r", b"\rX", b"X\n", b"\n\n"])
def test_pipelined_reserves_refuse_a_body_without_crlf(at: int, after: bytes) -> None:
    replies = [_res(1, b"abc"), _res(2, b"de\r\n"), _res(3, b"f")]
    replies[at] = replies[at][:-2] + after
    data = b"".join(replies)
    expected = ([bp.Reserved(1, b"abc"), bp.Reserved(2, b"de\r\n")][:at], _NOT_CRLF)
    assert_reads_alike([bp.Reserve()] * 3, data, expected)
    # The same when the last reserve's reply is followed by one to a fourth command.
    assert_reads_alike([bp.Reserve()] * 3 + [bp.Delete(1)], data + b"DELETED\r\n", expected)


@pytest.mark.parametrize("size", [4, 5, 99, 10**18, 10**19, 10**30])
def test_pipelined_reserves_refuse_a_body_over_max_body_size(size: int) -> None:
    good = [bp.Reserved(1, b"abc"), bp.Reserved(2, b"")]
    header = b"RESERVED 3 %d\r\n" % size
    if size <= 2**64 - 1:
        message = f"the server announced a body of {size} bytes, over max_body_size (3)"
    else:  # not a u64: not a size at all
        message = f"the server sent {header[11:41]!r} where a number belongs"
    # Refused at its header, however much of the body follows, in the middle of the
    # replies...
    whole = b"x" * size + b"\r\n" + _res(4, b"") if size < 100 else b"x" * 100
    for body in [b"", b"abcd", whole]:
        data = _res(1, b"abc") + _res(2, b"") + header + body
        expected = (good, protocol_error(message))
        assert_reads_alike([bp.Reserve()] * 4, data, expected, max_body_size=3)
    # ...and at their start.
    expected = ([], protocol_error(message))
    assert_reads_alike([bp.Reserve()] * 2, header + _res(4, b""), expected, max_body_size=3)


def test_pipelined_reserves_among_other_commands() -> None:
    triples: list[Triple] = [
        (bp.Reserve(), _res(1, b"a"), bp.Reserved(1, b"a")),
        (bp.Reserve(), _res(2, b"b\r\n"), bp.Reserved(2, b"b\r\n")),
        (bp.Delete(1), b"DELETED\r\n", bp.Deleted()),
        (bp.ReserveWithTimeout(0), _res(3, b""), bp.Reserved(3, b"")),
        (bp.ReserveWithTimeout(5), b"TIMED_OUT\r\n", bp.TimedOut()),
        (bp.Reserve(), _res(4, b"RESERVED 5 1\r\nx"), bp.Reserved(4, b"RESERVED 5 1\r\nx")),
        (bp.Put(b"x"), b"INSERTED 6\r\n", bp.Inserted(6)),
        (bp.Reserve(), b"DEADLINE_SOON\r\n", bp.DeadlineSoon()),
        (bp.ReserveWithTimeout(0), _res(7, b"c"), bp.Reserved(7, b"c")),
        (bp.Reserve(), _res(8, b"d"), bp.Reserved(8, b"d")),
        (bp.PeekReady(), _res(9, b"e").replace(b"RESERVED", b"FOUND"), bp.Found(9, b"e")),
        (bp.ReserveJob(10), _res(10, b"f"), bp.Reserved(10, b"f")),
        (bp.Reserve(), _res(11, b"g"), bp.Reserved(11, b"g")),
    ]
    commands = [cmd for cmd, _, _ in triples]
    events = [event for _, _, event in triples]
    # The replies so far, and the commands still waiting for theirs.
    for k in range(len(triples) + 1):
        data = b"".join(reply for _, reply, _ in triples[:k])
        assert_reads_alike(commands, data, (events[:k], None))


@pytest.mark.parametrize(
    ("other", "verb"), [(bp.Put(b"x"), "put"), (bp.Delete(1), "delete"), (bp.Peek(2), "peek")]
)
def test_reserved_reply_to_another_command_refused(other: bp.Command, verb: str) -> None:
    commands = [bp.Reserve(), bp.Reserve(), other, bp.Reserve()]
    data = _res(1, b"a") + _res(2, b"b") + _res(2, b"c") + _res(3, b"d")
    message = f"the server answered {verb!r} with b'RESERVED 2 1', which is not a reply to it"
    expected = ([bp.Reserved(1, b"a"), bp.Reserved(2, b"b")], protocol_error(message))
    assert_reads_alike(commands, data, expected)
    # And a reply owed to nothing, after the reserves' replies.
    data = _res(1, b"a") + _res(2, b"b") + _res(3, b"c")
    expected = (expected[0], protocol_error("the server sent bytes when no reply was owed"))
    assert_reads_alike(commands[:2], data, expected)


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        (b"RESERVED 18446744073709551615 1\r\nx\r\n", (bp.Reserved(2**64 - 1, b"x"), None)),
        (b"RESERVED 00000000000000000002 1\r\nx\r\n", (bp.Reserved(2, b"x"), None)),
        (b"RESERVED 2 00000000000000000001\r\nx\r\n", (bp.Reserved(2, b"x"), None)),
        (
            b"RESERVED 18446744073709551616 1\r\nx\r\n",
            (None, "the server sent b'18446744073709551616' where a number belongs"),
        ),
        (
            b"RESERVED 2 1 \r\nx\r\n",
            (
                None,
                "the server answered 'reserve' with b'RESERVED 2 1 ': RESERVED takes 2 "
                "argument(s) there",
            ),
        ),
        (b"RESERVED 2 +1\r\nx\r\n", (None, "the server sent b'+1' where a number belongs")),
    ],
)
def test_reserved_headers_the_fast_pattern_does_not_match(
    reply: bytes, result: tuple[Any, str | None]
) -> None:
    # Numbers of 20 digits, and lines the rule refuses, among good replies.
    event, message = result
    data = _res(1, b"a") + reply + _res(3, b"c")
    events = [bp.Reserved(1, b"a"), *([event, bp.Reserved(3, b"c")] if event else [])]
    expected = (events, None if message is None else protocol_error(message))
    assert_reads_alike([bp.Reserve()] * 3, data, expected)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([bp.Reserve(), bp.ReserveWithTimeout(0), bp.Put(b"x")]),
            st.integers(0, 2**64 - 1),
            st.binary(max_size=6).map(lambda b: b.replace(b"Z", b"\r\n")),
            st.integers(0, 9),  # 0: the reply to the other kind of command
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 200),
    st.sampled_from([b"", b"\r", b"\n", b"X", b"\r\n", b"XY"]),
    st.booleans(),
    st.integers(0, 16),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_pipelined_reserves_read_the_same_whatever_the_chunking(
    items: list[tuple[bp.Command, int, bytes, int]],
    where: int,
    insert: bytes,
    overwrite: bool,
    max_body: int,
    cuts: list[int],
) -> None:
    # Replies to reserves (and to puts), with bytes inserted or overwritten anywhere, or not.
    commands = [cmd for cmd, _, _, _ in items]
    data = b"".join(
        _res(id, body) if (type(cmd) is bp.Put) == (swap == 0) else b"INSERTED %d\r\n" % id
        for cmd, id, body, swap in items
    )
    where %= len(data) + 1
    data = data[:where] + insert + data[where + len(insert) * overwrite :]
    bytewise_result = read_result(commands, bytewise(data), max_body)
    assert read_result(commands, [data], max_body) == bytewise_result
    assert read_result(commands, split(data, cuts), max_body) == bytewise_result
    with general_rule_only():
        assert read_result(commands, [data], max_body) == bytewise_result


# -- linear cost, by counting -----------------------------------------------------------------


def _work(commands: list[bp.Command], data: bytes, chunk: int) -> int:
    conn = bp.Connection()
    for cmd in commands:
        conn.send(cmd)
    count = 0
    for i in range(0, len(data), chunk):
        conn.receive_data(data[i : i + chunk])
        while conn.next_event() is not bp.NEED_DATA:
            count += 1
    assert count == len(commands)
    assert conn.buffered == 0
    return conn.work


def _inserted(n: int) -> tuple[list[bp.Command], bytes]:
    return [bp.Put(b"x")] * n, b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(n))


def _reserved_kib(n: int) -> tuple[list[bp.Command], bytes]:
    body = bytes(range(256)) * 4
    return [bp.Reserve()] * n, b"".join(
        b"RESERVED %d 1024\r\n%b\r\n" % (i + 1, body) for i in range(n)
    )


@pytest.mark.parametrize(
    ("make", "n", "chunk"),
    [
        (_inserted, 10_000, 1),
        (_inserted, 10_000, 7),
        (_inserted, 10_000, 10**9),
        (_reserved_kib, 500, 1),
        (_reserved_kib, 2_000, 7),
        (_reserved_kib, 2_000, 10**9),
    ],
)
def test_work_is_linear(make: Any, n: int, chunk: int) -> None:
    commands, data = make(n)
    work = _work(commands, data, chunk)
    assert work <= 4 * len(data)
    commands2, data2 = make(2 * n)
    work2 = _work(commands2, data2, chunk)
    assert work2 <= 4 * len(data2)
    assert work2 <= 2.5 * max(work, len(data) // 100)


def test_work_is_linear_for_a_big_body() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    data = b"RESERVED 1 %d\r\n%b\r\n" % (len(body), body)
    assert _work([bp.Reserve()], data, 100) <= 4 * len(data)
    conn = bp.Connection()
    conn.send(bp.Reserve())
    for i in range(0, len(data), 100):
        conn.receive_data(data[i : i + 100])
        event = conn.next_event()
    assert event == bp.Reserved(1, body)


_INTERLEAVED = [
    (bp.Reserve(), b"RESERVED 1 4\r\nab\r\n\r\n", bp.Reserved(1, b"ab\r\n")),
    (bp.Put(b"x"), b"INSERTED 3\r\n", bp.Inserted(3)),
    (bp.ReserveWithTimeout(0), b"RESERVED 2 3\r\nxyz\r\n", bp.Reserved(2, b"xyz")),
    (bp.Delete(1), b"DELETED\r\n", bp.Deleted()),
    (bp.Use("t"), b"USING t\r\n", bp.Using("t")),
    (bp.PeekReady(), b"FOUND 5 0\r\n\r\n", bp.Found(5, b"")),
    (bp.Reserve(), b"RESERVED 5 0\r\n\r\n", bp.Reserved(5, b"")),
    (bp.Put(b"y"), b"INSERTED 4\r\n", bp.Inserted(4)),
]


@given(st.data())
def test_replies_reach_their_commands_however_sends_and_reads_interleave(
    data: st.DataObject,
) -> None:
    # Replies cut anywhere (or at their ends, where the fast path can take a whole
    # line), commands sent early or just in time, next_event called any number of
    # times between: every reply reaches its command, and nothing is left over.
    stream = b"".join(reply for _, reply, _ in _INTERLEAVED)
    ends = list(itertools.accumulate(len(reply) for _, reply, _ in _INTERLEAVED))
    anywhere = data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6))
    boundaries = data.draw(st.sets(st.sampled_from(ends[:-1])))
    cuts = sorted(anywhere | boundaries)
    conn = bp.Connection()
    sent = 0
    got: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        # Every reply that begins in this chunk needs its command sent; the next
        # command may go early.
        due = sum(1 for e in [0, *ends[:-1]] if e < end)
        if due < len(ends) and data.draw(st.booleans()):
            due += 1
        while sent < due:
            conn.send(_INTERLEAVED[sent][0])
            sent += 1
        conn.receive_data(stream[start:end])
        for _ in range(data.draw(st.integers(0, 3))):
            event = conn.next_event()
            if event is not bp.NEED_DATA:
                got.append(event)
            # Replies read but not handed out yet are no longer pending.
            assert len(conn.pending) <= sent - len(got)
    got.extend(drain(conn)[0])
    assert sent == len(ends)
    assert got == [event for _, _, event in _INTERLEAVED]
    assert conn.pending == () and conn.buffered == 0 and conn.used_tube == "t"
