"""Injection and bad input: every argument a user controls is tried with
hypothesis (CR, LF, NUL, spaces, tabs, non-ASCII, a leading hyphen, 201 bytes,
out-of-range numbers, wrong types), and each is refused before any byte is
written. Two witnesses: a socket that records every byte the client writes, and
the server's own command counters (``stats``: every ``cmd-*`` figure and
``total-connections``), read before and after by another connection.

Bodies beyond the server's ``max-job-size`` cannot be refused client-side today
(the client does not know the limit): they are sent, the server answers
``JOB_TOO_BIG`` after reading the whole body, and the connection stays in sync.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robust_helpers import RecordingSocket, recording_socket

import beanproto as bp
from beanproto_sync import Client
from conftest import Server, start_server

VALID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()"
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\x00",
    " ",
    "\t",
    "\x0b",
    "é",
    "\u2028",
    "\U0001f600",
    "*",
    ":",
    "\r\nput 0 0 60 1\r\nx",
    "\r\ndelete 1",
]

valid_tube = st.text(VALID_CHARS, min_size=1, max_size=200).filter(lambda s: s[0] != "-")


def _is_valid(name: str) -> bool:
    return 1 <= len(name) <= 200 and name[0] != "-" and all(c in VALID_CHARS for c in name)


@st.composite
def _with_hostile(draw: st.DrawFn) -> str:
    name = draw(valid_tube)
    bad = draw(st.sampled_from(HOSTILE))
    at = draw(st.one_of(st.sampled_from([0, len(name)]), st.integers(0, len(name))))
    return name[:at] + bad + name[at:]


bad_tube = st.one_of(
    st.just(""),
    st.text(VALID_CHARS, min_size=201, max_size=400).map(lambda s: "a" + s[:-1]),
    valid_tube.map(lambda s: ("-" + s)[:200]),
    _with_hostile(),
    st.text(min_size=0, max_size=250).filter(lambda s: not _is_valid(s)),
)
wrong_type_tube = st.one_of(
    st.binary(max_size=10), st.integers(), st.none(), st.just(["default"]), st.floats()
)


def bad_int(maximum: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=maximum + 1),
        st.booleans(),
        st.floats(),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.none(),
    )


bad_u32 = bad_int(bp.MAX_U32)
bad_u64 = bad_int(bp.MAX_U64)
bad_reserve_timeout = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=bp.MAX_RESERVE_TIMEOUT + 1),
    st.floats(max_value=-1e-9),
    st.floats(min_value=bp.MAX_RESERVE_TIMEOUT + 1.0),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.booleans(),
    st.text(max_size=5),
    st.binary(max_size=5),
)
bad_body = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.lists(st.integers(0, 255), max_size=5),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

# ``h`` is function-scoped on purpose: it checks the counters once around all examples.
checked = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

REFUSED = (bp.InvalidArgument, TypeError, ValueError)


@dataclasses.dataclass
class Harness:
    server: Server
    client: Client[bytes]
    sock: RecordingSocket
    observer: Client[bytes]

    def counters(self) -> dict[str, int]:
        s = self.observer.stats()
        out = {k: v for k, v in vars_of(s).items() if k.startswith("cmd_")}
        out["total_connections"] = s.total_connections
        return out

    def refused(self, call: Callable[[], object]) -> None:
        before = len(self.sock.written)
        with pytest.raises(REFUSED):
            call()
        assert len(self.sock.written) == before, bytes(self.sock.written[before:])
        assert not self.client.closed  # a refused argument does not cost the connection


def vars_of(obj: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return dict(vars(obj))  # pragma: no cover


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    server = start_server("-z", "1000")
    sock = recording_socket(server.address)
    client = Client(sock, timeout=5)
    observer = Client(server.address, timeout=5)
    try:
        yield Harness(server, client, sock, observer)
    finally:
        client.close()
        observer.close()
        server.stop()


@pytest.fixture
def h(harness: Harness) -> Iterator[Harness]:
    """The harness, with the server's counters checked around the test: only the
    observer's own ``stats`` may have moved them."""
    before = harness.counters()
    written = len(harness.sock.written)
    yield harness
    after = harness.counters()
    assert len(harness.sock.written) == written
    diff = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert diff == {"cmd_stats": 1}, diff
    # ...and the client still works (this does write, after the check).
    assert harness.client.using() == "default"


TUBE_CALLS: dict[str, Callable[[Client[bytes], Any], object]] = {
    "use": lambda c, t: c.use(t),
    "watch": lambda c, t: c.watch(t),
    "ignore": lambda c, t: c.ignore(t),
    "stats_tube": lambda c, t: c.stats_tube(t),
    "pause_tube": lambda c, t: c.pause_tube(t, 0),
}
ID_CALLS: dict[str, Callable[[Client[bytes], Any], object]] = {
    "peek": lambda c, i: c.peek(i),
    "delete": lambda c, i: c.delete(i),
    "release": lambda c, i: c.release(i),
    "bury": lambda c, i: c.bury(i),
    "touch": lambda c, i: c.touch(i),
    "kick_job": lambda c, i: c.kick_job(i),
    "stats_job": lambda c, i: c.stats_job(i),
    "reserve_job": lambda c, i: c.reserve_job(i),
    "delete_many": lambda c, i: c.delete_many([1, i, 2]),
}
U32_CALLS: dict[str, Callable[[Client[bytes], Any], object]] = {
    "put priority": lambda c, v: c.put(b"x", priority=v),
    "put delay": lambda c, v: c.put(b"x", delay=v),
    "put ttr": lambda c, v: c.put(b"x", ttr=v),
    "put_many priority": lambda c, v: c.put_many([b"x", b"y"], priority=v),
    "release priority": lambda c, v: c.release(1, priority=v),
    "release delay": lambda c, v: c.release(1, delay=v),
    "bury priority": lambda c, v: c.bury(1, priority=v),
    "pause_tube delay": lambda c, v: c.pause_tube("default", v),
    "kick bound": lambda c, v: c.kick(v),
}


@checked
@given(name=st.one_of(bad_tube, wrong_type_tube), call=st.sampled_from(sorted(TUBE_CALLS)))
def test_bad_tube_names_are_refused_before_writing(h: Harness, name: Any, call: str) -> None:
    h.refused(lambda: TUBE_CALLS[call](h.client, name))


EXPLICIT_BAD_TUBES = [
    "",
    "-",
    "-abc",
    "a" * 201,
    "a" * 1000,
    *(b + "abc" for b in HOSTILE),
    *("ab" + b + "c" for b in HOSTILE),
    *("abc" + b for b in HOSTILE),
]


def test_listed_bad_tube_names_are_refused_before_writing(h: Harness) -> None:
    for name in EXPLICIT_BAD_TUBES:
        for call in TUBE_CALLS.values():
            h.refused(lambda: call(h.client, name))  # noqa: B023


@checked
@given(name=bad_tube)
def test_bad_tube_names_at_connect_time(h: Harness, name: str) -> None:
    # Refused before connecting: total-connections (checked by ``h``) does not move.
    with pytest.raises(REFUSED):
        Client(h.server.address, use=name)
    with pytest.raises(REFUSED):
        Client(h.server.address, watch=["ok", name])


@checked
@given(value=bad_u64, call=st.sampled_from(sorted(ID_CALLS)))
def test_bad_ids_are_refused_before_writing(h: Harness, value: Any, call: str) -> None:
    h.refused(lambda: ID_CALLS[call](h.client, value))


@checked
@given(value=bad_u32, call=st.sampled_from(sorted(U32_CALLS)))
def test_bad_numbers_are_refused_before_writing(h: Harness, value: Any, call: str) -> None:
    h.refused(lambda: U32_CALLS[call](h.client, value))


@checked
@given(value=bad_reserve_timeout)
def test_bad_reserve_timeouts_are_refused_before_writing(h: Harness, value: Any) -> None:
    h.refused(lambda: h.client.reserve(timeout=value))


@checked
@given(body=bad_body)
def test_bodies_of_the_wrong_type_are_refused_before_writing(h: Harness, body: Any) -> None:
    h.refused(lambda: h.client.put(body))
    h.refused(lambda: h.client.put_many([b"fine", body]))


def test_unencodable_text_is_refused_before_writing(harness: Harness) -> None:
    sock = recording_socket(harness.server.address)
    before = harness.counters()
    with Client(sock, encoding="ascii", timeout=5) as c:

        @checked
        @given(body=st.text(min_size=1, max_size=20).filter(lambda s: not s.isascii()))
        def check(body: str) -> None:
            with pytest.raises(UnicodeEncodeError):
                c.put(body)
            assert sock.written == b""
            assert not c.closed

        check()
    after = harness.counters()
    assert after["cmd_put"] == before["cmd_put"]


@pytest.fixture
def plain(harness: Harness) -> Harness:
    return harness


def test_the_witnesses_see_a_write(plain: Harness) -> None:
    """A valid command does move the counter and the recorded bytes, so the
    checks above are not vacuous."""
    before = plain.counters()
    written = len(plain.sock.written)
    with pytest.raises(bp.NotFoundError):
        plain.client.peek(2**64 - 1)
    assert bytes(plain.sock.written[written:]) == b"peek 18446744073709551615\r\n"
    after = plain.counters()
    assert after["cmd_peek"] == before["cmd_peek"] + 1


# -- bodies beyond max-job-size (the server was started with -z 1000) ---------------------


@pytest.mark.parametrize("size", [1001, 65536, 10 * 2**20])
def test_body_beyond_max_job_size(plain: Harness, size: int) -> None:
    """Sent (the client does not know the limit), refused by the server with
    JOB_TOO_BIG after it read the whole body, and the connection stays in sync."""
    c = plain.client
    assert plain.observer.stats().max_job_size == 1000
    with pytest.raises(bp.JobTooBigError):
        c.put(b"b" * size)
    assert not c.closed
    job_id = c.put(b"after")
    assert c.peek(job_id) == bp.Job(job_id, b"after")
    with pytest.raises(bp.JobTooBigError) as info:
        c.put_many([b"one", b"x" * size, b"three"])
    outcomes = info.value.outcomes
    assert outcomes is not None
    assert isinstance(outcomes[1], bp.JobTooBigError)
    assert [c.peek(i).body for i in (outcomes[0], outcomes[2])] == [b"one", b"three"]  # type: ignore[call-overload]
    c.delete_many([job_id, outcomes[0], outcomes[2]])  # type: ignore[list-item]
