"""Bytes to events: the reply matrix (every command x every reply word x arity x body),
reply semantics, EOF, the state the connection tracks, pipelining, chunking
independence (hypothesis), limits, and linear cost measured by counting work."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import beanproto as bp

Outcome = tuple[list[Any], bool]  # (events, ended in RemoteProtocolError)

# -- payloads --------------------------------------------------------------------------------

# Every key of a 1.12 `stats` (protocol-notes §7.2), each int a different value.
_SERVER_INT_KEYS = [
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "cmd-put",
    "cmd-peek",
    "cmd-peek-ready",
    "cmd-peek-delayed",
    "cmd-peek-buried",
    "cmd-reserve",
    "cmd-reserve-with-timeout",
    "cmd-delete",
    "cmd-release",
    "cmd-use",
    "cmd-watch",
    "cmd-ignore",
    "cmd-bury",
    "cmd-kick",
    "cmd-touch",
    "cmd-stats",
    "cmd-stats-job",
    "cmd-stats-tube",
    "cmd-list-tubes",
    "cmd-list-tube-used",
    "cmd-list-tubes-watched",
    "cmd-pause-tube",
    "job-timeouts",
    "total-jobs",
    "max-job-size",
    "current-tubes",
    "current-connections",
    "current-producers",
    "current-workers",
    "current-waiting",
    "total-connections",
    "pid",
    "uptime",
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
]
_OS = "#1 SMP PREEMPT_DYNAMIC Thu Jan  4 12:34:56 UTC 2024"
_SERVER_OTHER: list[tuple[str, str, object]] = [
    ("version", '"1.12"', "1.12"),
    ("rusage-utime", "0.012345", 0.012345),
    ("rusage-stime", "1.500000", 1.5),
    ("draining", "false", False),
    ("id", "60e4a9b06183338e", "60e4a9b06183338e"),
    ("hostname", "vm", "vm"),
    ("os", _OS, _OS),  # a comment sign and colons: a general YAML loader trips on both
    ("platform", "x86_64", "x86_64"),
]


def _attr(key: str) -> str:
    return key.replace("-", "_")


def _payload(items: Iterable[tuple[str, str]]) -> bytes:
    return ("---\n" + "".join(f"{k}: {v}\n" for k, v in items)).encode()


SERVER_PAYLOAD = _payload(
    [(k, str(i + 1)) for i, k in enumerate(_SERVER_INT_KEYS)]
    + [(k, text) for k, text, _ in _SERVER_OTHER]
)
SERVER_STATS = bp.ServerStats(
    **{_attr(k): i + 1 for i, k in enumerate(_SERVER_INT_KEYS)},
    **{_attr(k): value for k, _, value in _SERVER_OTHER},
)
assert len(SERVER_PAYLOAD.splitlines()) == 1 + 51

_JOB_ITEMS = [
    ("id", "7", 7),
    ("tube", "t", "t"),
    ("state", "reserved", "reserved"),
    ("pri", "4294967295", 2**32 - 1),
    ("age", "12", 12),
    ("delay", "3", 3),
    ("ttr", "60", 60),
    ("time-left", "59", 59),
    ("file", "0", 0),
    ("reserves", "2", 2),
    ("timeouts", "1", 1),
    ("releases", "4", 4),
    ("buries", "5", 5),
    ("kicks", "6", 6),
]
JOB_PAYLOAD = _payload((k, text) for k, text, _ in _JOB_ITEMS)
JOB_STATS = bp.JobStats(**{_attr(k): value for k, _, value in _JOB_ITEMS})

_TUBE_ITEMS = [
    ("name", "t"),
    ("current-jobs-urgent", "1"),
    ("current-jobs-ready", "2"),
    ("current-jobs-reserved", "3"),
    ("current-jobs-delayed", "4"),
    ("current-jobs-buried", "5"),
    ("total-jobs", "6"),
    ("current-using", "7"),
    ("current-watching", "8"),
    ("current-waiting", "9"),
    ("cmd-delete", "10"),
    ("cmd-pause-tube", "11"),
    ("pause", "100"),
    ("pause-time-left", "99"),
]
TUBE_PAYLOAD = _payload(_TUBE_ITEMS)
TUBE_STATS = bp.TubeStats(
    **{_attr(k): (v if k == "name" else int(v)) for k, v in _TUBE_ITEMS}  # type: ignore[arg-type]
)

LIST_PAYLOAD = b"---\n- default\n- t\n- 1.0\n"
TUBE_LIST = bp.TubeList(("default", "t", "1.0"))

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
    bp.StatsJob: bp.StatsJob(7),
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
    bp.ListTubes: {("OK", 1, True): TUBE_LIST},
    bp.ListTubeUsed: {("USING", 1, False): bp.Using("t")},
    bp.ListTubesWatched: {("OK", 1, True): TUBE_LIST},
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
    for kind, row in bp.REPLIES.items():
        actual = {(word.decode(), spec[0], spec[1]) for word, spec in row.items()}
        assert actual == set(EXPECTED[kind]), kind.__name__
        assert all(type(SAMPLES[kind]) is kind for kind in SAMPLES)


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
    assert outcome_of([bp.StatsJob(7)], data) == ([JOB_STATS], False)
    assert outcome_of([bp.StatsJob(8)], data) == ([], True)


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


# Replies at the edges of the one-step reads (_fast and _exact in _connection): each is
# read alone (the request/response path), after a good reply (the batch reader),
# and byte by byte (the general path only), and all three must agree.
FAST_EDGES: list[tuple[bp.Command, bytes, list[Any], bool]] = [
    (bp.Put(b"x"), b"INSERTED 9999999999999999999\r\n", [bp.Inserted(9999999999999999999)], False),
    (bp.Put(b"x"), b"INSERTED 18446744073709551615\r\n", [bp.Inserted(2**64 - 1)], False),
    (bp.Put(b"x"), b"INSERTED 18446744073709551616\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 07\r\n", [bp.Inserted(7)], False),
    (bp.Put(b"x"), b"INSERTED 7 \r\n", [], True),
    (bp.Put(b"x"), b"INSERTED  7\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7\n\r\n", [], True),
    (bp.Put(b"x"), b"INSERTED 7\r\nX", [bp.Inserted(7)], True),  # nothing more is owed
    (
        bp.Reserve(),
        b"RESERVED 18446744073709551615 1\r\nx\r\n",
        [bp.Reserved(2**64 - 1, b"x")],
        False,
    ),
    (bp.Reserve(), b"RESERVED 1 0000000000000000001\r\nx\r\n", [bp.Reserved(1, b"x")], False),
    (bp.Reserve(), b"RESERVED 1 9999999999999999999\r\nx\r\n", [], True),
    (bp.Reserve(), b"RESERVED 1 4\r\nabcd\r\n", [], True),  # over max_body_size=3
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\r\n", [bp.Reserved(1, b"abc")], False),
    (bp.Reserve(), b"RESERVED 1 3\r\nabcd\n", [], True),
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\rX", [], True),
    (bp.Reserve(), b"RESERVED 1 3\r\nabc\r\nX", [bp.Reserved(1, b"abc")], True),
    (bp.ReserveWithTimeout(0), b"RESERVED 1 2\r\n\r\n\r\n", [bp.Reserved(1, b"\r\n")], False),
    (bp.ReserveWithTimeout(0), b"RESERVED 1  2\r\nab\r\n", [], True),
    (bp.Delete(1), b"DELETED\r\n", [bp.Deleted()], False),
    (bp.Delete(1), b"DELETED \r\n", [], True),
    (bp.Delete(1), b"DELETED\r\nX", [bp.Deleted()], True),
    (bp.Delete(1), b"NOT_FOUND\r\n", [bp.NotFound()], False),
    (bp.Release(1), b"BURIED\r\n", [bp.Buried()], False),
    (bp.Bury(1), b"BURIED 1\r\n", [], True),
    (bp.Touch(1), b"TOUCHED\r\n", [bp.Touched()], False),
    (bp.KickJob(1), b"KICKED\r\n", [bp.Kicked()], False),
]
# A good reply to the same command, to put before each edge case.
FIRST: dict[type[bp.Command], tuple[Any, bytes]] = {
    bp.Put: (bp.Inserted(1), b"INSERTED 1\r\n"),
    bp.Reserve: (bp.Reserved(1, b""), b"RESERVED 1 0\r\n\r\n"),
    bp.ReserveWithTimeout: (bp.Reserved(1, b""), b"RESERVED 1 0\r\n\r\n"),
    bp.Delete: (bp.Deleted(), b"DELETED\r\n"),
    bp.Release: (bp.Released(), b"RELEASED\r\n"),
    bp.Bury: (bp.Buried(), b"BURIED\r\n"),
    bp.Touch: (bp.Touched(), b"TOUCHED\r\n"),
    bp.KickJob: (bp.Kicked(), b"KICKED\r\n"),
}


def receive_usual(conn: bp.Connection, data: bytes) -> bp.Event | None:
    """The adapters' one-step read of a reply: checked, then read."""
    return conn._read_lone(data) if conn._lone() else None


def receive_one(conn: bp.Connection, data: bytes) -> bp.Event | bp.NeedData:
    """What the adapters do with the bytes of one read: the one-step read of the
    usual reply, else receive_data() and next_event()."""
    event = receive_usual(conn, data)
    if event is not None:
        return event
    conn.receive_data(data)
    return conn.next_event()


@pytest.mark.parametrize(("cmd", "data", "events", "error"), FAST_EDGES)
def test_fast_and_general_paths_agree(
    cmd: bp.Command, data: bytes, events: list[Any], error: bool
) -> None:
    first, prefix = FIRST[type(cmd)]
    for commands, stream, expected in [
        ([cmd], data, (events, error)),
        ([cmd, cmd], prefix + data, ([first, *events], error)),
    ]:
        fed_whole = bp.Connection(max_body_size=3)
        fed_bytes = bp.Connection(max_body_size=3)
        fed_one = bp.Connection(max_body_size=3)  # read as the adapters read
        for conn in (fed_whole, fed_bytes, fed_one):
            for c in commands:
                conn.send(c)
        fed_whole.receive_data(stream)
        for i in range(len(stream)):
            fed_bytes.receive_data(stream[i : i + 1])
        for conn in (fed_whole, fed_bytes):
            assert drain(conn) == expected, (commands, stream)
        try:
            first_event = receive_one(fed_one, stream)
        except bp.RemoteProtocolError:
            assert expected == ([], True)
        else:
            assert first_event == expected[0][0]
            assert drain(fed_one) == (expected[0][1:], expected[1])
    # The request/response read takes the reply only when it is all the bytes and
    # good; anything else is left untouched for the general path.
    conn = bp.Connection(max_body_size=3)
    conn.send(cmd)
    usual = receive_usual(conn, data)
    if usual is None:
        assert conn.pending == (cmd,) and conn.buffered == 0
    else:
        assert ([usual], False) == (events, error)
        assert conn.pending == () and conn.next_event() is bp.NEED_DATA


@pytest.mark.parametrize(
    ("cmd", "reply", "event"),
    [
        (bp.Put(b"x"), b"INSERTED 12\r\n", bp.Inserted(12)),
        (bp.Reserve(), b"RESERVED 3 4\r\nab\r\n\r\n", bp.Reserved(3, b"ab\r\n")),
        (bp.ReserveWithTimeout(1), b"RESERVED 3 0\r\n\r\n", bp.Reserved(3, b"")),
        (bp.Delete(1), b"DELETED\r\n", bp.Deleted()),
        (bp.Release(1), b"RELEASED\r\n", bp.Released()),
        (bp.Bury(1), b"BURIED\r\n", bp.Buried()),
        (bp.Touch(1), b"TOUCHED\r\n", bp.Touched()),
        (bp.KickJob(1), b"KICKED\r\n", bp.Kicked()),
    ],
)
def test_receive_usual_reads_the_usual_replies(cmd: bp.Command, reply: bytes, event: Any) -> None:
    conn = bp.Connection()
    conn.send(cmd)
    assert receive_usual(conn, reply) == event
    assert conn.pending == () and conn.next_event() is bp.NEED_DATA
    # Not with anything else pending, buffered or parsed, nor after a failed send.
    conn.send(cmd)
    conn.send(cmd)
    assert receive_usual(conn, reply) is None
    conn = bp.Connection()
    conn.send(cmd)
    conn.receive_data(reply[:1])
    assert receive_usual(conn, reply[1:]) is None
    conn = bp.Connection()
    conn.send(cmd)
    conn.send_failed()
    assert receive_usual(conn, reply) is None


def test_receive_usual_leaves_other_input_alone() -> None:
    conn = bp.Connection()
    conn.send(bp.Use("a"))  # no usual form
    assert receive_usual(conn, b"USING a\r\n") is None
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    assert receive_usual(conn, bytearray(b"INSERTED 1\r\n")) is None  # bytes only
    assert receive_usual(conn, b"") is None
    conn.receive_data(b"")
    assert receive_usual(conn, b"INSERTED 1\r\n") is None  # after the end of the stream
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.receive_data(b"RESERVED 1 5\r\nab")  # a body being collected
    conn.next_event()
    assert receive_usual(conn, b"RESERVED 1 0\r\n\r\n") is None
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.send(bp.Put(b"x"))
    conn.receive_data(b"INSERTED 1\r\nINSERTED 2\r\n")
    assert conn.next_event() == bp.Inserted(1)
    conn.send(bp.Put(b"x"))  # one pending again, with an event not yet taken
    assert receive_usual(conn, b"INSERTED 3\r\n") is None
    assert conn.next_event() == bp.Inserted(2)


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


def test_reserve_waiting_across_a_trim_of_pending() -> None:
    # The reader trims answered commands off a long pending list (past 1024).
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
    # A reserve answered before a trim is not waiting after it.
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
        (bp.StatsJob(7), b"OK %d\r\n%b\r\n" % (len(JOB_PAYLOAD), JOB_PAYLOAD), JOB_STATS),
        (bp.StatsTube("t"), b"OK %d\r\n%b\r\n" % (len(TUBE_PAYLOAD), TUBE_PAYLOAD), TUBE_STATS),
        (bp.ListTubes(), b"OK %d\r\n%b\r\n" % (len(LIST_PAYLOAD), LIST_PAYLOAD), TUBE_LIST),
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


# -- runs of pipelined reserves ---------------------------------------------------------------
# The batch reader reads consecutive RESERVED replies to consecutive reserves in a run,
# proving each body's CRLF with the regex that reads the next header (see _TAIL_RESERVED).
# Fed whole, a stream of them goes through that run; fed byte by byte, through the
# general path only. Both must give the same events, and the same error at the same reply.

Result = tuple[list[Any], str | None]  # (events, the RemoteProtocolError's message)


def _result(commands: Sequence[bp.Command], chunks: Iterable[bytes], max_body_size: int) -> Result:
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
            except bp.RemoteProtocolError as exc:
                assert conn.state is bp.State.BROKEN
                return events, str(exc)
            if event is bp.NEED_DATA:
                break
            events.append(event)
    assert conn.pending == tuple(commands[len(events) :])  # the rest, in order
    return events, None


def _res(id: int, body: bytes) -> bytes:
    return b"RESERVED %d %d\r\n%b\r\n" % (id, len(body), body)


def assert_run_reads(
    commands: Sequence[bp.Command], data: bytes, expected: Result, max_body_size: int = 2**30
) -> None:
    """``data`` gives ``expected`` fed whole, cut in two at every offset, and byte by byte."""
    assert _result(commands, [data], max_body_size) == expected
    for i in range(len(data) + 1):
        cut = [data[:i], data[i:]]
        assert _result(commands, cut, max_body_size) == expected, i
    assert _result(commands, bytewise(data), max_body_size) == expected


_NOT_CRLF = "a body sent by the server is not followed by CRLF"
# Bodies that look like replies, or end like a header would.
_RUN_BODIES = [b"", b"x", b"\r\n", b"RESERVED 9 1\r\nx\r\n", b"ab\r", b"\nRESERVED 1 1"]


def test_reserve_run_reads_every_reply() -> None:
    replies = [_res(i + 1, body) for i, body in enumerate(_RUN_BODIES)]
    events = [bp.Reserved(i + 1, body) for i, body in enumerate(_RUN_BODIES)]
    data = b"".join(replies)
    assert_run_reads([bp.Reserve()] * 6, data, (events, None))
    # Either kind of reserve; a run ends where the kind changes.
    kinds = [bp.Reserve(), bp.ReserveWithTimeout(0), bp.ReserveWithTimeout(0), bp.Reserve()]
    assert_run_reads([*kinds, bp.ReserveWithTimeout(5), bp.Reserve()], data, (events, None))


@pytest.mark.parametrize("at", [0, 1, 2])  # the first, a middle and the last body
@pytest.mark.parametrize("after", [b"XY", b"\n\r", b"\r\r", b"\rX", b"X\n", b"\n\n"])
def test_reserve_run_refuses_a_body_without_crlf(at: int, after: bytes) -> None:
    replies = [_res(1, b"abc"), _res(2, b"de\r\n"), _res(3, b"f")]
    replies[at] = replies[at][:-2] + after
    data = b"".join(replies)
    expected = ([bp.Reserved(1, b"abc"), bp.Reserved(2, b"de\r\n")][:at], _NOT_CRLF)
    assert_run_reads([bp.Reserve()] * 3, data, expected)
    # The same when the last reserve's reply is followed by one to a fourth command.
    assert_run_reads([bp.Reserve()] * 3 + [bp.Delete(1)], data + b"DELETED\r\n", expected)


@pytest.mark.parametrize("size", [4, 5, 99, 10**18, 10**30])
def test_reserve_run_refuses_a_body_over_max_body_size(size: int) -> None:
    good = [bp.Reserved(1, b"abc"), bp.Reserved(2, b"")]
    header = b"RESERVED 3 %d\r\n" % size
    message = f"the server announced a body of {size} bytes, over max_body_size (3)"
    # Refused at its header, however much of the body follows, in the middle of a run...
    whole = b"x" * size + b"\r\n" + _res(4, b"") if size < 100 else b"x" * 100
    for body in [b"", b"abcd", whole]:
        data = _res(1, b"abc") + _res(2, b"") + header + body
        assert_run_reads([bp.Reserve()] * 4, data, (good, message), max_body_size=3)
    # ...and at its start.
    assert_run_reads([bp.Reserve()] * 2, header + _res(4, b""), ([], message), max_body_size=3)


def test_reserve_run_ends_where_the_reserves_end() -> None:
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
        (bp.Reserve(), _res(10, b"f"), bp.Reserved(10, b"f")),
    ]
    commands = [cmd for cmd, _, _ in triples]
    events = [event for _, _, event in triples]
    # The replies so far, and the commands still waiting for theirs.
    for k in range(len(triples) + 1):
        data = b"".join(reply for _, reply, _ in triples[:k])
        assert_run_reads(commands, data, (events[:k], None))


@pytest.mark.parametrize(
    ("other", "verb"), [(bp.Put(b"x"), "put"), (bp.Delete(1), "delete"), (bp.Peek(2), "peek")]
)
def test_reserve_run_refuses_a_reserved_reply_to_another_command(
    other: bp.Command, verb: str
) -> None:
    commands = [bp.Reserve(), bp.Reserve(), other, bp.Reserve()]
    data = _res(1, b"a") + _res(2, b"b") + _res(2, b"c") + _res(3, b"d")
    message = f"the server answered {verb!r} with b'RESERVED 2 1', which is not a reply to it"
    expected = ([bp.Reserved(1, b"a"), bp.Reserved(2, b"b")], message)
    assert_run_reads(commands, data, expected)
    # And a reply owed to nothing, after a run (the message depends on how much of it
    # has come).
    data = _res(1, b"a") + _res(2, b"b") + _res(3, b"c")
    message = "the server sent b'RESERVED 3 1' when no reply was owed"
    assert _result(commands[:2], [data], 2**30) == (expected[0], message)
    for i in range(len(data) + 1):
        events, error = _result(commands[:2], [data[:i], data[i:]], 2**30)
        assert (events, error is None) == (expected[0], False), i


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        (b"RESERVED 18446744073709551615 1\r\nx\r\n", (bp.Reserved(2**64 - 1, b"x"), None)),
        (b"RESERVED 00000000000000000002 1\r\nx\r\n", (bp.Reserved(2, b"x"), None)),
        (b"RESERVED 2 00000000000000000001\r\nx\r\n", (bp.Reserved(2, b"x"), None)),
        (
            b"RESERVED 18446744073709551616 1\r\nx\r\n",
            (None, "the server sent b'18446744073709551616' where a job id belongs"),
        ),
        (
            b"RESERVED 2 1 \r\nx\r\n",
            (
                None,
                "the server answered 'reserve' with b'RESERVED 2 1 ': RESERVED takes 2 "
                "argument(s) there",
            ),
        ),
        (
            b"RESERVED 2 +1\r\nx\r\n",
            (None, "the server sent b'+1' where a body size belongs"),
        ),
    ],
)
def test_reserve_run_hands_other_headers_to_the_general_path(
    reply: bytes, result: tuple[Any, str | None]
) -> None:
    event, message = result
    data = _res(1, b"a") + reply + _res(3, b"c")
    events = [bp.Reserved(1, b"a"), *([event, bp.Reserved(3, b"c")] if event else [])]
    assert_run_reads([bp.Reserve()] * 3, data, (events, message))


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
def test_reserve_runs_agree_with_the_general_path(
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

    def result(chunks: Iterable[bytes]) -> Result:
        events, message = _result(commands, chunks, max_body)
        if message and message.endswith("when no reply was owed"):
            message = "no reply was owed"  # quoting the bytes only if a whole line came
        return events, message

    bytewise_result = result(bytewise(data))
    assert result([data]) == bytewise_result
    assert result(split(data, cuts)) == bytewise_result


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


_PUT_REPLIES = [data for cmd, data, _, _ in FAST_EDGES if type(cmd) is bp.Put] + [
    b"INSERTED 12\r\n",
    b"INSERTED 12\r",
    b"INSERTED \r\n",
    b"BURIED 12\r\n",
    b"JOB_TOO_BIG\r\n",
    b"DRAINING\r\n",
    b"EXPECTED_CRLF\r\n",
    b"",
]


@given(st.one_of(st.sampled_from(_PUT_REPLIES), st.binary(max_size=40)), st.booleans())
def test_read_inserted_is_read_lone_for_the_id(data: bytes, mutable: bool) -> None:
    # The sync client's put reads its usual reply straight to the id: the same
    # replies as _read_lone, and anything else left as it was.
    arg: Any = bytearray(data) if mutable else data
    by_event = bp.Connection()
    by_id = bp.Connection()
    for conn in (by_event, by_id):
        conn.send(bp.Put(b"x"))
        assert conn._lone()
    event = by_event._read_lone(arg)
    new_id = by_id._read_inserted(arg)
    assert new_id == (None if event is None else event.id)  # type: ignore[attr-defined]
    assert by_id.pending == by_event.pending
    assert by_id.pending == (() if new_id is not None else (bp.Put(b"x"),))
    assert by_id.buffered == 0 and by_id.next_event() is bp.NEED_DATA


def test_sent_records_as_send_does() -> None:
    from beanproto._commands import check_put, checked_put, put_bytes

    conn = bp.Connection()
    assert not conn._lone()  # nothing owed
    body = check_put(b"job", 1, 2, 3)
    assert put_bytes(body, 1, 2, 3) == b"put 1 2 3 3\r\njob\r\n"
    conn._sent(checked_put(body, 1, 2, 3))
    assert conn.pending == (bp.Put(b"job", 1, 2, 3),)
    assert conn._lone()
    assert conn._read_lone(b"INSERTED 4\r\n") == bp.Inserted(4)
    assert conn.pending == ()
    conn._sent(bp.Reserve())
    assert conn.reserve_waiting
    assert feed(conn, b"TIMED_OUT\r\n") == [bp.TimedOut()]
    conn._sent(bp.Quit())
    assert conn.state is bp.State.QUIT_SENT
    with pytest.raises(bp.LocalProtocolError, match="quit was sent"):
        conn._sent(bp.Put(b"x"))
    assert conn.pending == (bp.Quit(),)


_LONE_REPLIES = [
    (bp.Reserve(), b"RESERVED 1 4\r\nab\r\n\r\n", bp.Reserved(1, b"ab\r\n")),
    (bp.Put(b"x"), b"INSERTED 3\r\n", bp.Inserted(3)),
    (bp.ReserveWithTimeout(0), b"RESERVED 2 3\r\nxyz\r\n", bp.Reserved(2, b"xyz")),
    (bp.Delete(1), b"DELETED\r\n", bp.Deleted()),
    (bp.Use("t"), b"USING t\r\n", bp.Using("t")),
    (bp.Reserve(), b"RESERVED 5 0\r\n\r\n", bp.Reserved(5, b"")),
    (bp.Put(b"y"), b"INSERTED 4\r\n", bp.Inserted(4)),
]


@given(st.data())
def test_one_step_reads_mix_with_the_general_path(data: st.DataObject) -> None:
    # Replies cut anywhere, commands sent early or just in time, next_event called
    # any number of times; a read takes the one-step path whenever _lone() allows.
    # Whenever it allows, nothing is buffered; every reply reaches its command.
    stream = b"".join(reply for _, reply, _ in _LONE_REPLIES)
    ends = list(itertools.accumulate(len(reply) for _, reply, _ in _LONE_REPLIES))
    # Cuts at reply boundaries make chunks the one-step read can take.
    anywhere = data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6))
    boundaries = data.draw(st.sets(st.sampled_from(ends[:-1])))
    cuts = sorted(anywhere | boundaries)
    conn = bp.Connection()
    sent = fed = 0
    got: list[Any] = []

    def check() -> None:
        if conn._lone():
            assert conn.buffered == 0 and len(conn.pending) == 1

    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        # Every reply that begins in this chunk needs its command sent; the next
        # command may go early.
        due = sum(1 for e in [0, *ends[:-1]] if e < end)
        if due < len(ends) and data.draw(st.booleans()):
            due += 1
        while sent < due:
            conn.send(_LONE_REPLIES[sent][0])
            sent += 1
            check()
        chunk = stream[start:end]
        event = conn._read_lone(chunk) if conn._lone() else None
        if event is None:
            conn.receive_data(chunk)
        else:
            got.append(event)
        check()
        for _ in range(data.draw(st.integers(0, 3))):
            event = conn.next_event()
            check()
            if event is not bp.NEED_DATA:
                got.append(event)
        fed = end
    got.extend(drain(conn)[0])
    assert fed == len(stream) and sent == len(ends)
    assert got == [event for _, _, event in _LONE_REPLIES]
    assert conn.pending == () and conn.used_tube == "t"
