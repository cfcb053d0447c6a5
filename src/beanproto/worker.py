"""What a worker does with a job, for any driver: the policy, without I/O.

Theory of operation: ``beanproto_sync.Worker`` and ``beanproto_anyio.Worker``
run the same loop over different I/O: reserve a job, run its handler, send the
job's outcome together with the next reserve (one write, one round trip per
job), touch a job whose handler outlives its TTR. Everything in that loop that
is a decision rather than I/O lives here, public, so that both workers (and a
worker for another event loop) decide alike:

* :class:`WorkerOptions` checks the options once;
* :class:`Handlers` maps each tube to its handler (``@worker.handler(tube)``);
* :func:`finish` turns what the handler did into the command that ends the
  job: ``delete`` when it returned, ``release`` with the priority unchanged
  and a delay that doubles with each attempt when it raised, ``bury`` after
  ``max_attempts`` or when it asked for it (:class:`BuryJob`), a ``release``
  after the delay it asked for (:class:`RetryJob`);
* :class:`TouchClock` says when a running job must be touched so that its TTR
  never runs out, learning the TTR only for handlers that run long
  (:data:`TOUCH_CHECK_AFTER`): a handler that finishes sooner costs no extra
  round trip.

A failed job's outcome needs its priority and its attempts (the server's
``reserves`` count): the worker asks ``stats-job`` for them, once per failure.
Nothing here does I/O; log lines go to the ``beanproto.worker`` logger.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._commands import DEFAULT_TUBE, Bury, Delete, Release, check_tube
from ._errors import BodyDecodeError, InvalidArgument
from ._events import Buried, Deleted, Event, NotFound, Released
from ._stats import JobStats
from .metrics import MetricsHooks

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY_DELAY",
    "ENDED",
    "MAX_RETRY_DELAY",
    "TOUCH_CHECK_AFTER",
    "BuryJob",
    "Finish",
    "Handlers",
    "RetryJob",
    "TouchClock",
    "WorkerBase",
    "WorkerOptions",
    "check_ending",
    "finish",
    "is_async",
    "log_failure",
    "log_lost",
    "log_undecodable",
    "logger",
    "report_job",
    "retry_delay",
    "touch_margin",
]

#: Attempts (reserves) before a failing job is buried.
DEFAULT_MAX_ATTEMPTS: Final = 5
#: Seconds before the first retry of a failed job; each further retry doubles it.
DEFAULT_RETRY_DELAY: Final = 1.0
#: Seconds running handlers get to finish once a worker is stopping.
DEFAULT_GRACE: Final = 30.0
#: The longest retry delay the doubling reaches (a day), well under beanstalkd's limit.
MAX_RETRY_DELAY: Final = 86400
#: A handler running this long (seconds) makes the worker ask the job's TTR
#: (``stats-job``), to touch it in time. beanstalkd's shortest TTR is 1 s.
TOUCH_CHECK_AFTER: Final = 0.4

#: Where workers log each failure, retry and bury (with job id and tube).
logger: Final = logging.getLogger("beanproto.worker")

#: The reply that confirms each command that ends a job.
ENDED: Final[Mapping[type, type[Event]]] = {Delete: Deleted, Release: Released, Bury: Buried}

H = TypeVar("H", bound=Callable[..., Any])


class RetryJob(Exception):
    """Raised by a handler: release the job, to run again after ``delay`` seconds
    (``None``: the worker's backoff for this attempt). It counts as an attempt:
    after ``max_attempts`` the job is buried."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0
        ):
            raise InvalidArgument(f"delay must be a number of seconds >= 0, got {delay!r}")
        self.delay = delay
        self.reason = reason


class BuryJob(Exception):
    """Raised by a handler: bury the job now, priority unchanged (an operator
    can inspect it and ``kick`` it)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "bury requested")
        self.reason = reason


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidArgument(f"{name} must be a number of seconds >= 0, got {value!r}")
    if math.isinf(value):
        raise InvalidArgument(f"{name} must be finite, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """A worker's options, checked once (:class:`~beanproto.InvalidArgument`)."""

    #: Handlers running at once (threads or tasks), one connection each.
    concurrency: int = 1
    #: Attempts (the server's ``reserves`` count) before a failing job is buried.
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: Seconds before the first retry; doubled for each further attempt.
    retry_delay: float = DEFAULT_RETRY_DELAY
    #: Seconds running handlers get to finish once the worker is stopping.
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        _count("concurrency", self.concurrency)
        _count("max_attempts", self.max_attempts)
        object.__setattr__(self, "retry_delay", _seconds("retry_delay", self.retry_delay))
        object.__setattr__(self, "grace", _seconds("grace", self.grace))


class Handlers(Generic[H]):
    """Each tube's handler: the tubes a worker watches."""

    __slots__ = ("_by_tube", "_check")

    def __init__(self, check: Callable[[Callable[..., Any]], None] | None = None) -> None:
        self._by_tube: dict[str, H] = {}
        self._check = check

    def add(self, tube: str, handler: H) -> H:
        """Register ``handler`` for ``tube``; one handler per tube."""
        check_tube(tube)
        if not callable(handler):
            raise TypeError(f"a handler must be callable, not {type(handler).__name__}")
        if tube in self._by_tube:
            raise ValueError(f"tube {tube!r} has a handler already")
        if self._check is not None:
            self._check(handler)
        self._by_tube[tube] = handler
        return handler

    def decorator(self, tube: str = DEFAULT_TUBE) -> Callable[[H], H]:
        """``@worker.handler(tube)``: checks the tube name at once."""
        check_tube(tube)

        def register(handler: H) -> H:
            return self.add(tube, handler)

        return register

    def __getitem__(self, tube: str) -> H:
        return self._by_tube[tube]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_tube)

    def __len__(self) -> int:
        return len(self._by_tube)

    @property
    def tubes(self) -> list[str]:
        return list(self._by_tube)

    def as_dict(self) -> Mapping[str, H]:
        return dict(self._by_tube)


def is_async(handler: Callable[..., Any]) -> bool:
    """Whether calling ``handler`` makes a coroutine (an ``async def``, or an
    object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - the method, not callable()
    )


class WorkerBase:
    """What both workers are besides their I/O: options, handlers by tube, and
    the registration API (``@worker.handler(tube)``, :meth:`add_handler`).
    A subclass says whether it is :attr:`running`."""

    __slots__ = ("_handlers", "_options")

    def __init__(
        self,
        options: WorkerOptions,
        handlers: Mapping[str, Callable[..., Any]] | None,
        check: Callable[[Callable[..., Any]], None] | None = None,
    ) -> None:
        self._options = options
        self._handlers: Handlers[Callable[..., Any]] = Handlers(check)
        for tube, handler in (handlers or {}).items():
            self.add_handler(tube, handler)

    @property
    def running(self) -> bool:
        """True while the worker's ``run()`` runs."""
        raise NotImplementedError

    def handler(self, tube: str = DEFAULT_TUBE) -> Callable[[H], H]:
        """``@worker.handler("emails")``: register the decorated function for a tube
        (the name is checked at once)."""
        check_tube(tube)

        def register(fn: H) -> H:
            return self.add_handler(tube, fn)

        return register

    def add_handler(self, tube: str, fn: H) -> H:
        """Register ``fn`` for ``tube`` (one handler per tube: ``ValueError`` for
        a second); return ``fn``. Not while the worker runs."""
        if self.running:
            raise RuntimeError("handlers cannot be added while the worker runs")
        self._handlers.add(tube, fn)
        return fn

    @property
    def tubes(self) -> list[str]:
        """The tubes with a handler: the ones the worker watches."""
        return self._handlers.tubes

    @property
    def options(self) -> WorkerOptions:
        """The worker's options (checked)."""
        return self._options

    def __repr__(self) -> str:
        cls = type(self)
        state = "running" if self.running else "idle"
        return (
            f"<{cls.__module__}.{cls.__qualname__} tubes={self.tubes} "
            f"concurrency={self._options.concurrency} {state}>"
        )


def retry_delay(attempt: int, first: float) -> int:
    """Seconds before retry number ``attempt`` (1 for the first): ``first``
    doubled for each attempt after the first, rounded up to whole seconds
    (beanstalkd's unit), at most :data:`MAX_RETRY_DELAY`."""
    if attempt < 1:
        attempt = 1
    if first <= 0:
        return 0
    exponent = min(attempt - 1, 64)  # 2**64 s is past any cap: no huge floats
    delay: int = min(math.ceil(first * 2.0**exponent), MAX_RETRY_DELAY)
    return delay


@dataclass(frozen=True, slots=True)
class Finish:
    """How a job ends: the command to send, and what it means."""

    #: ``Delete``, ``Release`` or ``Bury``.
    command: Delete | Release | Bury
    #: ``"deleted"``, ``"retried"`` or ``"buried"``.
    outcome: str
    #: For a log line: why (the handler's exception, or its request).
    reason: str = ""


def finish(
    job_id: int,
    error: BaseException | None,
    stats: JobStats | None,
    options: WorkerOptions,
) -> Finish:
    """The command that ends job ``job_id`` after its handler.

    ``error`` is what the handler raised (``None``: it returned, and the job is
    deleted; ``stats`` is not needed then). Otherwise ``stats`` is the job's
    ``stats-job``: its priority is kept and its ``reserves`` count is the
    attempt. A :class:`BuryJob`, or a failure on attempt ``max_attempts`` or
    later, buries; a :class:`RetryJob` or any other failure releases, after
    the requested delay or the backoff for the attempt."""
    if error is None:
        return Finish(Delete(job_id), "deleted")
    if stats is None:
        raise ValueError("a failed job's outcome needs its stats-job")
    priority = stats.pri
    attempt = stats.reserves
    reason = _describe(error)
    if isinstance(error, BuryJob):
        return Finish(Bury(job_id, priority), "buried", reason)
    if attempt >= options.max_attempts:
        return Finish(
            Bury(job_id, priority),
            "buried",
            f"{reason} (attempt {attempt} of {options.max_attempts})",
        )
    if isinstance(error, RetryJob) and error.delay is not None:
        delay = min(math.ceil(error.delay), MAX_RETRY_DELAY)
    else:
        delay = retry_delay(attempt, options.retry_delay)
    return Finish(
        Release(job_id, priority, delay),
        "retried",
        f"{reason} (attempt {attempt} of {options.max_attempts}, retry in {delay} s)",
    )


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def touch_margin(ttr: int) -> float:
    """How long before a job's deadline the worker touches it: half the TTR,
    at most two seconds (enough for a touch's round trip on a busy machine)."""
    return min(max(ttr, 1) / 2, 2.0)


class TouchClock:
    """When one running job must be touched next, on a monotonic clock.

    A job is first *checked* :data:`TOUCH_CHECK_AFTER` seconds after it was
    reserved: its handler is still running, so the worker asks its
    ``stats-job`` and calls :meth:`learned`. From then on :attr:`due` is the
    time of the next ``touch``, a :func:`touch_margin` before the deadline,
    and :meth:`touched` moves it on. Times are taken *before* the command is
    sent, so the estimate of the server's deadline is never late."""

    __slots__ = ("due", "ttr")

    def __init__(self, reserved_at: float) -> None:
        #: When to act next: the check, then each touch.
        self.due = reserved_at + TOUCH_CHECK_AFTER
        #: The job's TTR, once learned (``None`` before the check).
        self.ttr: int | None = None

    def learned(self, sent_at: float, stats: JobStats) -> None:
        """The check's ``stats-job`` (sent at ``sent_at``) came back."""
        self.ttr = max(stats.ttr, 1)
        # time-left is whole seconds, rounded down: never later than the real deadline.
        self.due = sent_at + stats.time_left - touch_margin(self.ttr)

    def touched(self, sent_at: float) -> None:
        """A ``touch`` sent at ``sent_at`` succeeded: the deadline moved to one TTR on."""
        assert self.ttr is not None
        self.due = sent_at + self.ttr - touch_margin(self.ttr)


# -- log lines: one per failure, retry, bury and lost job ------------------------------


def _where(tube: str, server: str | None) -> str:
    return tube if server is None else f"{tube}, server {server}"


def log_failure(
    job_id: int, tube: str, error: Exception, ending: Finish, *, server: str | None = None
) -> None:
    """The line for a job whose handler raised: what it raised (with the
    traceback, unless the handler asked for it) and what became of the job.
    ``server`` (a worker over several servers) is named after the tube."""
    where = _where(tube, server)
    if ending.outcome == "retried":
        if isinstance(error, RetryJob):
            logger.info("job %d (tube %s) retried, %s", job_id, where, ending.reason)
        else:
            logger.warning(
                "job %d (tube %s) failed, %s", job_id, where, ending.reason, exc_info=error
            )
    elif isinstance(error, BuryJob):
        logger.warning("job %d (tube %s) buried, %s", job_id, where, ending.reason)
    else:
        logger.error("job %d (tube %s) buried, %s", job_id, where, ending.reason, exc_info=error)


def log_undecodable(error: BodyDecodeError, tube: str, *, server: str | None = None) -> None:
    """The line for a job buried because its body does not decode (or load)."""
    cause = error.__cause__
    logger.error(
        "job %d (tube %s) buried: its body %s (%s: %s)",
        error.id,
        _where(tube, server),
        error.reason,
        type(cause).__name__,
        cause,
    )


def log_lost(
    job_id: int, tube: str, why: str, *, debug: bool = False, server: str | None = None
) -> None:
    """The line for a job that is no longer this worker's (its TTR ran out, or
    its connection closed): another worker may run it again."""
    level = logging.DEBUG if debug else logging.WARNING
    logger.log(
        level,
        "job %d (tube %s): its reservation was lost (%s)",
        job_id,
        _where(tube, server),
        why,
    )


#: A :class:`Finish` outcome as :meth:`MetricsHooks.job` names it.
_REPORTED: Final = {"deleted": "deleted", "retried": "released", "buried": "buried"}


def report_job(
    metrics: MetricsHooks,
    tube: str,
    ending: Finish,
    duration: float,
    error: BaseException | None,
    server: str,
) -> None:
    """Tell ``metrics`` how a job ended (:meth:`MetricsHooks.job`): ``error`` is
    what its handler raised (``None``: it returned); a :class:`RetryJob` or
    :class:`BuryJob` is a request, not a failure."""
    failed = error is not None and not isinstance(error, (RetryJob, BuryJob))
    metrics.job(tube, _REPORTED[ending.outcome], duration, failed=failed, server=server)


def check_ending(
    command: Delete | Release | Bury, event: Event, tube: str, *, server: str | None = None
) -> bool:
    """Check the reply to a job's ending: ``True`` if it confirms it; ``False``
    for ``NOT_FOUND`` (the job was lost: the caller logs it, once); any other
    reply (a release answered ``BURIED`` when the server is out of memory, a
    refusal) is logged here, and counts as confirmed."""
    if type(event) is ENDED[type(command)]:
        return True
    if type(event) is NotFound:
        return False
    logger.warning(
        "job %d (tube %s): %s answered %s",
        command.id,
        _where(tube, server),
        command.verb,
        type(event).__name__,
    )
    return True
