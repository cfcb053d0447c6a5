"""The async worker: handlers run in tasks, one connection per concurrency slot.

Theory of operation: :meth:`Worker.run` owns one task group holding a task per
slot and one monitor task; nothing it starts outlives it. The decisions (what
ends a job, the backoff, when to touch) are :mod:`beanproto.worker`'s; this
module only does the I/O, in three places:

* *A slot* has its own connection, watching the registered tubes, and loops:
  one pipelined write of the last job's finishing command and the next
  ``reserve`` (``Multiplexer.exchange(..., inline=True)``: written and read by
  the slot's task, no task group per job); run the handler (an ``async def``
  in the slot's task, a plain function in a worker thread); decide how the job
  ends, asking ``stats-job`` only if the handler raised.
* *The monitor* wakes at least every :data:`MONITOR_TICK` s and, for each job
  whose handler runs, follows its :class:`~beanproto.worker.TouchClock`: the
  ``stats-job`` check, then each ``touch``, each in a task of its own so that
  one slow touch never delays the others. A touch goes on the slot's
  connection while the handler runs (or a failed job's ``stats-job`` is
  asked), when no reserve is in flight there: the slot forgets its job
  (synchronously) before it writes the job's finish and its next reserve, and
  a touch checks (synchronously, right before it is written) that its job is
  still the slot's. So a touch never queues behind a waiting reserve.
* *Stopping* is state first: :meth:`Worker.stop` marks the worker stopping and
  puts the grace deadline on every slot's cancel scope. A slot cancelled
  there closes its connection, and the server makes its job ready again. A
  slot that has nothing to lose (connecting, pausing, or waiting on a reserve
  and nothing else) is cancelled at once; one whose finish is still being
  answered is left to the monitor, which cancels it as soon as only its
  reserve waits. A slot that sees the worker stopping sends its last finish
  alone and closes its connection with ``quit``.

Exceptions: a handler's ``Exception`` is the job's outcome. Anything else
raised in a slot (a handler's ``KeyboardInterrupt`` or ``SystemExit``, a broken
connection) gives its job back by closing that slot's connection, stops the
worker gracefully, and is raised by :meth:`Worker.run` once every slot ended,
as itself rather than inside an exception group: each task catches it and
:meth:`Worker.run` raises the first one, after its task group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from beanproto import (
    BodyDecodeError,
    Bury,
    DeadlineSoon,
    Delete,
    Error,
    Event,
    Job,
    JobStats,
    NotFoundError,
    Release,
    Reserved,
    TimedOut,
    error_for_event,
)
from beanproto.adapter import (
    Serializer,
    body_encoding,
    job_from_event,
    reconnect_delay,
    reserve_command,
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

from ._client import Client, connect

__all__ = ["Handler", "Worker"]

#: A handler: called with the job; an ``async def`` or a plain function.
Handler = Callable[..., Any]
H = TypeVar("H", bound=Callable[..., Any])

#: The monitor wakes at least this often (seconds) to touch long jobs.
MONITOR_TICK: Final = 0.1
#: While stopping, how often (seconds) the monitor looks for slots whose
#: finish was just answered and whose reserve now only waits.
STOP_POLL: Final = 0.01
#: In burst mode, how long (seconds) a slot that found no job pauses before it
#: polls again, while a handler of this worker still runs.
BURST_PAUSE: Final = 0.05

# What a slot is doing. Cancelling it loses nothing while _IDLE (connecting,
# pausing), or while _RESERVING if only its reserve is in flight.
_IDLE: Final = "idle"
_RESERVING: Final = "reserving"
_BUSY: Final = "busy"
_DONE: Final = "done"


def _reply(event: Event) -> Event:
    return event


def _replies(events: list[Event]) -> list[Event]:
    return events


class _Slot:
    """One slot's state, read by the monitor and by :meth:`Worker.stop`."""

    __slots__ = (
        "address",
        "client",
        "clock",
        "job_id",
        "lost",
        "phase",
        "reserved_at",
        "scope",
        "server",
        "touching",
        "tube",
    )

    def __init__(self, address: Resolved) -> None:
        self.address = address
        self.server = describe(address)
        self.scope = anyio.CancelScope()  # the slot's task; deadline: the grace's end
        self.phase = _IDLE
        self.client: Client[Any] | None = None
        self.job_id: int | None = None  # the job whose handler runs: the monitor touches it
        self.clock: TouchClock | None = None
        self.reserved_at = 0.0  # when the running handler's job was reserved
        self.touching = False  # a touch (or its check) is in flight
        self.tube: str | None = None  # the current job's tube, once known
        self.lost: int | None = None  # the job whose lost reservation was logged


class Worker(WorkerBase):
    """Runs a handler for each job of the registered tubes, ``concurrency`` at a
    time, each slot a task with its own connection.

        worker = beanproto_anyio.Worker(("127.0.0.1", 11300), concurrency=16)

        @worker.handler("emails")
        async def send_email(job: beanproto.Job[bytes]) -> None: ...

        await worker.run()  # until worker.stop() or cancellation

    A handler is an ``async def`` (run in the slot's task) or a plain function
    (run in a worker thread, so that it blocks neither the event loop nor the
    touches). Its job ends by what it did: it returns, the job is deleted; it
    raises, the job is released with its priority unchanged and a delay that
    doubles with each attempt (``retry_delay``, then twice that, ...), and
    buried after ``max_attempts``; it raises :class:`~beanproto.worker.RetryJob`
    or :class:`~beanproto.worker.BuryJob` to choose. A body that does not decode
    with ``encoding`` (or load with ``serializer``, e.g. the ``json`` module:
    handlers then get ``loads(body)``) is buried, with an ERROR log line.
    ``address`` is one :func:`connect` takes (``None``: ``$BEANSTALKD_URL``,
    else ``127.0.0.1:11300``), or several (a list, or a comma-separated
    string): then each server gets ``concurrency`` slots of its own, so an
    empty, slow, paused or dead server never holds up the others, and a
    connection to one of them that fails (or cannot be opened) is opened again
    in the background, with backoff, while the others serve. Jobs carry their
    server (:attr:`beanproto.Job.server`). ``metrics`` receives each job's
    outcome (:meth:`beanproto.metrics.MetricsHooks.job`) and each command
    (:meth:`~beanproto.metrics.MetricsHooks.command`). Log lines go to the
    ``beanproto.worker`` logger, with the job's id and tube (and server, when
    there are several).

    Cost: one round trip per job. A job's delete (or release, or bury) and the
    next reserve go out in one write; a failed job costs one more round trip
    (``stats-job``, for its priority and attempts). If the tubes have different
    handlers, each job also costs a ``stats-job`` to learn its tube: register
    one handler for several tubes to avoid it. A job whose handler runs past
    ``TOUCH_CHECK_AFTER`` (0.4 s) is checked (``stats-job``) and then touched
    in time, however long it runs; no other worker receives it meanwhile.

    Stopping: :meth:`stop` (or cancelling :meth:`run`) never loses a job. See
    :meth:`run` and :meth:`stop`. A plain-function handler still running when
    its job is given back cannot be interrupted: its thread runs on, detached,
    and its outcome is dropped.
    """

    __slots__ = (
        "_addresses",
        "_burst",
        "_busy",
        "_by_tube",
        "_deadline",
        "_encoding",
        "_failure",
        "_limiter",
        "_metrics",
        "_running",
        "_serializer",
        "_several",
        "_single",
        "_slots",
        "_stopping",
        "_tube",
        "_tubes",
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
        metrics: MetricsHooks | None = None,
    ) -> None:
        options = WorkerOptions(
            concurrency=concurrency,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            grace=grace,
        )
        self._addresses = resolve_addresses(address)
        #: Several servers: a lost connection is opened again, not the worker's end.
        self._several = len(self._addresses) > 1
        self._metrics = metrics
        self._encoding = body_encoding(encoding, serializer)
        self._serializer = serializer
        self._running = False
        self._stopping = False
        self._deadline = math.inf
        self._failure: BaseException | None = None
        self._slots: list[_Slot] = []
        self._busy = 0  # slots holding a job
        # Fixed by run():
        self._burst = False
        self._tubes: list[str] = []
        self._tube: str | None = None  # the tube, if only one is watched
        self._single: tuple[Handler, bool] | None = None  # the handler, if only one
        self._by_tube: dict[str, tuple[Handler, bool]] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        super().__init__(options, handlers)

    @property
    def running(self) -> bool:
        """True while :meth:`run` runs."""
        return self._running

    # -- running ---------------------------------------------------------------------

    async def run(self, *, burst: bool = False) -> None:
        """Serve jobs until :meth:`stop`, or, with ``burst=True``, until the tubes
        have no ready job and no handler runs; then return.

        Cancelled, it gives every job back at once (closing every connection
        makes the server return the jobs, priority unchanged) and lets the
        cancellation through. A handler's ``KeyboardInterrupt`` or
        ``SystemExit``, or a connection failing (``BrokenConnectionError``),
        stops the worker as :meth:`stop` does and is raised afterwards, as
        itself (never inside an exception group). ``ValueError`` if no handler
        is registered; after :meth:`stop` was called before it, returns at once.
        """
        if not self._handlers:
            raise ValueError("no handler is registered: use @worker.handler(tube)")
        if self._running:
            raise RuntimeError("the worker is running already")
        if self._stopping:
            self._stopping = False
            await anyio.lowlevel.checkpoint()
            return
        plan = {tube: (fn, is_async(fn)) for tube, fn in self._handlers.as_dict().items()}
        entries = list(plan.values())
        self._by_tube = plan
        self._single = entries[0] if all(e[0] is entries[0][0] for e in entries) else None
        self._tubes = list(plan)
        self._tube = self._tubes[0] if len(self._tubes) == 1 else None
        self._burst = burst
        self._deadline = math.inf
        self._busy = 0
        concurrency = self._options.concurrency
        self._limiter = anyio.CapacityLimiter(concurrency * len(self._addresses))
        self._slots = [_Slot(a) for a in self._addresses for _ in range(concurrency)]
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._monitor)
                async with anyio.create_task_group() as slots:
                    for slot in self._slots:
                        slots.start_soon(self._slot, slot)
                tg.cancel_scope.cancel()  # every slot ended: so does the monitor
        finally:
            self._running = False
            self._stopping = False
            self._slots = []
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def stop(self, grace: float | None = None) -> None:
        """Stop :meth:`run` gracefully: no new reserve; a reserve that only waits
        is given up at once; running handlers get ``grace`` seconds (``None``: the
        worker's ``grace``; ``0``: none), after which their connections are
        closed so that the server makes their jobs ready again; then
        :meth:`run` returns. Called again, a shorter grace wins.

        Not a coroutine, so a signal receiver or any task can call it; from
        another thread, use ``anyio.from_thread.run_sync(worker.stop)``. Before
        :meth:`run`, the next :meth:`run` returns at once.
        """
        if grace is not None:
            grace = dataclasses.replace(self._options, grace=grace).grace  # checks it
        else:
            grace = self._options.grace
        self._stopping = True
        if not self._running:
            return
        deadline = anyio.current_time() + grace
        self._deadline = min(self._deadline, deadline)
        for slot in self._slots:
            slot.scope.deadline = min(slot.scope.deadline, deadline)
            self._cancel_if_idle(slot)

    def _cancel_if_idle(self, slot: _Slot) -> None:
        """Cancel ``slot`` if that loses nothing: it is connecting or pausing, or
        all it has in flight is a waiting reserve (closing the connection gives
        back any job reserved meanwhile)."""
        if slot.phase is _IDLE or (
            slot.phase is _RESERVING
            and slot.client is not None
            and slot.client._mux.waiting_on_reserve
        ):
            slot.scope.cancel()

    def _fail(self, exc: BaseException) -> None:
        """A task failed: remember the first failure for run() and stop."""
        if self._failure is None:
            self._failure = exc
        self.stop()

    # -- a slot ----------------------------------------------------------------------

    async def _slot(self, slot: _Slot) -> None:
        try:
            with slot.scope:
                failures = 0  # attempts that could not connect since the last that did
                again = False  # the next connection is a reconnection
                while (served := await self._connected(slot, failures, again)) is not True:
                    # A connection that opened and was lost starts the count anew.
                    failures = failures + 1 if served is False else 0
                    again = True
                    slot.phase = _IDLE  # from here, stop() cancels the pause
                    await anyio.sleep(reconnect_delay(max(failures, 1)))
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            # Its job, if any, went back with the connection, closed on the way out.
            self._fail(exc)
        finally:
            slot.phase = _DONE
            slot.client = None

    async def _connected(self, slot: _Slot, failures: int, again: bool) -> bool | None:
        """Connect ``slot`` and serve until the worker stops (``True``); with
        several servers, a connection that cannot be opened returns ``False``
        and one that opened and then failed ``None``, instead of raising: to be
        opened again after a pause. ``again``: this is a reconnection, logged
        with the ``failures`` before it."""
        opened = False
        try:
            async with connect(
                slot.address,
                watch=self._tubes,
                encoding=self._encoding,
                serializer=self._serializer,
                metrics=self._metrics,
            ) as client:
                opened = True
                slot.client = client
                if again:
                    logger.info(
                        "server %s: reconnected after %d failed attempts", slot.server, failures
                    )
                await self._serve(slot, client)
            return True
        except OSError as exc:  # BrokenConnectionError is one too
            if not self._several or self._stopping:
                raise
            slot.client = None
            why = f"{type(exc).__name__}: {exc}"
            if self._burst:  # that server is done with, for this burst
                lost = "connection lost" if opened else "cannot connect"
                logger.warning("server %s: %s (%s)", slot.server, lost, why)
                return True
            if opened:
                logger.warning("server %s: connection lost (%s); reconnecting", slot.server, why)
                return None
            if not again:
                logger.warning(
                    "server %s: cannot connect (%s); trying again in the background",
                    slot.server,
                    why,
                )
            else:
                logger.debug("server %s: reconnecting failed (%s)", slot.server, why)
            return False

    async def _serve(self, slot: _Slot, client: Client[Any]) -> None:
        mux = client._mux
        reserve = reserve_command(0 if self._burst else None)
        pending: Delete | Release | Bury | None = None  # the last job's finish
        while True:
            if self._stopping:
                if pending is not None:
                    slot.phase = _BUSY
                    self._finished(slot, pending, await mux.request(pending, _reply))
                return
            slot.phase = _RESERVING
            if pending is None:
                event = await mux.request(reserve, _reply)
            else:
                events = await mux.exchange((pending, reserve), _replies, inline=True)
                self._finished(slot, pending, events[0])
                event = events[1]
                pending = None
            slot.phase = _BUSY
            if type(event) is Reserved:
                if self._stopping:
                    return  # reserved as the worker stops: it goes back with the connection
                self._busy += 1
                try:
                    pending = await self._job(slot, client, event)
                finally:
                    self._busy -= 1
            elif type(event) is TimedOut:  # burst mode
                if not self._busy:
                    return
                slot.phase = _IDLE
                await anyio.sleep(BURST_PAUSE)
            elif type(event) is DeadlineSoon:
                logger.debug("reserve answered DEADLINE_SOON; reserving again")
            else:
                raise error_for_event(event)

    async def _job(
        self, slot: _Slot, client: Client[Any], event: Reserved
    ) -> Delete | Release | Bury | None:
        """Run the handler of the job ``event`` carries; return the command that
        ends the job (``None``: the job is not ours any more)."""
        slot.tube = self._tube
        try:
            job = job_from_event(event, self._encoding, self._serializer, slot.server)
        except BodyDecodeError as exc:
            return await self._undecodable(slot, client, exc)
        entry = self._single
        if entry is None:
            stats = await self._stats(slot, client, job.id)
            if stats is None:
                return None
            slot.tube = stats.tube
            entry = self._by_tube[stats.tube]
        handler, coroutine = entry
        slot.reserved_at = started = anyio.current_time()
        slot.clock = TouchClock(started)
        slot.job_id = job.id
        stats = None
        try:
            error = await self._call(slot, job, handler, coroutine)
            if error is not None:
                # Asked while the monitor still touches the job.
                stats = await self._stats(slot, client, job.id)
                if stats is None:
                    return None
        finally:
            slot.job_id = None  # from here on, no touch for this job is written
            slot.clock = None
        metrics = self._metrics
        if error is None:
            if metrics is None:
                return Delete(job.id)
            outcome = finish(job.id, None, None, self._options)
        else:
            assert stats is not None
            slot.tube = stats.tube
            outcome = finish(job.id, error, stats, self._options)
            log_failure(job.id, stats.tube, error, outcome, server=self._server(slot))
        if metrics is not None:
            duration = anyio.current_time() - started
            report_job(metrics, self._label(slot), outcome, duration, error, slot.server)
        return outcome.command

    async def _call(
        self, slot: _Slot, job: Job[Any], handler: Handler, coroutine: bool
    ) -> Exception | None:
        """Run ``handler``; return the ``Exception`` it raised, if any."""
        try:
            if coroutine:
                await handler(job)
            else:
                await anyio.to_thread.run_sync(
                    handler, job, abandon_on_cancel=True, limiter=self._limiter
                )
        except Exception as exc:
            return exc
        except anyio.get_cancelled_exc_class():
            if slot.scope.cancel_called:
                logger.warning(
                    "job %d (tube %s) given back: its handler was still running "
                    "when the grace period ended",
                    job.id,
                    self._label(slot),
                )
            raise
        except BaseException as exc:
            logger.warning(
                "job %d (tube %s) given back: its handler raised %s",
                job.id,
                self._label(slot),
                type(exc).__name__,
            )
            raise
        return None

    async def _undecodable(
        self, slot: _Slot, client: Client[Any], exc: BodyDecodeError
    ) -> Bury | None:
        stats = await self._stats(slot, client, exc.id)
        if stats is None:
            return None
        slot.tube = stats.tube
        log_undecodable(exc, stats.tube, server=self._server(slot))
        command = Bury(exc.id, stats.pri)
        if self._metrics is not None:
            buried = Finish(command, "buried")
            report_job(self._metrics, stats.tube, buried, 0.0, exc, slot.server)
        return command

    async def _stats(self, slot: _Slot, client: Client[Any], job_id: int) -> JobStats | None:
        try:
            return await client.stats_job(job_id)
        except NotFoundError:
            self._lost(slot, job_id, "stats-job answered NOT_FOUND")
            return None

    def _finished(self, slot: _Slot, command: Delete | Release | Bury, event: Event) -> None:
        """Check the reply to a job's finishing command."""
        if not check_ending(command, event, self._label(slot), server=self._server(slot)):
            self._lost(slot, command.id, f"{command.verb} answered NOT_FOUND")

    def _lost(self, slot: _Slot, job_id: int, why: str) -> None:
        if slot.lost == job_id:
            return  # logged already (by a touch)
        slot.lost = job_id
        log_lost(job_id, self._label(slot), why, server=self._server(slot))

    def _label(self, slot: _Slot) -> str:
        return slot.tube or " or ".join(self._tubes)

    def _server(self, slot: _Slot) -> str | None:
        """The server to name in a log line: only when there are several."""
        return slot.server if self._several else None

    # -- the monitor -----------------------------------------------------------------

    async def _monitor(self) -> None:
        try:
            async with anyio.create_task_group() as touches:
                while True:
                    now = anyio.current_time()
                    wake = now + MONITOR_TICK
                    for slot in self._slots:
                        if self._stopping and slot.phase is _RESERVING:
                            self._cancel_if_idle(slot)
                            if not slot.scope.cancel_called:
                                wake = min(wake, now + STOP_POLL)
                        clock = slot.clock
                        job_id = slot.job_id
                        if clock is None or job_id is None or slot.touching:
                            continue
                        if clock.due <= now:
                            slot.touching = True
                            touches.start_soon(self._touch, slot, job_id, clock)
                        elif clock.due < wake:
                            wake = clock.due
                    await anyio.sleep_until(wake)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # pragma: no cover - a bug, or an interrupt here
            self._fail(exc)

    async def _touch(self, slot: _Slot, job_id: int, clock: TouchClock) -> None:
        """The check (``stats-job``) or ``touch`` of ``job_id``, running in ``slot``."""
        client = slot.client
        try:
            # Checked synchronously right before each command is written (a call
            # writes before it first yields): a touch written after the slot's
            # next reserve would wait behind it.
            if slot.job_id != job_id or client is None:
                return
            sent_at = anyio.current_time()
            if clock.ttr is None:
                stats = await client.stats_job(job_id)
                clock.learned(sent_at, stats)
                sent_at = anyio.current_time()
                if clock.due > sent_at or slot.job_id != job_id:
                    return
            await client.touch(job_id)
            clock.touched(sent_at)
            if self._metrics is not None:
                self._metrics.job(
                    self._label(slot),
                    "touched",
                    sent_at - slot.reserved_at,
                    failed=False,
                    server=slot.server,
                )
        except NotFoundError:
            if slot.job_id == job_id:
                slot.clock = None
                self._lost(slot, job_id, "touch answered NOT_FOUND")
        except Error:
            pass  # the connection broke or was closed: its slot sees it too
        except anyio.get_cancelled_exc_class():  # pragma: no cover - run() ends first
            raise
        except BaseException as exc:  # pragma: no cover - a bug, or an interrupt here
            self._fail(exc)
        finally:
            slot.touching = False
