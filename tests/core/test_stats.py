"""The hand-written stats parser: fixed payloads of each version, malformed payloads,
generated payloads, arbitrary bytes, and live payloads from the session's beanstalkd."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stats_samples import (
    JOB_EXPECTED,
    JOB_KEYS,
    JOB_QUOTED,
    JOB_UNQUOTED,
    SERVER_KEYS,
    SERVER_KEYS_SINCE_1_12,
    SERVER_SAMPLES,
    STATS_1_10,
    STATS_1_12,
    TUBE_EXPECTED,
    TUBE_KEYS,
    TUBE_LIST,
    TUBE_LIST_EXPECTED,
    TUBE_QUOTED,
    TUBE_UNQUOTED,
    attr,
)

import beanproto as bp
from beanproto._errors import RemoteProtocolError
from beanproto._stats import (
    JobStats,
    ServerStats,
    TubeStats,
    parse_job_stats,
    parse_server_stats,
    parse_tube_list,
    parse_tube_stats,
)
from conftest import server_version, server_version_text

# --- the types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "keys"),
    [(ServerStats, SERVER_KEYS), (JobStats, JOB_KEYS), (TubeStats, TUBE_KEYS)],
)
def test_one_attribute_per_key_then_extra(cls: type[Any], keys: dict[str, str]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[-1] == "extra"
    assert sorted(names[:-1]) == sorted(attr(k) for k in keys)


def test_only_the_keys_added_in_1_12_are_optional() -> None:
    optional = {f.name for f in dataclasses.fields(ServerStats) if f.default is None}
    assert optional == {attr(k) for k in SERVER_KEYS_SINCE_1_12}
    for cls in (JobStats, TubeStats):
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)[:-1])


def test_stats_are_frozen_hashable_and_extra_is_read_only() -> None:
    stats = parse_server_stats(STATS_1_12[:-1] + b"\nfoo-bar: baz\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.pid = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.extra["foo-bar"] = "x"  # type: ignore[index]
    assert hash(stats) == hash(parse_server_stats(STATS_1_12[:-1] + b"\nfoo-bar: baz\n"))
    assert "pid=4242" in repr(stats)


# --- fixed payloads --------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(SERVER_SAMPLES))
def test_server_stats_of_each_version(version: str) -> None:
    payload, expected = SERVER_SAMPLES[version]
    stats = parse_server_stats(payload)
    assert stats == ServerStats(**expected)
    assert stats.version == version
    assert type(stats.version) is str
    assert stats.rusage_utime == 0.012345
    assert type(stats.rusage_utime) is float
    assert stats.max_job_size == 65535
    assert stats.extra == {}


def test_server_stats_1_10_lacks_the_1_12_keys() -> None:
    stats = parse_server_stats(STATS_1_10)
    assert stats.version == "1.10"  # PyYAML says 1.1
    assert stats.draining is None
    assert stats.os is None
    assert stats.platform is None


def test_server_stats_1_12_os_with_hash_and_colon() -> None:
    stats = parse_server_stats(STATS_1_12)
    assert stats.draining is False
    assert stats.os == "#1 SMP PREEMPT_DYNAMIC Thu Jan  4 12:34:56 UTC 2024"


def test_server_stats_1_13_strips_quotes() -> None:
    stats = parse_server_stats(SERVER_SAMPLES["1.13"][0])
    assert stats.draining is True
    assert stats.hostname == "build-01.local"
    assert stats.platform == "arm64"
    assert stats.os is not None
    assert stats.os.startswith("Darwin Kernel Version 22.1.0: Sun Oct")
    assert stats.os.endswith("root:xnu-8792.41.9~2/RELEASE_X86_64")


@pytest.mark.parametrize("payload", [JOB_UNQUOTED, JOB_QUOTED], ids=["<=1.12", "1.13"])
def test_job_stats(payload: bytes) -> None:
    stats = parse_job_stats(payload)
    assert stats == JobStats(**JOB_EXPECTED)
    assert stats.tube == "1.0"
    assert stats.id == 2**64 - 1
    assert stats.time_left == -1


@pytest.mark.parametrize("payload", [TUBE_UNQUOTED, TUBE_QUOTED], ids=["<=1.12", "1.13"])
def test_tube_stats(payload: bytes) -> None:
    stats = parse_tube_stats(payload)
    assert stats == TubeStats(**TUBE_EXPECTED)
    assert stats.name == "null"


def test_tube_list() -> None:
    assert parse_tube_list(TUBE_LIST) == TUBE_LIST_EXPECTED
    assert parse_tube_list(b"---\n") == ()
    # Items are never quoted on the wire, so quotes are part of the item.
    assert parse_tube_list(b'---\n- "x"\n') == ('"x"',)


def test_order_does_not_matter() -> None:
    header, *lines = STATS_1_12.split(b"\n")
    shuffled = b"\n".join([header, *reversed(lines[:-1]), b""])
    assert parse_server_stats(shuffled) == parse_server_stats(STATS_1_12)


def test_unknown_keys_land_in_extra() -> None:
    payload = STATS_1_12 + b'foo-bar: baz\ncmd-truncate: 3\nnew-thing: "q: x"\nempty: \n'
    stats = parse_server_stats(payload)
    assert stats.extra == {
        "foo-bar": "baz",
        "cmd-truncate": "3",
        "new-thing": '"q: x"',  # raw: quotes kept, split at the first ": " only
        "empty": "",
    }
    assert stats == dataclasses.replace(parse_server_stats(STATS_1_12), extra=stats.extra)
    assert parse_job_stats(JOB_UNQUOTED + b"foo-bar: baz\n").extra == {"foo-bar": "baz"}
    assert parse_tube_stats(TUBE_UNQUOTED + b"foo-bar: baz\n").extra == {"foo-bar": "baz"}


def test_values_split_at_the_first_colon_space_only() -> None:
    stats = parse_server_stats(_with(STATS_1_12, "hostname", b"a: b: c"))
    assert stats.hostname == "a: b: c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", ""),
        (b'""', ""),
        (b'"', '"'),
        (b"  spaced  ", "  spaced  "),
        (b'"unbalanced', '"unbalanced'),
        (b'""x""', '"x"'),  # one pair only
        (b"caf\xc3\xa9", "caf\u00e9"),
    ],
)
def test_string_values(value: bytes, expected: str) -> None:
    assert parse_server_stats(_with(STATS_1_12, "os", value)).os == expected


def test_non_utf8_hostname_survives_and_its_bytes_are_recoverable() -> None:
    stats = parse_server_stats(_with(STATS_1_12, "hostname", b"caf\xe9"))
    assert stats.hostname.encode("utf-8", "surrogateescape") == b"caf\xe9"
    other = parse_server_stats(_with(STATS_1_12, "hostname", b"caf\xe8"))
    assert other.hostname != stats.hostname


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("time-left", b"-30", -30),
        ("time-left", b"0", 0),
        ("time-left", b"-9223372036854775808", -(2**63)),
        ("age", b"-2", -2),  # printed with PRId64: a wall-clock step back can do this
        ("pri", b"007", 7),
    ],
)
def test_job_integers(key: str, value: bytes, expected: int) -> None:
    stats = parse_job_stats(_with(JOB_UNQUOTED, key, value))
    assert getattr(stats, attr(key)) == expected


def test_pause_time_left_may_be_negative() -> None:
    assert parse_tube_stats(_with(TUBE_UNQUOTED, "pause-time-left", b"-5")).pause_time_left == -5


# --- malformed payloads ----------------------------------------------------------------------


def _with(payload: bytes, key: str, value: bytes) -> bytes:
    """``payload`` with the value of ``key`` replaced (the key must be present once)."""
    new, count = re.subn(
        rb"^" + re.escape(key.encode()) + rb": .*$",
        lambda _: key.encode() + b": " + value,
        payload,
        flags=re.MULTILINE,
    )
    assert count == 1, key
    return new


def _without(payload: bytes, key: str) -> bytes:
    new, count = re.subn(rb"^" + re.escape(key.encode()) + rb": .*\n", b"", payload, flags=re.M)
    assert count == 1, key
    return new


MALFORMED_STATS: dict[str, bytes] = {
    "empty": b"",
    "no header": STATS_1_12[4:],
    "header without LF": b"---",
    "header with CRLF": b"---\r\n" + STATS_1_12[4:],
    "CRLF lines": STATS_1_12.replace(b"\n", b"\r\n"),
    "chunk CRLF included": STATS_1_12 + b"\r\n",
    "CR inside a value": _with(STATS_1_12, "hostname", b"a\rb"),
    "no final LF": STATS_1_12[:-1],
    "blank line": STATS_1_12 + b"\n",
    "second document": STATS_1_12 + b"---\n",
    "line without colon space": STATS_1_12 + b"garbage\n",
    "colon without space": STATS_1_12.replace(b"cmd-put: 6\n", b"cmd-put:6\n"),
    "key with empty value and no space": STATS_1_12.replace(b"cmd-put: 6\n", b"cmd-put:\n"),
    "list item": STATS_1_12 + b"- default\n",
    "list item with colon": STATS_1_12 + b"- a: b\n",
    "indented key": STATS_1_12 + b"  nested: x\n",
    "space in unknown key": STATS_1_12 + b"foo bar: x\n",
    "empty key": STATS_1_12 + b": x\n",
    "duplicate key": STATS_1_12 + b"cmd-put: 6\n",
    "duplicate unknown key": STATS_1_12 + b"foo: 1\nfoo: 1\n",
    "int: empty": _with(STATS_1_12, "cmd-put", b""),
    "int: trailing junk": _with(STATS_1_12, "cmd-put", b"12x"),
    "int: plus sign": _with(STATS_1_12, "cmd-put", b"+1"),
    "int: negative counter": _with(STATS_1_12, "cmd-put", b"-1"),
    "int: leading space": _with(STATS_1_12, "cmd-put", b" 1"),
    "int: trailing space": _with(STATS_1_12, "cmd-put", b"1 "),
    "int: underscore": _with(STATS_1_12, "cmd-put", b"1_000"),
    "int: non-ASCII digit": _with(STATS_1_12, "cmd-put", "\u0663".encode()),
    "int: quoted": _with(STATS_1_12, "cmd-put", b'"5"'),
    "int: float": _with(STATS_1_12, "cmd-put", b"5.0"),
    "int: 21 digits": _with(STATS_1_12, "cmd-put", b"1" * 21),
    "int: 5000 digits": _with(STATS_1_12, "cmd-put", b"9" * 5000),
    "int: bare minus": _with(STATS_1_12, "pid", b"-"),
    "float: integer": _with(STATS_1_12, "rusage-utime", b"1"),
    "float: exponent": _with(STATS_1_12, "rusage-utime", b"1e3"),
    "float: inf": _with(STATS_1_12, "rusage-utime", b"inf"),
    "float: nan": _with(STATS_1_12, "rusage-utime", b"nan"),
    "float: no integer part": _with(STATS_1_12, "rusage-utime", b".5"),
    "float: no fraction": _with(STATS_1_12, "rusage-utime", b"1."),
    "float: negative": _with(STATS_1_12, "rusage-stime", b"-0.5"),
    "bool: True": _with(STATS_1_12, "draining", b"True"),
    "bool: yes": _with(STATS_1_12, "draining", b"yes"),
    "bool: 1": _with(STATS_1_12, "draining", b"1"),
    "bool: quoted": _with(STATS_1_12, "draining", b'"false"'),
    "bool: empty": _with(STATS_1_12, "draining", b""),
}


@pytest.mark.parametrize("payload", MALFORMED_STATS.values(), ids=MALFORMED_STATS.keys())
def test_malformed_server_stats(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_server_stats(payload)


def _required(keys: dict[str, str], optional: frozenset[str] = frozenset()) -> list[str]:
    return [k for k in keys if k not in optional]


@pytest.mark.parametrize("key", _required(SERVER_KEYS, SERVER_KEYS_SINCE_1_12))
def test_an_omitted_server_key_reads_as_none(key: str) -> None:
    # Every version 1.10-1.13 sends it; a fork or a future version may not.
    stats = parse_server_stats(_without(STATS_1_12, key))
    assert getattr(stats, attr(key)) is None
    full = parse_server_stats(STATS_1_12)
    assert stats == dataclasses.replace(full, **{attr(key): None})


@pytest.mark.parametrize("key", sorted(SERVER_KEYS_SINCE_1_12))
def test_each_1_12_key_is_optional(key: str) -> None:
    stats = parse_server_stats(_without(STATS_1_12, key))
    assert getattr(stats, key) is None


@pytest.mark.parametrize("key", list(JOB_KEYS))
def test_an_omitted_job_key_reads_as_none(key: str) -> None:
    stats = parse_job_stats(_without(JOB_UNQUOTED, key))
    assert stats == dataclasses.replace(parse_job_stats(JOB_UNQUOTED), **{attr(key): None})


@pytest.mark.parametrize("key", list(TUBE_KEYS))
def test_an_omitted_tube_key_reads_as_none(key: str) -> None:
    stats = parse_tube_stats(_without(TUBE_UNQUOTED, key))
    assert stats == dataclasses.replace(parse_tube_stats(TUBE_UNQUOTED), **{attr(key): None})


def test_an_omitted_key_still_checks_the_others() -> None:
    with pytest.raises(RemoteProtocolError, match="cmd-put"):
        parse_server_stats(_with(_without(STATS_1_12, "pid"), "cmd-put", b"x"))


def test_stats_job_checks_the_id_unless_omitted() -> None:
    job_id = parse_job_stats(JOB_UNQUOTED).id
    assert parse_job_stats(JOB_UNQUOTED, job_id).id == job_id
    with pytest.raises(RemoteProtocolError, match="was answered for job"):
        parse_job_stats(JOB_UNQUOTED, job_id + 1)
    assert parse_job_stats(_without(JOB_UNQUOTED, "id"), job_id + 1).id is None


@pytest.mark.parametrize(
    ("command", "payload", "key"),
    [
        (bp.Stats(), STATS_1_12, "cmd-put"),
        (bp.StatsTube("default"), TUBE_UNQUOTED, "current-jobs-ready"),
        (bp.StatsJob(1), JOB_UNQUOTED, "id"),
    ],
    ids=["stats", "stats-tube", "stats-job"],
)
def test_an_omitted_key_keeps_the_connection(command: bp.Command, payload: bytes, key: str) -> None:
    conn = bp.Connection()
    conn.send(command)
    conn.send(bp.Use("a"))
    body = _without(payload, key)
    conn.receive_data(b"OK %d\r\n%b\r\nUSING a\r\n" % (len(body), body))
    event = conn.next_event()
    assert getattr(event, attr(key)) is None
    assert conn.next_event() == bp.Using("a")


def test_error_message_shows_the_line_truncated() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_server_stats(_with(STATS_1_12, "cmd-put", b"x" * 500))
    message = str(info.value)
    assert "cmd-put" in message
    assert "'cmd-put: xxx" in message
    assert len(message) < 200


def test_stats_payload_is_not_a_tube_list() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_tube_list(STATS_1_12)
    with pytest.raises(RemoteProtocolError):
        parse_server_stats(TUBE_LIST)
    with pytest.raises(RemoteProtocolError):
        parse_job_stats(STATS_1_12)  # its id (hex) is not a job's id (decimal)


MALFORMED_LISTS: dict[str, bytes] = {
    "empty": b"",
    "no header": b"- default\n",
    "empty item": b"---\n- \n",
    "bare dash": b"---\n-\n",
    "no space after dash": b"---\n-default\n",
    "not a list line": b"---\ndefault\n",
    "mapping line": b"---\nname: default\n",
    "indented": b"---\n  - default\n",
    "blank line": b"---\n- default\n\n",
    "CRLF": b"---\r\n- default\r\n",
    "chunk CRLF included": b"---\n- default\n\r\n",
    "no final LF": b"---\n- default",
}


@pytest.mark.parametrize("payload", MALFORMED_LISTS.values(), ids=MALFORMED_LISTS.keys())
def test_malformed_tube_list(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_tube_list(payload)


# --- generated payloads ----------------------------------------------------------------------

# What a server may put in a string value: anything but line breaks and '"' (tube names
# cannot hold '"'; hosts do not). Unicode line separators are not breaks in this format.
_text = st.text(st.characters(exclude_characters='\n\r"', exclude_categories=["Cs"]))


@st.composite
def _value(draw: st.DrawFn, kind: str) -> tuple[str, Any]:
    """A (wire text, expected Python value) pair of the given kind."""
    if kind == "u":
        n = draw(st.integers(0, 2**64 - 1))
        return str(n), n
    if kind == "i":
        n = draw(st.integers(-(2**63), 2**63 - 1))
        return str(n), n
    if kind == "f":
        seconds, micros = draw(st.integers(0, 10**9)), draw(st.integers(0, 999_999))
        wire = f"{seconds}.{micros:06d}"
        return wire, float(wire)
    if kind == "b":
        flag = draw(st.booleans())
        return ("true" if flag else "false"), flag
    if kind == "id":
        hex_id = draw(st.from_regex(r"[0-9a-f]{16}", fullmatch=True))
        return hex_id, hex_id
    text = draw(_text)
    return (f'"{text}"' if draw(st.booleans()) else text), text


def _payloads(
    keys: dict[str, str], optional: frozenset[str] = frozenset()
) -> st.SearchStrategy[tuple[bytes, dict[str, Any]]]:
    """Payloads with every key but some ``optional`` ones (which read as ``None``), and
    some unknown ones, in any order, with the expected attribute values (including
    ``extra``)."""
    unknown_keys = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True).filter(
        lambda k: k not in keys
    )

    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
        lines: list[str] = []
        expected: dict[str, Any] = {}
        for key, kind in keys.items():
            if key in optional and draw(st.booleans()):
                expected[attr(key)] = None
                continue
            wire, value = draw(_value(kind))
            lines.append(f"{key}: {wire}")
            expected[attr(key)] = value
        extra = draw(st.dictionaries(unknown_keys, _text, max_size=4))
        lines.extend(f"{key}: {value}" for key, value in extra.items())
        lines = draw(st.permutations(lines))
        payload = "".join(f"{line}\n" for line in ["---", *lines]).encode()
        return payload, {**expected, "extra": extra}

    return build()


@given(_payloads(SERVER_KEYS, SERVER_KEYS_SINCE_1_12))
def test_generated_server_stats(case: tuple[bytes, dict[str, Any]]) -> None:
    payload, expected = case
    assert parse_server_stats(payload) == ServerStats(**expected)


@given(_payloads(JOB_KEYS))
def test_generated_job_stats(case: tuple[bytes, dict[str, Any]]) -> None:
    payload, expected = case
    assert parse_job_stats(payload) == JobStats(**expected)


@given(_payloads(TUBE_KEYS))
def test_generated_tube_stats(case: tuple[bytes, dict[str, Any]]) -> None:
    payload, expected = case
    assert parse_tube_stats(payload) == TubeStats(**expected)


@pytest.mark.parametrize(
    ("parse", "keys"),
    [(parse_server_stats, SERVER_KEYS), (parse_job_stats, JOB_KEYS), (parse_tube_stats, TUBE_KEYS)],
    ids=["server", "job", "tube"],
)
@given(data=st.data())
def test_generated_stats_with_any_keys_omitted(
    parse: Callable[[bytes], Any], keys: dict[str, str], data: st.DataObject
) -> None:
    payload, expected = data.draw(_payloads(keys, frozenset(keys)))
    result = parse(payload)
    assert {name: getattr(result, name) for name in expected} == expected


_tube_names = st.from_regex(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]{0,199}", fullmatch=True)


@given(st.lists(_tube_names))
def test_generated_tube_lists(names: list[str]) -> None:
    payload = "---\n" + "".join(f"- {name}\n" for name in names)
    assert parse_tube_list(payload.encode()) == tuple(names)


_PARSERS: list[tuple[Callable[[bytes], object], type]] = [
    (parse_server_stats, ServerStats),
    (parse_job_stats, JobStats),
    (parse_tube_stats, TubeStats),
    (parse_tube_list, tuple),
]
_SAMPLES = [STATS_1_10, STATS_1_12, JOB_QUOTED, TUBE_UNQUOTED, TUBE_LIST]


@st.composite
def _mutated_sample(draw: st.DrawFn) -> bytes:
    """A valid sample with a few bytes deleted, replaced or inserted."""
    data = bytearray(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        byte = draw(st.sampled_from([*b'\n\r :-"0x\xff#', draw(st.integers(0, 255))]))
        if action == "delete" and at < len(data):
            del data[at]
        elif action == "replace" and at < len(data):
            data[at] = byte
        else:
            data.insert(at, byte)
    return bytes(data)


_garbage = st.one_of(
    st.binary(),
    st.binary().map(lambda b: b"---\n" + b),
    st.lists(st.binary().map(lambda b: b.replace(b"\n", b""))).map(
        lambda lines: b"---\n" + b"".join(line + b"\n" for line in lines)
    ),
    _mutated_sample(),
)


@pytest.mark.parametrize(
    ("parse", "result_type"), _PARSERS, ids=lambda p: getattr(p, "__name__", "")
)
@given(payload=_garbage)
def test_any_bytes_parse_or_raise_remote_protocol_error(
    parse: Callable[[bytes], object], result_type: type, payload: bytes
) -> None:
    try:
        result = parse(payload)
    except RemoteProtocolError:
        return
    assert isinstance(result, result_type)


# --- live payloads ---------------------------------------------------------------------------


class _Raw:
    """A bare beanstalkd connection: send a line, read a reply line or an OK payload."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def line(self, command: bytes, body: bytes | None = None) -> bytes:
        self.sock.sendall(command + b"\r\n" + (b"" if body is None else body + b"\r\n"))
        reply = self.file.readline()
        assert reply.endswith(b"\r\n"), reply
        return reply[:-2]

    def payload(self, command: bytes) -> bytes:
        header = self.line(command)
        match = re.fullmatch(rb"OK (\d+)", header)
        assert match, header
        size = int(match[1])
        chunk = self.file.read(size + 2)
        assert len(chunk) == size + 2
        assert chunk[-2:] == b"\r\n"
        return chunk[:-2]


@pytest.fixture
def raw(server: Any) -> Iterator[_Raw]:
    conn = _Raw(server.address)
    yield conn
    conn.close()


def _put(raw: _Raw, tube: str, pri: int, delay: int, ttr: int) -> int:
    assert raw.line(b"use " + tube.encode()) == b"USING " + tube.encode()
    reply = raw.line(b"put %d %d %d 5" % (pri, delay, ttr), b"hello")
    match = re.fullmatch(rb"INSERTED (\d+)", reply)
    assert match, reply
    return int(match[1])


def test_live_server_stats(server: Any, raw: _Raw) -> None:
    version = server_version()
    since_1_12 = version >= (1, 12)
    payload = raw.payload(b"stats")
    # The header and the keys: 48 up to 1.11, and 1.12 added draining, os and platform.
    assert payload.count(b"\n") == 1 + (51 if since_1_12 else 48)
    stats = parse_server_stats(payload)
    assert stats.extra == {}
    assert stats.version == server_version_text()
    assert stats.pid == server.pid
    assert stats.hostname == socket.gethostname()
    if since_1_12:
        assert stats.draining is False
        assert stats.os == os.uname().version
        assert stats.platform == os.uname().machine
    else:
        assert (stats.draining, stats.os, stats.platform) == (None, None, None)
    assert re.fullmatch(r"[0-9a-f]{16}", stats.id)
    assert stats.max_job_size == 65535
    assert stats.current_connections >= 1
    assert stats.cmd_stats >= 1
    assert stats.rusage_utime >= 0.0
    assert stats.binlog_max_size > 0


def test_live_job_and_tube_stats(raw: _Raw, tube: str) -> None:
    job_id = _put(raw, tube, pri=1234, delay=0, ttr=42)
    job = parse_job_stats(raw.payload(b"stats-job %d" % job_id))
    assert job == JobStats(
        id=job_id,
        tube=tube,
        state="ready",
        pri=1234,
        age=job.age,
        delay=0,
        ttr=42,
        time_left=0,
        file=0,
        reserves=0,
        timeouts=0,
        releases=0,
        buries=0,
        kicks=0,
    )
    assert 0 <= job.age <= 5

    stats = parse_tube_stats(raw.payload(b"stats-tube " + tube.encode()))
    assert stats == TubeStats(
        name=tube,
        current_jobs_urgent=0,
        current_jobs_ready=1,
        current_jobs_reserved=0,
        current_jobs_delayed=0,
        current_jobs_buried=0,
        total_jobs=1,
        current_using=1,
        current_watching=0,
        current_waiting=0,
        cmd_delete=0,
        cmd_pause_tube=0,
        pause=0,
        pause_time_left=0,
    )


def test_live_reserved_and_delayed_jobs(raw: _Raw, tube: str) -> None:
    delayed = _put(raw, tube, pri=5, delay=100, ttr=60)
    ready = _put(raw, tube, pri=5, delay=0, ttr=30)
    assert raw.line(b"watch " + tube.encode()) == b"WATCHING 2"
    assert raw.line(b"reserve-with-timeout 0").startswith(b"RESERVED %d " % ready)
    raw.file.read(5 + 2)

    job = parse_job_stats(raw.payload(b"stats-job %d" % ready))
    assert (job.state, job.reserves, job.ttr) == ("reserved", 1, 30)
    assert 0 < job.time_left <= 30
    job = parse_job_stats(raw.payload(b"stats-job %d" % delayed))
    assert (job.state, job.delay) == ("delayed", 100)
    assert 0 < job.time_left <= 100

    stats = parse_tube_stats(raw.payload(b"stats-tube " + tube.encode()))
    assert (stats.current_jobs_reserved, stats.current_jobs_delayed) == (1, 1)
    assert stats.current_watching == 1


def test_live_tube_lists(raw: _Raw, tube: str) -> None:
    # A name a YAML loader would read as a float, and one it would read as an int.
    floaty = f"{uuid.uuid4().int % 10**12}.0"
    inty = str(10**15 + uuid.uuid4().int % 10**14)
    _put(raw, floaty, pri=0, delay=0, ttr=1)
    _put(raw, inty, pri=0, delay=0, ttr=1)
    _put(raw, tube, pri=0, delay=0, ttr=1)
    tubes = parse_tube_list(raw.payload(b"list-tubes"))
    assert {"default", tube, floaty, inty} <= set(tubes)
    assert all(type(name) is str for name in tubes)
    assert len(tubes) == len(set(tubes))

    assert parse_tube_list(raw.payload(b"list-tubes-watched")) == ("default",)
    assert raw.line(b"watch " + floaty.encode()) == b"WATCHING 2"
    assert raw.line(b"watch " + inty.encode()) == b"WATCHING 3"
    watched = parse_tube_list(raw.payload(b"list-tubes-watched"))
    assert sorted(watched) == sorted(["default", floaty, inty])

    assert parse_tube_stats(raw.payload(b"stats-tube " + floaty.encode())).name == floaty
    job = parse_job_stats(raw.payload(b"stats-job %d" % _put(raw, inty, 0, 0, 1)))
    assert job.tube == inty
