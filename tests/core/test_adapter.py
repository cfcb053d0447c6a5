"""The adapters' shared helpers: the public module beanproto.adapter."""

from __future__ import annotations

import array
import math
import re
import subprocess
import sys
import typing

import pytest

import beanproto as bp
from beanproto import adapter
from beanproto.adapter import (
    batch_outcomes,
    blocks,
    encode_body,
    expect,
    job_from_event,
    job_id,
    put_commands,
    reply_word,
    reserve_command,
    reserves,
    retryable,
    setup_commands,
)


def test_public_names() -> None:
    # What the adapters share, each name there and documented.
    assert {
        "KEEPALIVE",
        "batch_outcomes",
        "blocks",
        "encode_body",
        "expect",
        "job_from_event",
        "job_id",
        "put_commands",
        "reserve_command",
        "reply_word",
        "reserves",
        "retryable",
        "set_tcp_options",
        "setup_commands",
    } <= set(adapter.__all__)
    for name in adapter.__all__:
        obj = getattr(adapter, name)
        assert name == "KEEPALIVE" or obj.__doc__, name
    # It is no part of the core: importing beanproto does not import it.
    code = "import sys, beanproto; print('beanproto.adapter' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_setup_commands() -> None:
    assert setup_commands(None, None) == []
    assert setup_commands("a", "b") == [bp.Use("a"), bp.Watch("b"), bp.Ignore("default")]
    assert setup_commands(None, ["default", "b", "b"]) == [bp.Watch("b")]
    with pytest.raises(bp.InvalidArgument):
        setup_commands(None, [])
    with pytest.raises(bp.InvalidArgument):
        setup_commands("bad name", None)


@pytest.mark.parametrize(
    ("timeout", "command"),
    [
        (None, bp.Reserve()),
        (0, bp.ReserveWithTimeout(0)),
        (0.0, bp.ReserveWithTimeout(0)),
        (0.001, bp.ReserveWithTimeout(1)),
        (2.5, bp.ReserveWithTimeout(3)),
        (2**31 - 1, bp.ReserveWithTimeout(2**31 - 1)),
    ],
)
def test_reserve_command(timeout: float | None, command: bp.Command) -> None:
    made = reserve_command(timeout)
    assert made == command and type(made) is type(command)
    assert reserve_command(timeout) == made  # (the common ones are shared: immutable)


@pytest.mark.parametrize("timeout", [-1, -0.5, 2**31, math.nan, math.inf])
def test_reserve_command_refuses_out_of_range(timeout: float) -> None:
    with pytest.raises(bp.InvalidArgument):
        reserve_command(timeout)


@pytest.mark.parametrize("timeout", [True, "5", b"5"])
def test_reserve_command_refuses_non_numbers(timeout: object) -> None:
    with pytest.raises(TypeError):
        reserve_command(timeout)  # type: ignore[arg-type]


def test_job_from_event_and_job_id() -> None:
    assert job_from_event(bp.Reserved(3, b"caf\xc3\xa9"), None) == bp.Job(3, b"caf\xc3\xa9")
    assert job_from_event(bp.Found(3, b"caf\xc3\xa9"), "utf-8") == bp.Job(3, "café")
    with pytest.raises(bp.TimedOutError):
        job_from_event(bp.TimedOut(), None)
    assert job_id(bp.Job(7, b"")) == 7 and job_id(8) == 8


def test_a_job_names_its_server() -> None:
    job = job_from_event(bp.Reserved(3, b"x"), None, None, "h1:11300")
    assert job.server == "h1:11300" and job.ref == bp.JobRef("h1:11300", 3)
    assert job != bp.Job(3, b"x")  # ids are per server
    assert repr(job) == "Job(id=3, body=<1 bytes>, server='h1:11300')"
    assert repr(bp.Job(4, 42, "h2:1")) == "Job(id=4, body=<int>, server='h2:1')"
    server, job_id_ = bp.Job(5, b"").ref
    assert server is None and job_id_ == 5
    with pytest.raises(bp.BodyDecodeError) as caught:
        job_from_event(bp.Reserved(6, b"\xff"), "utf-8", None, "h1:11300")
    assert caught.value.server == "h1:11300" and caught.value.ref == bp.JobRef("h1:11300", 6)
    assert bp.BodyDecodeError(6, b"", "utf-8").ref == bp.JobRef(None, 6)


def test_batch_outcomes() -> None:
    puts = [bp.Put(b"a"), bp.Put(b"b"), bp.Put(b"c")]
    assert batch_outcomes(puts, [bp.Inserted(1), bp.Inserted(2), bp.Inserted(3)], None) == [1, 2, 3]
    with pytest.raises(bp.JobTooBigError) as info:
        batch_outcomes(puts, [bp.Inserted(1), bp.JobTooBig(), bp.Draining()], bp.Inserted)
    outcomes = info.value.outcomes
    assert outcomes is not None and outcomes[0] == 1
    assert isinstance(outcomes[1], bp.JobTooBigError) and isinstance(outcomes[2], bp.DrainingError)
    deletes = [bp.Delete(5), bp.Delete(6)]
    assert batch_outcomes(deletes, [bp.Deleted(), bp.Deleted()], bp.Deleted) == [5, 6]
    setup = [bp.Use("a"), bp.Watch("a")]
    assert batch_outcomes(setup, [bp.Using("a"), bp.Watching(2)], None) == [0, 0]
    with pytest.raises(bp.BrokenConnectionError):
        batch_outcomes(deletes, [bp.Deleted(), bp.ConnectionClosed()], bp.Deleted)


def test_undecodable_body_names_the_job() -> None:
    with pytest.raises(bp.BodyDecodeError) as info:
        job_from_event(bp.Reserved(9, b"\xff\xfe"), "utf-8")
    assert (info.value.id, info.value.body, info.value.encoding) == (9, b"\xff\xfe", "utf-8")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_set_tcp_options() -> None:
    import socket

    from beanproto.adapter import set_tcp_options

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        set_tcp_options(tcp)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        set_tcp_options(unix)  # not TCP: left alone
        assert not unix.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


@pytest.mark.parametrize(
    ("command", "blocking", "reserving"),
    [
        (bp.Reserve(), True, True),
        (bp.ReserveWithTimeout(1), True, True),
        (bp.ReserveWithTimeout(0), False, True),
        (bp.ReserveJob(1), False, True),
        (bp.Put(b"x"), False, False),
        (bp.Peek(1), False, False),
        (bp.PeekReady(), False, False),
        (bp.Delete(1), False, False),
        (bp.Quit(), False, False),
    ],
)
def test_blocks_and_reserves(command: bp.Command, blocking: bool, reserving: bool) -> None:
    assert blocks(command) is blocking
    assert reserves(command) is reserving
    # blocks() is what the connection calls a reserve waiting.
    conn = bp.Connection()
    conn.send(command)
    assert conn.reserve_waiting is blocking


def test_encode_body_and_put_commands() -> None:
    assert encode_body("é", "utf-8") == b"\xc3\xa9"
    assert encode_body("é", None) == "é"  # for Put to refuse
    assert encode_body(b"raw", "utf-8") == b"raw"
    wide = memoryview(array.array("i", [1]))
    assert encode_body(wide, "utf-8") is wide  # as it is: Put sizes it in bytes
    with pytest.raises(UnicodeEncodeError):
        encode_body("é", "ascii")
    assert put_commands(["a", b"b", bytearray(b"c")], "utf-8", 1, 2, 3) == [
        bp.Put(b"a", 1, 2, 3),
        bp.Put(b"b", 1, 2, 3),
        bp.Put(b"c", 1, 2, 3),
    ]
    assert put_commands([], None, 1, 2, 3) == []
    with pytest.raises(TypeError, match="bytes-like"):
        put_commands([b"a", "b"], None, 1, 2, 3)
    with pytest.raises(TypeError, match="bytes-like"):
        put_commands([array.array("i", [1])], None, 1, 2, 3)
    with pytest.raises(bp.InvalidArgument):
        put_commands([b"a"], None, -1, 0, 60)


def test_expect() -> None:
    assert expect(bp.Inserted(3), bp.Inserted) == bp.Inserted(3)
    with pytest.raises(bp.BuriedError) as info:
        expect(bp.Buried(3), bp.Inserted)
    assert info.value.id == 3
    with pytest.raises(bp.NotFoundError):
        expect(bp.NotFound(), bp.Deleted)
    with pytest.raises(bp.BrokenConnectionError):
        expect(bp.ConnectionClosed(), bp.Deleted)
    with pytest.raises(bp.RemoteProtocolError):
        expect(bp.Deleted(), bp.Touched)  # a reply that is no error is not this one either


def test_reply_word_names_every_reply() -> None:
    """Every event a reply can become has its word: the class name in the
    protocol's spelling, or ``OK`` for a payload."""
    payloads = {bp.ServerStats, bp.JobStats, bp.TubeStats, bp.TubeList}
    kinds = [k for k in typing.get_args(bp.Event) if k is not bp.ConnectionClosed]
    assert len(kinds) > 20
    for kind in kinds:
        word = adapter._REPLY_WORDS[kind]
        expected = "OK" if kind in payloads else re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__)
        assert word == expected.upper(), kind
    # Each word a reply table row holds is one of them.
    words = {reply.word.decode() for row in bp.REPLIES.values() for reply in row.values()}
    assert words == set(adapter._REPLY_WORDS.values())


def test_reply_word_of_events() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(b"x"))
    conn.send(bp.Delete(1))
    conn.send(bp.ReserveWithTimeout(0))
    conn.send(bp.Bury(1))
    conn.receive_data(b"INSERTED 1\r\nNOT_FOUND\r\nTIMED_OUT\r\nBURIED\r\n")
    events = [conn.next_event() for _ in range(4)]
    assert [reply_word(e) for e in events] == ["INSERTED", "NOT_FOUND", "TIMED_OUT", "BURIED"]


def test_retryable() -> None:
    read_only = [
        bp.Stats(),
        bp.StatsTube("a"),
        bp.StatsJob(1),
        bp.Peek(1),
        bp.PeekReady(),
        bp.PeekDelayed(),
        bp.PeekBuried(),
        bp.ListTubes(),
        bp.ListTubeUsed(),
        bp.ListTubesWatched(),
        bp.Reserve(),
        bp.ReserveWithTimeout(5),
    ]
    assert all(retryable(c) for c in read_only)
    changing = [
        bp.Put(b"x"),
        bp.Delete(1),
        bp.Release(1),
        bp.Bury(1),
        bp.Touch(1),
        bp.Kick(1),
        bp.KickJob(1),
        bp.PauseTube("a", 1),
        bp.Use("a"),
        bp.Watch("a"),
        bp.Ignore("a"),
        bp.ReserveJob(1),
        bp.Quit(),
    ]
    assert not any(retryable(c) for c in changing)
