"""The adapters' shared helpers in beanproto._support."""

from __future__ import annotations

import math

import pytest

import beanproto as bp
from beanproto._support import (
    batch_outcomes,
    job_from_event,
    job_id,
    reserve_command,
    setup_commands,
)


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
    assert reserve_command(timeout) == command


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

    from beanproto._support import set_tcp_options

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        set_tcp_options(tcp)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        set_tcp_options(unix)  # not TCP: left alone
        assert not unix.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
