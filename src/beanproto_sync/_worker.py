"""The blocking worker: handlers in threads, one connection each.

Theory of operation: each concurrency slot is a thread with its own connection
that loops: reserve a job, run its handler, then write the job's ending
(``delete``, ``release`` or ``bury``, decided by :func:`beanproto.worker.finish`)
and the next ``reserve`` together, one exchange whose replies are read in order,
so a job costs one round trip. The reserve waits on the server, and the server
reads nothing else from that connection meanwhile; so nothing else may ever be
queued behind it on the client either.

That is why auto-touch works the way it does. One monitor thread per worker
keeps a :class:`~beanproto.worker.TouchClock` for each running handler and, when
one is due, sends ``stats-job`` or ``touch`` on that slot's connection, from the
monitor, while the handler runs. Each slot has a small lock over "the job its
handler runs": the slot clears it under that lock *before* it writes the ending
and the next reserve, and the monitor touches while holding it, after checking
that the job is still the one running. So a touch only ever goes out while the
connection is idle, never behind a waiting reserve, and a touch waits at most
for one quick exchange of the slot (a failed job's ``stats-job``).

Stopping must be safe from a signal handler, which runs in the main thread
between any two bytecodes, possibly while that thread holds a lock: so
:meth:`Worker.stop` only sets plain attributes (and, from another thread, an
event), and the thread in :meth:`Worker.run` polls them and does the work. It
closes the connections of the slots that are not running a handler (closing is
the only way to abandon a waiting reserve; the server gives back a job it was
handing over), gives running handlers their grace, then closes what is left: the
server makes those jobs ready again. Whatever goes wrong, a job whose fate is
unknown goes back by closing its connection: a job may run twice (at the
instant of a stop, or after a lost connection), never be lost, which is
beanstalkd's own promise.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    MAX_LINE_SIZE,
    BodyDecodeError,
    BrokenConnectionError,
    Bury,
    CommandError,
    DeadlineSoon,
    Event,
    InvalidArgument,
    JobStats,
    NotFoundError,
    Reserved,
    StatsJob,
    TimedOut,
    Touch,
    error_for_event,
)
from beanproto.adapter import (
    Serializer,
    body_encoding,
    job_from_event,
    job_stats,
    reconnect_delay,
    reserve_command,
    setup_commands,
    touched,
)
from beanproto.address import Address, Resolved, describe, resolve_addresses
from beanproto.metrics import MetricsHooks
from beanproto.worker import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    Finish,
    TouchClock,
    WorkerBase,
    WorkerOptions,
    check_ending,
    finish,
    is_async,
    log_failure,
    log_lost,
    log_undecodable,
    logger,
    report_job,
)

from ._transport import SAME, MeasuredTransport, Transport

__all__ = ["Worker"]

H = TypeVar("H", bound=Callable[..., Any])

#: How often the thread in run() and the monitor look at the stop flags (seconds).
_POLL: Final = 0.1
#: How long a slot in burst mode waits before polling again while handlers run.
_BURST_POLL: Final = 0.05
#: How long run() waits for a thread it has told to end (its connection is closed).
_JOIN: Final = 2.0

# What a slot is doing, as run() sees it when stopping: only a slot running a
# handler keeps its connection open for the grace period.
_IDLE: Final = "idle"
_BUSY: Final = "busy"


def _event(event: Event) -> Event:
    return event


def _events(events: list[Event]) -> list[Event]:
    return events


def _refuse_async(handler: Callable[..., Any]) -> None:
    if is_async(handler):
        raise TypeError(
            f"{getattr(handler, '__name__', handler)!r} is an async def: the blocking "
            "worker cannot run it; use beanproto_anyio.Worker"
        )


class Worker(WorkerBase):
    """Reserve jobs from the tubes that have a handler and run the handlers in
    ``concurrency`` threads, each with its own connection.

    A handler takes a :class:`beanproto.Job` (``str`` bodies with an
    ``encoding``; ``serializer.loads(body)`` with a ``serializer``, such as the
    ``json`` module, as on :class:`Client`). It returns: the job is deleted.
    It raises an ``Exception``:
    the job is released with its priority unchanged after a delay that doubles
    with each attempt (``retry_delay`` for the first; the attempt is the
    server's ``reserves`` count), and buried on attempt ``max_attempts``. It
    raises :class:`RetryJob` or :class:`BuryJob`: released after the delay
    asked, or buried now. A body that does not decode (or load with the
    serializer) is buried, with an ERROR log line.
    Each failure, retry and bury is logged on ``beanproto.worker``.

    Costs: one round trip per job in the steady state (the ending of a job and
    the next reserve are written together); one more, ``stats-job``, for each
    failed job (its priority and attempt). When the tubes have different
    handlers, the worker asks ``stats-job`` after each reserve to learn the
    job's tube: one more round trip per job (a worker per tube avoids it). A
    handler still running :data:`~beanproto.worker.TOUCH_CHECK_AFTER` seconds
    after its job was reserved makes the worker learn the job's TTR and
    ``touch`` it in time, from a monitor thread, for as long as it runs.

    ``address`` is an address as :class:`Client` takes it but a connected
    socket (``None``: ``$BEANSTALKD_URL``, else ``127.0.0.1:11300``), or
    several (a list, or a comma-separated string): then each server gets
    ``concurrency`` threads of its own, so an empty, slow, paused or dead
    server never holds up the others, and a connection to one of them that
    fails (or cannot be opened) is opened again in the background, with
    backoff, while the others serve. Jobs carry their server
    (:attr:`beanproto.Job.server`). ``metrics`` receives each job's outcome
    (:meth:`beanproto.metrics.MetricsHooks.job`) and each command
    (:meth:`~beanproto.metrics.MetricsHooks.command`). ``handlers`` maps
    tubes to handlers, like :meth:`add_handler`; ``timeout`` bounds each
    exchange with the server (seconds) but a reserve's wait. :meth:`stop`
    (from a signal handler or another thread) stops gracefully, with
    ``grace`` seconds for the running handlers. A handler
    raising ``KeyboardInterrupt`` or ``SystemExit`` gives its job back at once,
    stops the worker gracefully, and :meth:`run` raises it; so does an error of
    the worker's own (with one server, a connection lost:
    :class:`beanproto.BrokenConnectionError`).
    """

    __slots__ = (
        "_addresses",
        "_current",
        "_encoding",
        "_metrics",
        "_serializer",
        "_stop_requested",
        "_timeout",
    )

    def __init__(
        self,
        address: Address | Iterable[Address] | None = None,
        *,
        concurrency: int = 1,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        grace: float = DEFAULT_GRACE,
        encoding: str | None = None,
        serializer: Serializer | None = None,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        timeout: float | None = 30.0,
        metrics: MetricsHooks | None = None,
    ) -> None:
        if isinstance(address, socket.socket):
            raise TypeError(
                "a worker opens a connection per slot: address must be (host, port) or "
                "a Unix socket path, not a socket"
            )
        self._addresses = resolve_addresses(address)
        self._metrics = metrics
        options = WorkerOptions(concurrency, max_attempts, retry_delay, grace)
        self._encoding = body_encoding(encoding, serializer)
        self._serializer = serializer
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout must be a positive number of seconds, or None")
        self._timeout = timeout
        self._current: _Run | None = None
        self._stop_requested = False
        super().__init__(options, handlers, _refuse_async)

    @property
    def running(self) -> bool:
        """True while :meth:`run` runs."""
        return self._current is not None

    # -- running ---------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> None:
        """Run until :meth:`stop` (or, with ``burst``, until the tubes have no
        ready job and no handler runs), then return.

        Raises ``ValueError`` without a handler, the error of a connection that
        cannot be opened, and, after stopping gracefully, a handler's
        ``KeyboardInterrupt`` or ``SystemExit`` or the worker's own error. An
        exception in this thread itself (a ``KeyboardInterrupt`` with no signal
        handler that calls :meth:`stop`) abandons everything at once, the jobs
        going back to the server, and propagates."""
        if not self._handlers:
            raise ValueError("no handler registered: use @worker.handler(tube) first")
        if self._current is not None:
            raise RuntimeError("this worker is running already")
        by_tube = self._handlers.as_dict()
        run = _Run(self, by_tube, burst)
        self._current = run
        try:
            if self._stop_requested:  # stop() came first (checked after _current is set)
                return
            run.run()
        finally:
            self._current = None
            self._stop_requested = False
        if run.error is not None:
            raise run.error

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: reserve no more, abandon the waiting reserves, give
        running handlers ``grace`` seconds (``None``: the worker's ``grace``;
        ``0``: none), then close what is left; :meth:`run` then returns.

        Safe from a signal handler and from another thread; before :meth:`run`,
        makes it return at once."""
        seconds = (
            self._options.grace
            if grace is None
            else dataclasses.replace(self._options, grace=grace).grace
        )
        self._stop_requested = True
        run = self._current
        if run is not None:
            run.request_stop(seconds)

    def _new_transport(self, address: Resolved) -> Transport:
        """A connection to ``address``, not opened yet (that reports each
        command to the metrics hooks, if there are any)."""
        options: dict[str, Any] = {
            "timeout": self._timeout,
            "max_body_size": DEFAULT_MAX_BODY_SIZE,
            "max_command_size": MAX_LINE_SIZE,
            "setup": setup_commands(None, self._handlers.tubes),
        }
        if self._metrics is None:
            return Transport(address, **options)
        return MeasuredTransport(address, metrics=self._metrics, **options)


class _Slot:
    """One thread, its connection, and the job its handler runs (for the monitor)."""

    __slots__ = (
        "abandoned",
        "address",
        "clock",
        "connected",
        "job_id",
        "lock",
        "lost",
        "reserved_at",
        "server",
        "state",
        "thread",
        "transport",
        "tube",
    )

    def __init__(self, address: Resolved, transport: Transport) -> None:
        self.address = address
        self.server = describe(address)
        self.transport = transport
        #: Whether ``transport`` was opened (with several servers, run() may fail to).
        self.connected = False
        self.thread: threading.Thread | None = None
        self.state = _IDLE
        #: Set by run() when it gave up on this slot's handler: its errors are no news.
        self.abandoned = False
        # Under `lock`: the job the handler runs, when to touch it, whether it was lost.
        self.lock = threading.Lock()
        self.job_id: int | None = None
        self.tube = ""
        self.clock: TouchClock | None = None
        self.reserved_at = 0.0
        self.lost = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Ending:
    """A job's ending, waiting to be written with the next reserve."""

    finish: Finish
    tube: str
    #: The reservation was lost already (and logged): NOT_FOUND is no news.
    lost: bool = False
    #: The server, to name in log lines (a worker over several servers).
    server: str | None = None


class _Run:
    """One call of :meth:`Worker.run`: its slots, monitor and stop state."""

    def __init__(self, worker: Worker, handlers: Mapping[str, Callable[..., Any]], burst: bool):
        self.options = worker._options
        self.encoding = worker._encoding
        self.serializer = worker._serializer
        self.new_transport = worker._new_transport
        self.addresses = worker._addresses
        #: Several servers: a lost connection is opened again, not the worker's end.
        self.several = len(self.addresses) > 1
        self.metrics = worker._metrics
        self.handlers = handlers
        tubes = list(handlers)
        distinct = {id(h) for h in handlers.values()}
        #: The one handler of every tube (no stats-job to dispatch), else None.
        self.single = next(iter(handlers.values())) if len(distinct) == 1 else None
        #: The tube to name in a log line when the job's tube is not known.
        self.tube = tubes[0] if len(tubes) == 1 else "?"
        self.burst = burst
        self.reserve = reserve_command(0 if burst else None)
        # Written by stop() (maybe in a signal handler), read by every thread.
        self.stopping = False
        self.deadline = math.inf
        #: Set when stopping, from threads other than the main one (a signal
        #: handler must not take the lock an Event holds while it is set).
        self.stopped = threading.Event()
        #: Wakes the thread in run(): a slot ended, or stop() came from another thread.
        self.wake = threading.Event()
        #: The slots whose thread is done (``set.add`` is atomic).
        self.ended: set[int] = set()
        self.error: BaseException | None = None
        self.slots: list[_Slot] = []
        self.monitor_done = threading.Event()

    # -- stopping (any thread, signal handlers included) -------------------------------

    def request_stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        if deadline < self.deadline:
            self.deadline = deadline
        self.stopping = True
        if threading.current_thread() is not threading.main_thread():
            self.stopped.set()
            self.wake.set()

    def fail(self, error: BaseException) -> None:
        """A slot or the monitor cannot go on: stop gracefully, then raise ``error``."""
        if self.error is None:
            self.error = error
        self.request_stop(self.options.grace)

    # -- the thread in run() -----------------------------------------------------------

    def run(self) -> None:
        threads: list[threading.Thread] = []
        try:
            for address in self.addresses:
                for _ in range(self.options.concurrency):
                    slot = _Slot(address, self.new_transport(address))
                    self.slots.append(slot)
                    self.open(slot)
            monitor = threading.Thread(
                target=self.monitor, name="beanproto-worker-monitor", daemon=True
            )
            threads.append(monitor)
            monitor.start()
            for i, slot in enumerate(self.slots):
                slot.thread = threading.Thread(
                    target=self.slot_main, args=(slot,), name=f"beanproto-worker-{i}", daemon=True
                )
                threads.append(slot.thread)
                slot.thread.start()
            while True:
                self.wake.clear()  # before looking: a wake-up after this is kept
                if self.stopping or len(self.ended) == len(self.slots):
                    break
                self.wake.wait(_POLL)  # a signal handler's stop() is seen within _POLL
            self.shut_down()
        except BaseException:
            # This thread was interrupted: give every job back at once.
            self.request_stop(0)
            for slot in self.slots:
                slot.abandoned = True
                slot.transport.close()
            raise
        finally:
            self.monitor_done.set()
            for slot in self.slots:
                slot.transport.close()
            for thread in threads:
                if thread.ident is not None and not self._abandoned(thread):
                    thread.join(_JOIN)

    def open(self, slot: _Slot) -> None:
        """Open the slot's connection; with several servers, one that cannot be
        opened is logged, and the slot's thread tries again in the background."""
        try:
            slot.transport.open()
        except Exception as exc:
            if not self.several:
                raise
            slot.transport.close()
            logger.warning(
                "server %s: cannot connect (%s); trying again in the background",
                slot.server,
                _describe(exc),
            )
            return
        slot.connected = True

    def _abandoned(self, thread: threading.Thread) -> bool:
        return any(s.thread is thread and s.abandoned and s.state is _BUSY for s in self.slots)

    def shut_down(self) -> None:
        """Stop the slots: the idle ones at once, the busy ones after the grace."""
        self.stopping = True
        self.stopped.set()
        for slot in self.slots:
            if slot.state is not _BUSY:
                slot.transport.close()  # abandons a waiting reserve
        for slot in self.slots:
            assert slot.thread is not None
            while slot.thread.is_alive() and (left := self.deadline - time.monotonic()) > 0:
                slot.thread.join(min(left, _POLL))
        for slot in self.slots:
            assert slot.thread is not None
            if slot.thread.is_alive():
                slot.abandoned = True
                slot.transport.close()  # the server makes the job ready again

    # -- a slot's thread ---------------------------------------------------------------

    def slot_main(self, slot: _Slot) -> None:
        try:
            # A burst does not wait for a server that is down.
            reopen = not self.burst
            while (slot.connected or (reopen and self.reconnect(slot))) and not self.serve(slot):
                slot.connected = False
        finally:
            slot.transport.close()
            slot.state = _IDLE
            self.ended.add(id(slot))
            self.wake.set()

    def serve(self, slot: _Slot) -> bool:
        """Run the slot's loop until it ends (``True``), or until its connection
        to one of several servers is lost (``False``: to be opened again)."""
        try:
            self.slot_loop(slot)
        except BaseException as exc:
            slot.job_id = None
            slot.transport.close()  # whatever job it held goes back
            if slot.abandoned or (self.stopping and _lost(exc)):
                return True
            if not (self.several and _lost(exc)):
                self.fail(exc)
                return True
            if self.burst:  # that server is done with, for this burst
                logger.warning("server %s: connection lost (%s)", slot.server, _describe(exc))
                return True
            logger.warning(
                "server %s: connection lost (%s); reconnecting", slot.server, _describe(exc)
            )
            return False
        return True

    def reconnect(self, slot: _Slot) -> bool:
        """Open a new connection for ``slot`` (one of several servers), waiting
        longer after each failure; ``False`` if the worker stops first."""
        failures = 0
        while True:
            slot.state = _IDLE
            self.stopped.wait(reconnect_delay(failures + 1))
            if self.stopping:
                return False
            transport = self.new_transport(slot.address)
            try:
                transport.open()
            except Exception as exc:
                transport.close()
                failures += 1
                logger.debug("server %s: reconnecting failed (%s)", slot.server, _describe(exc))
                continue
            slot.transport = transport  # stop() closes it from now on, if it must
            logger.info("server %s: reconnected after %d failed attempts", slot.server, failures)
            return True

    def slot_loop(self, slot: _Slot) -> None:
        transport = slot.transport
        reserve = self.reserve
        # A plain reserve waits for its job however long it takes; a burst's polls.
        wait = SAME if self.burst or transport.timeout is None else None
        ending: _Ending | None = None
        while True:
            slot.state = _IDLE  # from here, stop() may close the connection
            if self.stopping:
                break
            if ending is None:
                reply = transport.request(reserve, _event, wait)
            else:
                first, reply = transport.exchange((ending.finish.command, reserve), _events, wait)
                self.confirm(ending, first)
                ending = None
            if type(reply) is Reserved:
                slot.state = _BUSY
                if self.stopping:
                    return  # the connection's close gives the job back
                ending = self.handle(slot, reply)
            elif type(reply) is TimedOut and self.burst:
                if not any(s.state is _BUSY for s in self.slots):
                    return
                self.stopped.wait(_BURST_POLL)  # a running handler may put more
            elif type(reply) is DeadlineSoon:
                logger.debug("reserve answered DEADLINE_SOON; reserving again")
            else:
                raise error_for_event(reply)
        if ending is not None:
            # Stopping: the last ending goes alone.
            self.confirm(ending, transport.request(ending.finish.command, _event))

    def handle(self, slot: _Slot, reply: Reserved) -> _Ending | None:
        """Run the job's handler; return the job's ending (``None``: the job is
        no longer ours, and that was logged)."""
        reserved_at = time.monotonic()
        server = slot.server if self.several else None  # for log lines
        try:
            job = job_from_event(reply, self.encoding, self.serializer, slot.server)
        except BodyDecodeError as exc:
            stats = self.job_stats(slot, exc.id, self.tube)
            if stats is None:
                return None
            log_undecodable(exc, stats.tube, server=server)
            buried = Finish(Bury(exc.id, stats.pri), "buried")
            if self.metrics is not None:
                report_job(self.metrics, stats.tube, buried, 0.0, exc, slot.server)
            return _Ending(buried, stats.tube)
        handler = self.single
        tube = self.tube
        if handler is None:
            stats = self.job_stats(slot, job.id, tube)
            if stats is None:
                return None
            tube = stats.tube
            handler = self.handlers[tube]
        with slot.lock:
            slot.job_id, slot.tube, slot.lost = job.id, tube, False
            slot.clock = TouchClock(reserved_at)
            slot.reserved_at = reserved_at
        error: Exception | None = None
        try:
            handler(job)
        except Exception as exc:
            error = exc
        duration = time.monotonic() - reserved_at if self.metrics is not None else 0.0
        stats = None
        if error is not None:  # asked while the monitor still keeps the job
            stats = self.job_stats(slot, job.id, tube)
        with slot.lock:
            slot.job_id = None
            lost = slot.lost
        if error is None:
            ending = finish(job.id, None, None, self.options)
        elif stats is None:
            return None
        else:
            tube = stats.tube
            ending = finish(job.id, error, stats, self.options)
            log_failure(job.id, tube, error, ending, server=server)
        if self.metrics is not None:
            report_job(self.metrics, tube, ending, duration, error, slot.server)
        return _Ending(ending, tube, lost, server)

    def job_stats(self, slot: _Slot, job_id: int, tube: str) -> JobStats | None:
        try:
            return slot.transport.request(StatsJob(job_id), job_stats)
        except NotFoundError:
            with slot.lock:
                lost, slot.lost = slot.lost, True
            if not lost:
                server = slot.server if self.several else None
                log_lost(job_id, tube, "stats-job answered NOT_FOUND", server=server)
            return None

    def confirm(self, ending: _Ending, event: Event) -> None:
        """Check the reply to a job's ending."""
        command, server = ending.finish.command, ending.server
        if not check_ending(command, event, ending.tube, server=server) and not ending.lost:
            log_lost(command.id, ending.tube, f"{command.verb} answered NOT_FOUND", server=server)

    # -- the monitor's thread ----------------------------------------------------------

    def monitor(self) -> None:
        """Touch each running job in time, for as long as the run lasts."""
        try:
            while not self.monitor_done.is_set():
                now = time.monotonic()
                due = now + _POLL
                for slot in self.slots:
                    due = min(due, self.touch(slot, now))
                self.monitor_done.wait(max(due - time.monotonic(), 0.0))
        except BaseException as exc:  # pragma: no cover - a bug, or an interrupt
            self.fail(exc)

    def touch(self, slot: _Slot, now: float) -> float:
        """Ask the running job's TTR, or touch it, if due; return when next due."""
        with slot.lock:
            job_id, clock = slot.job_id, slot.clock
            if job_id is None or clock is None or slot.lost:
                return math.inf
            if clock.due > now:
                return clock.due
            sent_at = time.monotonic()
            try:
                if clock.ttr is None:
                    clock.learned(sent_at, slot.transport.request(StatsJob(job_id), job_stats))
                    return clock.due
                slot.transport.request(Touch(job_id), touched)
                clock.touched(sent_at)
            except Exception as exc:
                # NOT_FOUND: the job timed out or was deleted; anything else
                # broke the connection, which gave the job back. (No news if
                # run() gave up on this handler and closed the connection.)
                slot.lost = True
                server = slot.server if self.several else None
                log_lost(job_id, slot.tube, _describe(exc), debug=slot.abandoned, server=server)
                return math.inf
            # After the try: a hook that raises is not a job lost.
            if self.metrics is not None:
                self.metrics.job(
                    slot.tube,
                    "touched",
                    sent_at - slot.reserved_at,
                    failed=False,
                    server=slot.server,
                )
            return clock.due


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` is what a call raises when run() closed its connection."""
    return isinstance(exc, (BrokenConnectionError, OSError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CommandError):
        return f"the server answered {exc}"
    return f"{type(exc).__name__}: {exc}"
