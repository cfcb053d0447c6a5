"""The workers' shared decisions: the public module beanproto.worker (no server)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import beanproto as bp
from beanproto.worker import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    ENDED,
    MAX_RETRY_DELAY,
    TOUCH_CHECK_AFTER,
    BuryJob,
    Finish,
    Handlers,
    RetryJob,
    TouchClock,
    WorkerBase,
    WorkerOptions,
    check_ending,
    finish,
    is_async,
    logger,
    retry_delay,
    touch_margin,
)


def job_stats(
    *, pri: int = 7, reserves: int = 1, ttr: int = 60, time_left: int = 59
) -> bp.JobStats:
    return bp.JobStats(
        id=5,
        tube="emails",
        state="reserved",
        pri=pri,
        age=0,
        delay=0,
        ttr=ttr,
        time_left=time_left,
        file=0,
        reserves=reserves,
        timeouts=0,
        releases=0,
        buries=0,
        kicks=0,
    )


def test_defaults_and_logger() -> None:
    options = WorkerOptions()
    assert (options.concurrency, options.max_attempts) == (1, DEFAULT_MAX_ATTEMPTS)
    assert (options.retry_delay, options.grace) == (DEFAULT_RETRY_DELAY, DEFAULT_GRACE)
    assert logger.name == "beanproto.worker"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("concurrency", 0),
        ("concurrency", 1.5),
        ("concurrency", True),
        ("max_attempts", -1),
        ("retry_delay", -1),
        ("retry_delay", math.nan),
        ("retry_delay", math.inf),
        ("retry_delay", "1"),
        ("grace", -0.5),
        ("grace", False),
    ],
)
def test_options_refuse(name: str, value: Any) -> None:
    with pytest.raises(bp.InvalidArgument, match=name):
        WorkerOptions(**{name: value})


def test_options_store_seconds_as_float() -> None:
    options = WorkerOptions(concurrency=3, max_attempts=2, retry_delay=2, grace=0)
    assert options == WorkerOptions(3, 2, 2.0, 0.0)
    assert type(options.retry_delay) is float and type(options.grace) is float


def test_retry_delay_doubles_rounds_up_and_caps() -> None:
    assert [retry_delay(n, 1.0) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [retry_delay(n, 0.3) for n in range(1, 5)] == [1, 1, 2, 3]
    assert retry_delay(0, 5.0) == 5  # an attempt below 1 counts as the first
    assert retry_delay(3, 0.0) == 0
    assert retry_delay(10**9, 1.0) == MAX_RETRY_DELAY


@given(st.integers(1, 200), st.floats(0.001, 10_000))
def test_retry_delay_never_shrinks(attempt: int, first: float) -> None:
    assert 1 <= retry_delay(attempt, first) <= retry_delay(attempt + 1, first) <= MAX_RETRY_DELAY


def test_success_deletes_without_stats() -> None:
    assert finish(5, None, None, WorkerOptions()) == Finish(bp.Delete(5), "deleted")


def test_failure_needs_stats() -> None:
    with pytest.raises(ValueError, match="stats-job"):
        finish(5, ValueError("x"), None, WorkerOptions())


def test_failure_releases_with_priority_and_backoff() -> None:
    options = WorkerOptions(retry_delay=2.0, max_attempts=4)
    done = finish(5, ValueError("boom"), job_stats(pri=9, reserves=3), options)
    assert done.command == bp.Release(5, 9, 8)
    assert done.outcome == "retried"
    assert done.reason == "ValueError: boom (attempt 3 of 4, retry in 8 s)"


def test_failure_at_the_last_attempt_buries() -> None:
    options = WorkerOptions(max_attempts=3)
    done = finish(5, KeyError(), job_stats(pri=9, reserves=3), options)
    assert done == Finish(bp.Bury(5, 9), "buried", "KeyError (attempt 3 of 3)")
    # A job kicked back after it was buried keeps counting: still buried at once.
    assert finish(5, KeyError(), job_stats(reserves=8), options).outcome == "buried"


def test_retry_requested() -> None:
    options = WorkerOptions(retry_delay=1.0)
    asked = finish(5, RetryJob(10.2, "rate limited"), job_stats(pri=3), options)
    assert asked.command == bp.Release(5, 3, 11)
    assert asked.reason.startswith("RetryJob: rate limited")
    backoff = finish(5, RetryJob(), job_stats(reserves=2), options)
    assert backoff.command == bp.Release(5, 7, 2)
    assert str(RetryJob()) == "retry requested"
    huge = finish(5, RetryJob(1e12), job_stats(), options)
    assert huge.command == bp.Release(5, 7, MAX_RETRY_DELAY)
    # A requested retry still counts as an attempt.
    last = finish(5, RetryJob(1), job_stats(reserves=5), options)
    assert last.outcome == "buried"


@pytest.mark.parametrize("delay", [-1, math.nan, "3", True])
def test_retry_refuses_a_bad_delay(delay: Any) -> None:
    with pytest.raises(bp.InvalidArgument, match="delay"):
        RetryJob(delay)


def test_bury_requested() -> None:
    done = finish(5, BuryJob("poison"), job_stats(pri=4, reserves=1), WorkerOptions())
    assert done == Finish(bp.Bury(5, 4), "buried", "BuryJob: poison")
    assert str(BuryJob()) == "bury requested"


def test_handlers() -> None:
    handlers: Handlers[Any] = Handlers()

    @handlers.decorator("emails")
    def send(job: bp.Job[bytes]) -> None: ...

    handlers.add("sms", send)
    assert handlers.tubes == ["emails", "sms"] == list(handlers)
    assert len(handlers) == 2 and handlers["sms"] is send
    assert handlers.as_dict() == {"emails": send, "sms": send}
    with pytest.raises(ValueError, match="has a handler already"):
        handlers.add("emails", send)
    with pytest.raises(TypeError, match="callable"):
        handlers.add("other", 3)
    with pytest.raises(bp.InvalidArgument):
        handlers.decorator("bad name!")  # at the decorator, before any function
    with pytest.raises(bp.InvalidArgument):
        handlers.add("-dash", send)


def test_handlers_check() -> None:
    def no_async(handler: Any) -> None:
        if is_async(handler):
            raise TypeError("async")

    handlers: Handlers[Any] = Handlers(no_async)

    async def coroutine(job: bp.Job[bytes]) -> None: ...

    class Callable:
        async def __call__(self, job: bp.Job[bytes]) -> None: ...

    with pytest.raises(TypeError):
        handlers.add("a", coroutine)
    with pytest.raises(TypeError):
        handlers.add("a", Callable())
    assert handlers.add("a", print) is print
    assert not is_async(print) and is_async(coroutine)


def test_touch_margin() -> None:
    assert [touch_margin(t) for t in (0, 1, 2, 3, 4, 60)] == [0.5, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_touch_clock() -> None:
    clock = TouchClock(100.0)
    assert clock.due == 100.0 + TOUCH_CHECK_AFTER and clock.ttr is None
    clock.learned(100.5, job_stats(ttr=10, time_left=9))
    assert clock.ttr == 10 and clock.due == 100.5 + 9 - 2.0
    clock.touched(107.5)
    assert clock.due == 107.5 + 10 - 2.0
    # A one-second TTR: the check finds no whole second left; touch at once, then twice a TTR.
    short = TouchClock(0.0)
    short.learned(0.4, job_stats(ttr=1, time_left=0))
    assert short.due < 0.4
    short.touched(1.0)
    assert short.due == 1.5


@given(st.integers(1, 10_000), st.floats(0, 1e6), st.floats(0, 1e6))
def test_touch_always_before_the_deadline(ttr: int, sent_at: float, later: float) -> None:
    clock = TouchClock(0.0)
    clock.learned(sent_at, job_stats(ttr=ttr, time_left=ttr - 1))
    assert clock.due < sent_at + ttr - 1 or math.isclose(clock.due, sent_at + ttr - 1)
    clock.touched(sent_at + later)
    assert clock.due <= sent_at + later + ttr - 0.5


class _Worker(WorkerBase):
    __slots__ = ("busy",)

    def __init__(self, handlers: Any = None) -> None:
        self.busy = False
        super().__init__(WorkerOptions(concurrency=2), handlers)

    @property
    def running(self) -> bool:
        return self.busy


def test_worker_base_registers_and_refuses_while_running() -> None:
    def send(job: bp.Job[bytes]) -> None: ...

    worker = _Worker({"emails": send})

    @worker.handler("sms")
    def text(job: bp.Job[bytes]) -> None: ...

    assert worker.tubes == ["emails", "sms"] and worker.options.concurrency == 2
    assert repr(worker) == f"<{__name__}._Worker tubes=['emails', 'sms'] concurrency=2 idle>"
    worker.busy = True
    with pytest.raises(RuntimeError, match="while the worker runs"):
        worker.add_handler("other", send)
    assert "running>" in repr(worker)
    with pytest.raises(bp.InvalidArgument):
        worker.handler("no spaces allowed")


def test_check_ending(caplog: pytest.LogCaptureFixture) -> None:
    assert ENDED[bp.Delete] is bp.Deleted
    assert check_ending(bp.Delete(1), bp.Deleted(), "t")
    assert not check_ending(bp.Release(1, 5, 0), bp.NotFound(), "t")
    with caplog.at_level(logging.WARNING, logger="beanproto.worker"):
        assert check_ending(bp.Release(1, 5, 0), bp.Buried(None), "t")
    assert caplog.messages == ["job 1 (tube t): release answered Buried"]
