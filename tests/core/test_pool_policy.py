"""beanproto.pool: what a pool decides (placement, where a job is, each server's
up/down story), without I/O."""

from __future__ import annotations

import doctest
import itertools
import logging
import zlib

import pytest

import beanproto as bp
import beanproto.pool
from beanproto.adapter import RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY
from beanproto.pool import (
    POLL_FIRST_PAUSE,
    POLL_MAX_PAUSE,
    Placement,
    ServerState,
    inserted,
    key_index,
    locate,
    poll_pauses,
    reason,
)


def test_docstring_examples() -> None:
    result = doctest.testmod(beanproto.pool)
    assert result.attempted > 0 and result.failed == 0


def test_a_key_always_picks_the_same_server() -> None:
    assert key_index("café", 7) == key_index("café".encode(), 7) == zlib.crc32(b"caf\xc3\xa9") % 7
    assert {key_index(f"k{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    with pytest.raises(TypeError, match="key must be str or bytes, not int"):
        key_index(42, 3)  # type: ignore[arg-type]


def test_round_robin_turns_and_a_key_has_one_candidate() -> None:
    placement = Placement(3)
    assert [placement.candidates() for _ in range(4)] == [
        [0, 1, 2],
        [1, 2, 0],
        [2, 0, 1],
        [0, 1, 2],
    ]
    assert placement.candidates(b"x") == [key_index(b"x", 3)]
    assert Placement(1).candidates() == [0]
    with pytest.raises(ValueError, match="at least one server"):
        Placement(0)


def test_locate_finds_the_server_of_a_job_or_a_ref() -> None:
    servers = ["h1:11300", "h2:11300"]
    assert locate(bp.Job(7, b"", "h2:11300"), servers) == (1, 7)
    assert locate(bp.JobRef("h1:11300", 7), servers) == (0, 7)
    assert locate(("h2:11300", 3), servers) == (1, 3)
    with pytest.raises(TypeError, match=r"a Job or a JobRef \(job ids are per server\), not int"):
        locate(7, servers)
    with pytest.raises(ValueError, match="job 7 has no server: it did not come from a pool"):
        locate(bp.Job(7, b""), servers)
    with pytest.raises(ValueError, match=r"'h3:1' is not a server of this pool \(h1:11300, h2"):
        locate(bp.JobRef("h3:1", 7), servers)


def test_a_server_goes_down_backs_off_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    state = ServerState("h1:11300")
    assert state.due(0.0) and not state.down
    caplog.set_level(logging.DEBUG, "beanproto.pool")
    state.connect_failed(10.0, ConnectionRefusedError("refused"))
    assert state.down and state.failures == 1
    assert not state.due(10.0) and state.due(10.0 + RECONNECT_FIRST_DELAY)
    state.connect_failed(20.0, OSError())
    assert state.retry_at == 20.0 + 2 * RECONNECT_FIRST_DELAY
    for _ in range(20):
        state.connect_failed(30.0, OSError())
    assert state.retry_at == 30.0 + RECONNECT_MAX_DELAY
    error = state.down_error(31.0, "a keyed put")
    assert str(error) == "h1:11300 is down (a keyed put); next attempt to connect in 4.00 s"
    state.connected()
    assert not state.down and state.failures == 0 and state.due(0.0)
    assert str(state.broke(BrokenPipeError("pipe"))) == "h1:11300: pipe"
    assert state.down
    state.broke(OSError())  # already down: logged once
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "server h1:11300 is down: refused"),
        *[("DEBUG", "server h1:11300: reconnecting failed: OSError")] * 21,
        ("INFO", "server h1:11300 is back"),
        ("WARNING", "server h1:11300 went down: pipe"),
    ]


def test_poll_pauses_double_up_to_the_cap() -> None:
    pauses = list(itertools.islice(poll_pauses(), 10))
    assert pauses[0] == POLL_FIRST_PAUSE and pauses[-1] == POLL_MAX_PAUSE
    assert all(b == min(2 * a, POLL_MAX_PAUSE) for a, b in itertools.pairwise(pauses))


def test_reason() -> None:
    assert reason(OSError("gone")) == "gone"
    assert reason(TimeoutError()) == "TimeoutError"


def test_a_batch_inserted_something_when_an_outcome_is_an_id() -> None:
    refused = bp.DrainingError()
    assert not inserted(refused)  # a single put, no outcomes
    refused.outcomes = [bp.DrainingError(), bp.DrainingError()]
    assert not inserted(refused)
    refused.outcomes = [7, bp.DrainingError()]
    assert inserted(refused)
