"""Hostile and broken servers: a scripted fake server (the one place a fake is
right) sends what beanstalkd never would, and the client must end in a clear
error within a bounded time, with bounded memory.

Each case runs twice: against the sync client over a socket, and against the
sans-IO core fed the same bytes (whole, and one byte at a time). Memory is
measured with ``tracemalloc``: the core may keep at most about
``2 * max_line_size`` of a line, or the part of an allowed body that actually
arrived; the sync client adds one ``recv`` buffer (64 KiB) on top.
"""

from __future__ import annotations

import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest
from robust_helpers import FakeServer, ScriptedConnection, deadline

import beanproto as bp
from beanproto_sync import Client

if sys.version_info < (3, 11):
    pass

LINE = bp.MAX_LINE_SIZE
RECV = 65536  # the sync client's recv size
SLACK = 32 * 1024  # exception objects, tracebacks, the fake server's small reads

_garbage_rng = random.Random(5)
GARBAGE = bytes(_garbage_rng.randrange(256) for _ in range(1000))
MEGA_LINE = b"A" * (8 * 2**20)  # built at import: not counted by tracemalloc below
BIG_PART = b"x" * 2**20


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yields a list that holds the tracemalloc peak (bytes) after the block."""
    out: list[int] = []
    tracemalloc.start()
    try:
        yield out
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append(peak)


# -- the scripts ---------------------------------------------------------------------


def reply(*replies: bytes) -> Callable[[ScriptedConnection], None]:
    """Answer the first command with ``replies`` (one write each), then hold."""

    def script(c: ScriptedConnection) -> None:
        c.read_command()
        for r in replies:
            c.send(r)
        c.hold()

    return script


def reply_then_close(*replies: bytes) -> Callable[[ScriptedConnection], None]:
    def script(c: ScriptedConnection) -> None:
        c.read_command()
        for r in replies:
            c.send(r)

    return script


def greet(data: bytes) -> Callable[[ScriptedConnection], None]:
    """Send ``data`` before the client asks anything."""

    def script(c: ScriptedConnection) -> None:
        c.send(data)
        c.read_command()
        c.hold()

    return script


def trickle(data: bytes, every: float) -> Callable[[ScriptedConnection], None]:
    """Answer one byte every ``every`` seconds, then hold."""

    def script(c: ScriptedConnection) -> None:
        c.read_command()
        for i in range(len(data)):
            if c.stop.wait(every):
                return
            c.send(data[i : i + 1])
        c.hold()

    return script


STATS_JOB_4 = b"---\nid: 4\ntube: default\nstate: ready\n"

Call = tuple[str, tuple[object, ...]]  # a client method and its arguments (both clients)


@dataclass
class Case:
    name: str
    script: Callable[[ScriptedConnection], None]
    call: Call
    command: bp.Command  # what ``call`` sends, for the core-level run
    stream: bytes  # what the server sends, for the core-level run
    error: type[BaseException]  # what the sync client raises
    memory: int = LINE * 2  # the core's bound (the client adds RECV)


def _cases() -> list[Case]:
    put: Call = ("put", (b"x",))
    return [
        Case("garbage", reply(GARBAGE), put, bp.Put(b"x"), GARBAGE, bp.RemoteProtocolError),
        Case(
            "garbage line",
            reply(b"\x00\xff\x7fgarbage\x01\r\n"),
            put,
            bp.Put(b"x"),
            b"\x00\xff\x7fgarbage\x01\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "word of another command",
            reply(b"USING default\r\n"),
            put,
            bp.Put(b"x"),
            b"USING default\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "stats answered INSERTED",
            reply(b"INSERTED 3\r\n"),
            ("stats", ()),
            bp.Stats(),
            b"INSERTED 3\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "peek answered with another job",
            reply(b"FOUND 6 1\r\nx\r\n"),
            ("peek", (5,)),
            bp.Peek(5),
            b"FOUND 6 1\r\nx\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "use answered with another tube",
            reply(b"USING b\r\n"),
            ("use", ("a",)),
            bp.Use("a"),
            b"USING b\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "reserve-job answered with another job",
            reply(b"RESERVED 8 1\r\nx\r\n"),
            ("reserve_job", (7,)),
            bp.ReserveJob(7),
            b"RESERVED 8 1\r\nx\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "stats-job answered for another job",
            reply(b"OK %d\r\n%b\r\n" % (len(STATS_JOB_4), STATS_JOB_4)),
            ("stats_job", (3,)),
            bp.StatsJob(3),
            b"OK %d\r\n%b\r\n" % (len(STATS_JOB_4), STATS_JOB_4),
            bp.RemoteProtocolError,
        ),
        Case(
            "extra argument",
            reply(b"INSERTED 1 2\r\n"),
            put,
            bp.Put(b"x"),
            b"INSERTED 1 2\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "negative id",
            reply(b"INSERTED -1\r\n"),
            put,
            bp.Put(b"x"),
            b"INSERTED -1\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "id beyond 2**64",
            reply(b"INSERTED 18446744073709551616\r\n"),
            put,
            bp.Put(b"x"),
            b"INSERTED 18446744073709551616\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "LF without CR",
            reply(b"INSERTED 1\n" * 100),
            put,
            bp.Put(b"x"),
            b"INSERTED 1\n" * 100,
            bp.RemoteProtocolError,
        ),
        Case(
            "reply before any command",
            greet(b"DELETED\r\n"),
            put,
            bp.Put(b"x"),
            b"DELETED\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "a line of megabytes without CRLF",
            reply(MEGA_LINE),
            put,
            bp.Put(b"x"),
            MEGA_LINE,
            bp.RemoteProtocolError,
        ),
        Case(
            "a body size of 10**15",
            reply(b"RESERVED 1 1000000000000000\r\n", BIG_PART),
            ("reserve", (0,)),
            bp.ReserveWithTimeout(0),
            b"RESERVED 1 1000000000000000\r\n" + BIG_PART,
            bp.RemoteProtocolError,
        ),
        Case(
            "a body size of 10**30",
            reply(b"FOUND 1 " + b"9" * 30 + b"\r\n"),
            ("peek", (1,)),
            bp.Peek(1),
            b"FOUND 1 " + b"9" * 30 + b"\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "a body shorter than announced, then EOF",
            reply_then_close(b"FOUND 1 100000\r\n", b"y" * 1000),
            ("peek", (1,)),
            bp.Peek(1),
            b"FOUND 1 100000\r\n" + b"y" * 1000 + b"",
            bp.BrokenConnectionError,
            memory=LINE * 2 + 1000,
        ),
        Case(
            # Within max_body_size (1 GiB): the client must not reserve the
            # announced size up front, only keep what arrives.
            "a huge allowed body, 1 MiB of it, then EOF",
            reply_then_close(b"RESERVED 1 1000000000\r\n", BIG_PART),
            ("reserve", (0,)),
            bp.ReserveWithTimeout(0),
            b"RESERVED 1 1000000000\r\n" + BIG_PART,
            bp.BrokenConnectionError,
            memory=2 * len(BIG_PART) + LINE * 2,
        ),
        Case(
            "body not followed by CRLF",
            reply(b"FOUND 1 1\r\nxyz\r\n"),
            ("peek", (1,)),
            bp.Peek(1),
            b"FOUND 1 1\r\nxyz\r\n",
            bp.RemoteProtocolError,
        ),
        Case(
            "EOF instead of a reply",
            reply_then_close(),
            put,
            bp.Put(b"x"),
            b"",
            bp.BrokenConnectionError,
        ),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sync_client_fails_clearly(case: Case) -> None:
    with FakeServer(case.script) as server:
        client = Client(server.address, timeout=2)
        name, args = case.call
        with deadline(3), peak_memory() as peak, pytest.raises(case.error):
            getattr(client, name)(*args)
        assert peak[0] < case.memory + RECV + SLACK, f"peak {peak[0]} bytes"
        # The connection is given up for good: every later call says so, at once.
        assert client.closed
        with deadline(0.5), pytest.raises(bp.BrokenConnectionError):
            client.put(b"again")
        client.close()
        assert server.errors == []


def _drive(conn: bp.Connection, chunks: Iterator[bytes]) -> tuple[list[bp.Event], str]:
    """Feed ``chunks`` (then EOF); collect events until an error or the end."""
    events: list[bp.Event] = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while (e := conn.next_event()) is not bp.NEED_DATA:
                events.append(e)
        conn.receive_data(b"")
        while (e := conn.next_event()) is not bp.NEED_DATA:
            events.append(e)
            if isinstance(e, bp.ConnectionClosed):
                break
    except bp.RemoteProtocolError:
        return events, "RemoteProtocolError"
    return events, "ok"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_core_fails_clearly_whatever_the_chunking(case: Case) -> None:
    stream = case.stream

    def whole() -> Iterator[bytes]:
        yield stream

    def in_4k() -> Iterator[bytes]:
        for i in range(0, len(stream), 4096):
            yield stream[i : i + 4096]

    results = []
    for chunking in (whole, in_4k):
        conn = bp.Connection()
        conn.send(case.command)
        with peak_memory() as peak:
            results.append(_drive(conn, chunking()))
        assert peak[0] < case.memory + 4096 + SLACK, f"{chunking.__name__}: peak {peak[0]}"
        assert conn.state is bp.State.BROKEN
    # Byte by byte (bounded: the first 300 KiB say everything these cases say).
    conn = bp.Connection()
    conn.send(case.command)
    small = stream[: 300 * 1024]
    results.append(_drive(conn, (small[i : i + 1] for i in range(len(small)))))
    # Every case is a protocol error, whatever the chunking, with no event first
    # (the body cases included: EOF in a body is a RemoteProtocolError in the core).
    assert results[0] == ([], "RemoteProtocolError"), results[0]
    if len(stream) <= len(small) or case.name.startswith("a line"):
        assert results[2] == results[0]
    assert results[1] == results[0]


def test_core_line_limit_holds_for_a_configured_size() -> None:
    conn = bp.Connection(max_line_size=1000, max_body_size=10)
    conn.send(bp.Put(b"x"))
    with peak_memory() as peak:
        for _ in range(2000):
            conn.receive_data(b"A")
            try:
                assert conn.next_event() is bp.NEED_DATA
            except bp.RemoteProtocolError:
                break
        else:
            pytest.fail("a 2000-byte line was accepted")
    assert peak[0] < 2 * 1000 + SLACK
    conn = bp.Connection(max_body_size=10)
    conn.send(bp.Peek(1))
    conn.receive_data(b"FOUND 1 11\r\n")
    with pytest.raises(bp.RemoteProtocolError, match="max_body_size"):
        conn.next_event()


@pytest.mark.parametrize("extra", [b"INSERTED 2\r\n", b"INS", b"\r\n"])
def test_two_replies_to_one_command(extra: bytes) -> None:
    """A reply nobody asked for, in the same segment as a good one: the good one
    is handed out, and the connection is given up (not left to hand the extra
    reply to the next call). (Before the fix the next call raised
    LocalProtocolError from the core.)"""
    with FakeServer(reply(b"INSERTED 1\r\n" + extra)) as server:
        client = Client(server.address, timeout=2)
        assert client.put(b"x") == 1  # this reply is good...
        assert client.closed  # ...the connection is not
        with deadline(0.5), pytest.raises(bp.BrokenConnectionError):
            client.put(b"y")
        client.close()


def test_two_replies_to_a_batch() -> None:
    with FakeServer(reply(b"DELETED\r\nDELETED\r\nDELETED\r\n")) as server:
        client = Client(server.address, timeout=2)
        with suppress(bp.RemoteProtocolError):
            client.delete_many([1, 2])
        with deadline(0.5), pytest.raises(bp.BrokenConnectionError):
            client.put(b"y")
        client.close()


def test_one_byte_per_second_is_bounded_by_the_timeout() -> None:
    """A server that answers one byte a second (12 bytes, then nothing) must not
    stretch a call past the client's timeout: the timeout bounds the whole reply,
    not each recv."""
    with FakeServer(trickle(b"INSERTED 1\r\n", 1.0)) as server:
        client = Client(server.address, timeout=1.5)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.put(b"x")
        assert time.monotonic() - start < 2.5
        with deadline(0.5), pytest.raises(bp.BrokenConnectionError):
            client.put(b"again")
        client.close()


def test_slow_but_in_time_is_fine() -> None:
    with (
        FakeServer(trickle(b"INSERTED 1\r\n", 0.01)) as server,
        Client(server.address, timeout=2) as client,
    ):
        assert client.put(b"x") == 1


def test_stall_during_reserve_with_timeout() -> None:
    """reserve(timeout=1) on a client with timeout=1: bounded by 1 + 1 s."""
    with FakeServer(reply(b"RESERVED 1 5\r\nab")) as server:
        client = Client(server.address, timeout=1)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.reserve(timeout=1)
        assert time.monotonic() - start < 2.6
        with pytest.raises(bp.BrokenConnectionError):
            client.reserve(timeout=0)
        client.close()


# -- the anyio client, on asyncio and trio ------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_anyio_client_fails_clearly(case: Case) -> None:
    import anyio

    import beanproto_anyio

    with FakeServer(case.script) as server:
        async with beanproto_anyio.connect(server.address) as client:
            name, args = case.call
            start = time.monotonic()
            with anyio.fail_after(3), pytest.raises(case.error):
                await getattr(client, name)(*args)
            assert time.monotonic() - start < 3
            with anyio.fail_after(0.5), pytest.raises(bp.BrokenConnectionError):
                await client.put(b"again")


@pytest.mark.anyio
@pytest.mark.parametrize("extra", [b"INSERTED 2\r\n", b"INS"])
async def test_anyio_two_replies_to_one_command(extra: bytes) -> None:
    import anyio

    import beanproto_anyio

    with FakeServer(reply(b"INSERTED 1\r\n" + extra)) as server:
        async with beanproto_anyio.connect(server.address) as client:
            with anyio.fail_after(2):
                with suppress(bp.RemoteProtocolError):  # refusing it all is fine too
                    assert await client.put(b"x") == 1
                with pytest.raises(bp.BrokenConnectionError):
                    await client.put(b"y")


def _trickle_then_answer(c: ScriptedConnection) -> None:
    c.read_command()
    for byte in b"INSERTED 1\r\n":
        if c.stop.wait(0.15):
            return
        c.send(bytes([byte]))
    if c.read_command():
        c.send(b"INSERTED 2\r\n")
    c.hold()


@pytest.mark.anyio
async def test_anyio_trickle_is_bounded_by_a_cancel_scope() -> None:
    """A cancel scope bounds a call to a trickling server; the next call gets its
    own reply (the client stayed in sync) or BrokenConnectionError, never the
    cancelled call's reply."""
    import anyio

    import beanproto_anyio

    with FakeServer(_trickle_then_answer) as server:
        async with beanproto_anyio.connect(server.address) as client:
            start = time.monotonic()
            with anyio.move_on_after(0.5):
                await client.put(b"x")
            assert time.monotonic() - start < 1
            with anyio.fail_after(5):
                with suppress(bp.BrokenConnectionError):
                    assert await client.put(b"y") == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("script", "error"),
    [
        (reply_then_close(), bp.BrokenConnectionError),
        (reply(b"garbage\r\n"), bp.RemoteProtocolError),
    ],
    ids=["EOF", "garbage"],
)
@pytest.mark.parametrize("call", ["put_many", "delete_many", "connect"])
async def test_anyio_batch_errors_are_not_wrapped(
    script: Callable[[ScriptedConnection], None], error: type[BaseException], call: str
) -> None:
    import anyio

    import beanproto_anyio

    with FakeServer(script) as server, anyio.fail_after(3):
        if call == "connect":
            with pytest.raises(error):
                async with beanproto_anyio.connect(server.address, use="x", watch="y"):
                    pass
            return
        async with beanproto_anyio.connect(server.address) as client:
            with pytest.raises(error):
                if call == "put_many":
                    await client.put_many([b"a", b"b"])
                else:
                    await client.delete_many([1, 2])
