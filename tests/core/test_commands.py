"""Commands to bytes: golden wire bytes for every command, argument validation, and
property tests that parse the wire bytes back (a test-side parser written from the
protocol notes, not from the encoder)."""

from __future__ import annotations

import array
import enum
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import beanproto as bp

U32 = 2**32 - 1
U64 = 2**64 - 1
I31 = 2**31 - 1

# go-beanstalk's common_test.go, for beanproto: (command, the exact bytes on the wire).
GOLDEN: list[tuple[bp.Command, bytes]] = [
    (bp.Put(b"a\r\nb", priority=1, delay=2, ttr=3), b"put 1 2 3 4\r\na\r\nb\r\n"),
    (bp.Put(b"hello"), b"put 65536 0 60 5\r\nhello\r\n"),
    (bp.Put(b""), b"put 65536 0 60 0\r\n\r\n"),
    (
        bp.Put(b"\x00\r\n\xff", priority=U32, delay=U32, ttr=U32),
        b"put 4294967295 4294967295 4294967295 4\r\n\x00\r\n\xff\r\n",
    ),
    (bp.Put(b"x", priority=0, delay=0, ttr=0), b"put 0 0 0 1\r\nx\r\n"),
    # one argument off its default each: the defaults' line is formatted once, not these
    (bp.Put(b"x", delay=5), b"put 65536 5 60 1\r\nx\r\n"),
    (bp.Put(b"x", ttr=1), b"put 65536 0 1 1\r\nx\r\n"),
    (bp.Use("t"), b"use t\r\n"),
    (bp.Use("a-b+/;.$_()"), b"use a-b+/;.$_()\r\n"),
    (bp.Reserve(), b"reserve\r\n"),
    (bp.ReserveWithTimeout(0), b"reserve-with-timeout 0\r\n"),
    (bp.ReserveWithTimeout(I31), b"reserve-with-timeout 2147483647\r\n"),
    (bp.ReserveJob(7), b"reserve-job 7\r\n"),
    (bp.ReserveJob(U64), b"reserve-job 18446744073709551615\r\n"),
    (bp.Delete(1), b"delete 1\r\n"),
    (bp.Delete(0), b"delete 0\r\n"),
    (bp.Release(5), b"release 5 65536 0\r\n"),
    (bp.Release(5, priority=1, delay=2), b"release 5 1 2\r\n"),
    (bp.Release(U64, U32, U32), b"release 18446744073709551615 4294967295 4294967295\r\n"),
    (bp.Bury(5), b"bury 5 65536\r\n"),
    (bp.Bury(5, priority=0), b"bury 5 0\r\n"),
    (bp.Touch(9), b"touch 9\r\n"),
    (bp.Watch("emails"), b"watch emails\r\n"),
    (bp.Ignore("default"), b"ignore default\r\n"),
    (bp.Peek(7), b"peek 7\r\n"),
    (bp.PeekReady(), b"peek-ready\r\n"),
    (bp.PeekDelayed(), b"peek-delayed\r\n"),
    (bp.PeekBuried(), b"peek-buried\r\n"),
    (bp.Kick(3), b"kick 3\r\n"),
    (bp.Kick(U32), b"kick 4294967295\r\n"),
    (bp.KickJob(4), b"kick-job 4\r\n"),
    (bp.StatsJob(5), b"stats-job 5\r\n"),
    (bp.StatsTube("t"), b"stats-tube t\r\n"),
    (bp.Stats(), b"stats\r\n"),
    (bp.ListTubes(), b"list-tubes\r\n"),
    (bp.ListTubeUsed(), b"list-tube-used\r\n"),
    (bp.ListTubesWatched(), b"list-tubes-watched\r\n"),
    (bp.PauseTube("t", 5), b"pause-tube t 5\r\n"),
    (bp.PauseTube("t", 0), b"pause-tube t 0\r\n"),
    (bp.Quit(), b"quit\r\n"),
]

ALL_COMMANDS = {
    bp.Put,
    bp.Use,
    bp.Reserve,
    bp.ReserveWithTimeout,
    bp.ReserveJob,
    bp.Delete,
    bp.Release,
    bp.Bury,
    bp.Touch,
    bp.Watch,
    bp.Ignore,
    bp.Peek,
    bp.PeekReady,
    bp.PeekDelayed,
    bp.PeekBuried,
    bp.Kick,
    bp.KickJob,
    bp.StatsJob,
    bp.StatsTube,
    bp.Stats,
    bp.ListTubes,
    bp.ListTubeUsed,
    bp.ListTubesWatched,
    bp.PauseTube,
    bp.Quit,
}


@pytest.mark.parametrize(("command", "wire"), GOLDEN, ids=[repr(c)[:60] for c, _ in GOLDEN])
def test_golden_wire_bytes(command: bp.Command, wire: bytes) -> None:
    conn = bp.Connection()
    assert conn.send(command) == wire
    assert conn.pending == (command,)


def test_golden_list_covers_every_command() -> None:
    assert len(ALL_COMMANDS) == 25
    assert set(bp.REPLIES) == ALL_COMMANDS
    assert {type(c) for c, _ in GOLDEN} == ALL_COMMANDS
    public = {
        obj
        for name in bp.__all__
        if isinstance(obj := getattr(bp, name), type)
        and issubclass(obj, bp.Command)
        and obj is not bp.Command
    }
    assert public == ALL_COMMANDS


def test_defaults() -> None:
    assert bp.DEFAULT_PRIORITY == 65536
    assert bp.DEFAULT_TTR == 60
    assert bp.DEFAULT_TUBE == "default"
    assert bp.Put(b"x") == bp.Put(b"x", priority=65536, delay=0, ttr=60)
    assert bp.Release(1) == bp.Release(1, 65536, 0)
    assert bp.Bury(1) == bp.Bury(1, 65536)


def test_longest_line_is_224_bytes_and_accepted() -> None:
    wire = bp.Connection().send(bp.PauseTube("a" * 200, U32))
    assert wire == b"pause-tube " + b"a" * 200 + b" 4294967295\r\n"
    assert len(wire) == 224 == bp.MAX_LINE_SIZE
    assert len(bp.Connection().send(bp.StatsTube("b" * 200))) == 213


# -- validation -----------------------------------------------------------------------------

TubeCtor = Callable[[Any], bp.Command]
TUBE_CTORS: list[TubeCtor] = [
    bp.Use,
    bp.Watch,
    bp.Ignore,
    bp.StatsTube,
    lambda tube: bp.PauseTube(tube, 0),
]
TUBE_CTOR_IDS = ["use", "watch", "ignore", "stats-tube", "pause-tube"]

INVALID_TUBES = [
    "",
    "a" * 201,
    "-abc",
    "-",
    "a b",
    " a",
    "a ",
    "a\tb",
    "a\rb",
    "a\nb",
    "abc\n",
    "abc\r\nput 0 0 1 1",
    "a\x00b",
    "a:b",
    "a*b",
    "a#b",
    "a'b",
    'a"b',
    "a\\b",
    "é",
    "caf\u00e9",
    "\uff21",  # fullwidth A
    "\u0663",  # Arabic-Indic digit three: str.isdigit() says yes, the server says no
    "a\u200bb",
]
VALID_TUBES = ["a", "A", "0", "a-b", "+x", "/x;.$_()", "1.0", "(", "$", "_", "a" * 200, "x-"]


@pytest.mark.parametrize("ctor", TUBE_CTORS, ids=TUBE_CTOR_IDS)
@pytest.mark.parametrize("tube", INVALID_TUBES)
def test_invalid_tube_names_refused(ctor: TubeCtor, tube: str) -> None:
    with pytest.raises(bp.InvalidArgument):
        ctor(tube)
    with pytest.raises(bp.InvalidArgument):
        bp.check_tube(tube)


@pytest.mark.parametrize("ctor", TUBE_CTORS, ids=TUBE_CTOR_IDS)
@pytest.mark.parametrize("tube", [b"abc", None, 1, ["a"], bytearray(b"a")])
def test_non_str_tube_is_type_error(ctor: TubeCtor, tube: object) -> None:
    with pytest.raises(TypeError):
        ctor(tube)


@pytest.mark.parametrize("ctor", TUBE_CTORS, ids=TUBE_CTOR_IDS)
@pytest.mark.parametrize("tube", VALID_TUBES)
def test_valid_tube_names_accepted(ctor: TubeCtor, tube: str) -> None:
    cmd = ctor(tube)
    assert cmd.tube == tube  # type: ignore[attr-defined]
    wire = bp.Connection().send(cmd)
    assert b" " + tube.encode() + b"\r\n" in wire or b" " + tube.encode() + b" 0\r\n" in wire


# (constructor taking the value under test, the field's maximum)
IntCtor = Callable[[Any], bp.Command]
INT_FIELDS: list[tuple[str, IntCtor, int]] = [
    ("put.priority", lambda v: bp.Put(b"", priority=v), U32),
    ("put.delay", lambda v: bp.Put(b"", delay=v), U32),
    ("put.ttr", lambda v: bp.Put(b"", ttr=v), U32),
    ("reserve-with-timeout", bp.ReserveWithTimeout, I31),
    ("reserve-job", bp.ReserveJob, U64),
    ("delete", bp.Delete, U64),
    ("release.id", bp.Release, U64),
    ("release.priority", lambda v: bp.Release(1, priority=v), U32),
    ("release.delay", lambda v: bp.Release(1, delay=v), U32),
    ("bury.id", bp.Bury, U64),
    ("bury.priority", lambda v: bp.Bury(1, priority=v), U32),
    ("touch", bp.Touch, U64),
    ("peek", bp.Peek, U64),
    ("kick", bp.Kick, U32),
    ("kick-job", bp.KickJob, U64),
    ("stats-job", bp.StatsJob, U64),
    ("pause-tube.delay", lambda v: bp.PauseTube("t", v), U32),
]
INT_IDS = [name for name, _, _ in INT_FIELDS]


@pytest.mark.parametrize(("name", "ctor", "maximum"), INT_FIELDS, ids=INT_IDS)
def test_int_range_edges(name: str, ctor: IntCtor, maximum: int) -> None:
    for value in (0, 1, maximum):
        wire = bp.Connection().send(ctor(value))
        assert str(value).encode() in wire
    for value in (-1, maximum + 1, -(2**64), 2**64, 2**100):
        with pytest.raises(bp.InvalidArgument):
            ctor(value)
    # ids are u64, so a u32 field must also refuse 2**32 and a u64 one 2**64
    with pytest.raises(bp.InvalidArgument):
        ctor({U32: 2**32, I31: 2**31, U64: 2**64}[maximum])


@pytest.mark.parametrize(("name", "ctor", "maximum"), INT_FIELDS, ids=INT_IDS)
@pytest.mark.parametrize("value", [True, False, 1.0, 0.0, "1", b"1", None, 1j])
def test_non_int_is_type_error(name: str, ctor: IntCtor, maximum: int, value: object) -> None:
    with pytest.raises(TypeError):
        ctor(value)


@pytest.mark.parametrize("body", ["text", None, 5, ["a"], 1.5])
def test_body_must_be_bytes_like(body: object) -> None:
    with pytest.raises(TypeError):
        bp.Put(body)  # type: ignore[arg-type]


def test_bytes_like_bodies_stored_as_bytes() -> None:
    source = bytearray(b"ab\r\n")
    cmd = bp.Put(source)  # type: ignore[arg-type]
    source[0:2] = b"ZZ"  # the command holds a copy, not a view of the caller's buffer
    assert type(cmd.body) is bytes
    assert cmd.body == b"ab\r\n"
    assert cmd == bp.Put(b"ab\r\n")
    view = bp.Put(memoryview(b"xyz")[1:])  # type: ignore[arg-type]
    assert type(view.body) is bytes
    assert view.body == b"yz"
    # a multi-byte-item view is sized in bytes, not in items
    wide = bp.Put(memoryview(array.array("H", [1, 2])))  # type: ignore[arg-type]
    assert len(wide.body) == 4
    assert bp.Connection().send(wide).startswith(b"put 65536 0 60 4\r\n")


def test_invalid_argument_is_local_protocol_error_and_value_error() -> None:
    assert issubclass(bp.InvalidArgument, bp.LocalProtocolError)
    assert issubclass(bp.InvalidArgument, ValueError)
    assert issubclass(bp.LocalProtocolError, bp.ProtocolError)
    assert issubclass(bp.ProtocolError, bp.Error)
    with pytest.raises(ValueError):
        bp.Use("a b")
    with pytest.raises(bp.LocalProtocolError):
        bp.Kick(-1)


def test_rejected_command_leaves_connection_unchanged() -> None:
    conn = bp.Connection()
    first = conn.send(bp.Use("a"))
    assert first == b"use a\r\n"
    with pytest.raises(bp.InvalidArgument):
        conn.send(bp.Use("a b"))
    with pytest.raises(bp.InvalidArgument):
        conn.send(bp.Put(b"x", priority=2**32))
    with pytest.raises(TypeError):
        conn.send(bp.Put("text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send("use b\r\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send(bp.Use)  # type: ignore[arg-type]
    assert conn.pending == (bp.Use("a"),)
    assert conn.state is bp.State.OPEN
    assert conn.used_tube == "default"
    assert not conn.reserve_waiting
    # and it still works: the next reply is matched to the command that was sent
    assert conn.send(bp.Kick(1)) == b"kick 1\r\n"
    conn.receive_data(b"USING a\r\nKICKED 0\r\n")
    assert [conn.next_event(), conn.next_event()] == [bp.Using("a"), bp.Kicked(0)]
    assert conn.next_event() is bp.NEED_DATA


def test_commands_are_frozen_and_comparable() -> None:
    cmd = bp.Put(b"x")
    with pytest.raises(AttributeError):
        cmd.priority = 1  # type: ignore[misc]
    assert bp.Peek(1) == bp.Peek(1)
    assert bp.Peek(1) != bp.Peek(2)
    assert bp.Peek(1) != bp.Delete(1)
    assert hash(bp.Use("a")) == hash(bp.Use("a"))


# -- a test-side parser: wire bytes back into a command ------------------------------------

# verb -> (class, kinds of the line arguments in constructor order); put is special.
LAYOUT: dict[str, tuple[type[bp.Command], tuple[str, ...]]] = {
    "use": (bp.Use, ("tube",)),
    "reserve": (bp.Reserve, ()),
    "reserve-with-timeout": (bp.ReserveWithTimeout, ("int",)),
    "reserve-job": (bp.ReserveJob, ("int",)),
    "delete": (bp.Delete, ("int",)),
    "release": (bp.Release, ("int", "int", "int")),
    "bury": (bp.Bury, ("int", "int")),
    "touch": (bp.Touch, ("int",)),
    "watch": (bp.Watch, ("tube",)),
    "ignore": (bp.Ignore, ("tube",)),
    "peek": (bp.Peek, ("int",)),
    "peek-ready": (bp.PeekReady, ()),
    "peek-delayed": (bp.PeekDelayed, ()),
    "peek-buried": (bp.PeekBuried, ()),
    "kick": (bp.Kick, ("int",)),
    "kick-job": (bp.KickJob, ("int",)),
    "stats-job": (bp.StatsJob, ("int",)),
    "stats-tube": (bp.StatsTube, ("tube",)),
    "stats": (bp.Stats, ()),
    "list-tubes": (bp.ListTubes, ()),
    "list-tube-used": (bp.ListTubeUsed, ()),
    "list-tubes-watched": (bp.ListTubesWatched, ()),
    "pause-tube": (bp.PauseTube, ("tube", "int")),
    "quit": (bp.Quit, ()),
}
TUBE_RE = re.compile(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]{0,199}")
UINT_RE = re.compile(r"0|[1-9][0-9]*")


def _uint(token: str) -> int:
    assert UINT_RE.fullmatch(token), f"not plain unsigned decimal: {token!r}"
    return int(token)


def parse(wire: bytes) -> bp.Command:
    """Parse one command's wire bytes, checking the framing rules on the way."""
    line, sep, rest = wire.partition(b"\r\n")
    assert sep, "no CRLF"
    assert len(line) + 2 <= 224
    assert re.fullmatch(rb"[!-~]+( [!-~]+)*", line), f"not printable ASCII words: {line!r}"
    verb, *args = line.decode("ascii").split(" ")
    if verb == "put":
        priority, delay, ttr, size = map(_uint, args)
        assert rest[size:] == b"\r\n", "body not followed by exactly CRLF"
        return bp.Put(rest[:size], priority, delay, ttr)
    assert rest == b"", "bytes after the line"
    cls, kinds = LAYOUT[verb]
    assert len(args) == len(kinds)
    values: list[object] = []
    for kind, arg in zip(kinds, args, strict=True):
        if kind == "tube":
            assert TUBE_RE.fullmatch(arg)
            values.append(arg)
        else:
            values.append(_uint(arg))
    return cls(*values)


def test_parser_knows_every_verb() -> None:
    assert {cls for cls, _ in LAYOUT.values()} | {bp.Put} == ALL_COMMANDS
    for command, wire in GOLDEN:
        assert parse(wire) == command


tubes = st.from_regex(TUBE_RE, fullmatch=True)
u32 = st.integers(0, U32)
u64 = st.integers(0, U64)
bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"\r\n", b"\x00", b"\r", b"\n", b"put 0 0 1 1", b"x"])).map(b"".join),
)
commands = st.one_of(
    st.builds(bp.Put, bodies, u32, u32, u32),
    st.builds(bp.Use, tubes),
    st.just(bp.Reserve()),
    st.builds(bp.ReserveWithTimeout, st.integers(0, I31)),
    st.builds(bp.ReserveJob, u64),
    st.builds(bp.Delete, u64),
    st.builds(bp.Release, u64, u32, u32),
    st.builds(bp.Bury, u64, u32),
    st.builds(bp.Touch, u64),
    st.builds(bp.Watch, tubes),
    st.builds(bp.Ignore, tubes),
    st.builds(bp.Peek, u64),
    st.just(bp.PeekReady()),
    st.just(bp.PeekDelayed()),
    st.just(bp.PeekBuried()),
    st.builds(bp.Kick, u32),
    st.builds(bp.KickJob, u64),
    st.builds(bp.StatsJob, u64),
    st.builds(bp.StatsTube, tubes),
    st.just(bp.Stats()),
    st.just(bp.ListTubes()),
    st.just(bp.ListTubeUsed()),
    st.just(bp.ListTubesWatched()),
    st.builds(bp.PauseTube, tubes, u32),
)


@given(st.lists(commands, min_size=1, max_size=20), st.booleans())
def test_valid_commands_round_trip(cmds: list[bp.Command], quit: bool) -> None:
    if quit:
        cmds = [*cmds, bp.Quit()]
    conn = bp.Connection()
    for cmd in cmds:
        assert parse(conn.send(cmd)) == cmd
    assert conn.pending == tuple(cmds)


VALID_CHARS = "ABCXYZabcxyz0189+/;.$_()-"
near_names = st.text(alphabet=VALID_CHARS + " \t\r\n\x00:*#é\u0663\uff21", max_size=210)
texts = st.one_of(
    st.text(),
    st.text(st.characters(codec="ascii")),
    near_names,
    st.integers(198, 203).flatmap(lambda n: st.text(alphabet=VALID_CHARS, min_size=n, max_size=n)),
    tubes,
    tubes.map(lambda s: s + "\n"),
    st.tuples(tubes, st.characters(), tubes).map("".join),
)


@given(st.sampled_from(list(zip(TUBE_CTOR_IDS, TUBE_CTORS, strict=True))), texts)
@example(("use", bp.Use), "a" * 201)
@example(("pause-tube", TUBE_CTORS[4]), "a" * 200)
@example(("watch", bp.Watch), "-a")
@example(("ignore", bp.Ignore), "a\n")
def test_tube_names_accepted_exactly_when_valid(named: tuple[str, TubeCtor], text: str) -> None:
    verb, ctor = named
    if TUBE_RE.fullmatch(text) is None:
        with pytest.raises(bp.InvalidArgument):
            ctor(text)
        return
    wire = bp.Connection().send(ctor(text))
    assert len(wire) <= 224
    assert wire.endswith(b"\r\n")
    line = wire[:-2]
    prefix = verb.encode() + b" "
    assert line.startswith(prefix)
    argument = line[len(prefix) :]
    if verb == "pause-tube":
        argument, _, delay = argument.rpartition(b" ")
        assert delay == b"0"
    assert argument == text.encode("ascii")
    assert not set(argument) & set(b"\r\n\x00 \t")


def _outside(maximum: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=-1), st.integers(min_value=maximum + 1))


@given(st.data())
def test_out_of_range_ints_refused(data: st.DataObject) -> None:
    _, ctor, maximum = data.draw(st.sampled_from(INT_FIELDS))
    value = data.draw(_outside(maximum))
    with pytest.raises(bp.InvalidArgument):
        ctor(value)
    inside = data.draw(st.integers(0, maximum))
    assert parse(bp.Connection().send(ctor(inside))) == ctor(inside)


class _Liar(int):
    """An int that says it equals, and is within, anything."""

    def __eq__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@given(st.data())
def test_int_subclasses_are_checked_and_written_as_the_int_they_hold(
    data: st.DataObject,
) -> None:
    # "%d" writes the int a subclass holds, whatever its comparisons say: that
    # int is what is range-checked, and no shortcut trusts its __eq__.
    _, ctor, maximum = data.draw(st.sampled_from(INT_FIELDS))
    with pytest.raises(bp.InvalidArgument):
        ctor(_Liar(data.draw(_outside(maximum))))
    inside = data.draw(st.integers(0, maximum))
    assert bp.Connection().send(ctor(_Liar(inside))) == bp.Connection().send(ctor(inside))


# -- put: what Put() takes, refuses and writes, by a test-side rule --------------------------


class _Priority(enum.IntEnum):
    URGENT = 0
    LOW = 2**20
    TOO_LOW = 2**32  # out of range: refused like the int it is


class _Number(int):
    """A plain int subclass."""


def _expected_put(body: object, priority: object, delay: object, ttr: object) -> bytes | type:
    """What ``Connection().send(Put(body, priority, delay, ttr))`` writes, or the
    exception type Put() raises: a bytes-like body (``bytes``, ``bytearray``,
    ``memoryview``) is sent as its bytes, sized in bytes; each number must be an
    ``int`` but not a ``bool``, checked field by field, and is written as the int
    it holds (``%d``), whatever its class says about itself."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return TypeError
    numbers: list[int] = []
    for value in (priority, delay, ttr):
        if isinstance(value, bool) or not isinstance(value, int):
            return TypeError
        number = int.__index__(value)
        if not 0 <= number <= U32:
            return bp.InvalidArgument
        numbers.append(number)
    data = bytes(body)
    priority, delay, ttr = numbers
    return b"put %d %d %d %d\r\n" % (priority, delay, ttr, len(data)) + data + b"\r\n"


_put_ints = st.one_of(
    st.integers(0, U32),
    st.integers(),
    st.integers(0, U32).map(_Number),
    st.integers().map(_Liar),
    st.sampled_from(list(_Priority)),
    st.sampled_from([True, False, 1.0, 0.0, "1", None, bp.DEFAULT_PRIORITY, bp.DEFAULT_TTR]),
)
_put_bodies = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
    st.lists(st.integers(0, 2**31 - 1), max_size=4).map(lambda xs: array.array("i", xs)),
    st.lists(st.integers(0, 2**31 - 1), max_size=4).map(
        lambda xs: memoryview(array.array("i", xs))
    ),
    st.text(max_size=8),
    st.sampled_from([None, 5, [b"x"]]),
)


@given(_put_bodies, _put_ints, _put_ints, _put_ints)
@example(b"x", bp.DEFAULT_PRIORITY, 0, bp.DEFAULT_TTR)
@example(b"x", bp.DEFAULT_PRIORITY, False, bp.DEFAULT_TTR)  # equal to the defaults,
@example(b"x", float(bp.DEFAULT_PRIORITY), 0, bp.DEFAULT_TTR)  # and refused all the same
@example(b"x", bp.DEFAULT_PRIORITY, 0, float(bp.DEFAULT_TTR))
@example(bytearray(b"x"), bp.DEFAULT_PRIORITY, 0, bp.DEFAULT_TTR)
@example(memoryview(array.array("i", [1, 2])), bp.DEFAULT_PRIORITY, 0, bp.DEFAULT_TTR)
@example(array.array("B", b"xy"), 1, 2, 3)
@example(b"x", _Priority.LOW, _Number(5), _Liar(7))
@example(b"x", _Priority.TOO_LOW, 0, 60)
@example(b"x", _Liar(2**32), 0, 60)
@example(b"x", 2**32, True, 60)  # the priority's range is checked before the delay's type
@example(b"x", True, 0, 60)
@example("text", 1, 2, 3)
def test_put_takes_refuses_and_writes_as_the_rule_says(
    body: Any, priority: Any, delay: Any, ttr: Any
) -> None:
    expected = _expected_put(body, priority, delay, ttr)
    if isinstance(expected, type):
        with pytest.raises(expected):
            bp.Put(body, priority, delay, ttr)
        return
    put = bp.Put(body, priority, delay, ttr)
    assert type(put.body) is bytes and put.body == bytes(body)
    conn = bp.Connection()
    assert conn.send(put) == expected
    assert conn.pending == (put,)
    assert parse(expected) == put


def test_put_keeps_its_own_copy_of_a_mutable_body() -> None:
    source = bytearray(b"job")
    view = memoryview(source)
    from_array, from_view = bp.Put(source), bp.Put(view)  # type: ignore[arg-type]
    source[:] = b"JOB"
    assert from_array.body == from_view.body == b"job"
    assert bp.Connection().send(from_view) == b"put 65536 0 60 3\r\njob\r\n"


def test_put_defaults_are_values_not_identities() -> None:
    # An equal priority that is another object is written the same; equal values
    # of other types are refused, as for any other value.
    default = bp.Connection().send(bp.Put(b"job\r\n"))
    same = bp.Connection().send(bp.Put(b"job\r\n", int(str(bp.DEFAULT_PRIORITY)), 0, 60))
    assert default == same == b"put 65536 0 60 5\r\njob\r\n\r\n"
    for priority, delay, ttr in [
        (float(bp.DEFAULT_PRIORITY), 0, bp.DEFAULT_TTR),
        (bp.DEFAULT_PRIORITY, False, bp.DEFAULT_TTR),
        (bp.DEFAULT_PRIORITY, 0.0, bp.DEFAULT_TTR),
        (bp.DEFAULT_PRIORITY, 0, float(bp.DEFAULT_TTR)),
    ]:
        with pytest.raises(TypeError):
            bp.Put(b"job", priority, delay, ttr)  # type: ignore[arg-type]
    with pytest.raises(bp.InvalidArgument):
        bp.Put(b"job", bp.DEFAULT_PRIORITY, -1, bp.DEFAULT_TTR)


def test_put_of_odd_but_valid_values() -> None:
    # An IntEnum and an int subclass are written as the ints they hold.
    assert bp.Connection().send(bp.Put(b"x", _Priority.LOW, _Number(3))) == (
        b"put 1048576 3 60 1\r\nx\r\n"
    )
    with pytest.raises(bp.InvalidArgument, match="4294967296"):
        bp.Put(b"x", _Priority.TOO_LOW)
    # A buffer of 4-byte items is sized in bytes, not in items; the array itself
    # is not a body.
    wide = array.array("i", [1, 2])
    wire = bp.Connection().send(bp.Put(memoryview(wide)))  # type: ignore[arg-type]
    assert wire.startswith(b"put 65536 0 60 8\r\n")
    with pytest.raises(TypeError, match="bytes-like"):
        bp.Put(wide)  # type: ignore[arg-type]
