"""The async pool: one client per server, and the choice of a server per call.

Theory of operation: the twin of :mod:`beanproto_sync._pool` (same structure,
same names), with tasks in place of threads. A :class:`Pool` holds, per server,
at most one connected :class:`~beanproto_anyio.Client` (a "link", opened with
:func:`~beanproto_anyio.connect`) with the used tube and watch list that
connection has confirmed, and the server's down state (failed attempts in a
row, the time of the next attempt). The pool's own ``use``/``watch`` are
remembered, and a link is brought in line (``use``, ``watch``, ``ignore``, each
recorded only once its reply came; sending one again is harmless) just before
a call that depends on them: a cancelled ``use`` leaves nothing half applied,
only a link that is behind and is caught up by its next call.

A link is replaced, never repaired: a client that broke (an I/O error, a
cancelled write, a protocol error) is dropped and the next call on that server
opens a new client with the pool's current tubes (one task at a time, under the
server's lock), at once after a break, then with
:func:`beanproto.adapter.reconnect_delay` between failed attempts. That is what
tells a put that was never sent (no link: the server is skipped) from one whose
fate is unknown (the link broke during the put: the put raises and is never sent
anywhere else). State changes before any ``await`` that closes something.

A reserve over several servers polls: ``reserve-with-timeout 0`` on each
server, from a rotating start, then a short pause that grows to
:data:`beanproto.pool.POLL_MAX_PAUSE`, so no server is waited on while another has a job, and
no reserve ever holds a connection (other tasks' calls are not stuck behind it).
No two reserves race for one caller, so no job is reserved twice for it. The job
gets its server (:attr:`beanproto.Job.server`) with no checkpoint after the
client's answer, so a cancellation cannot come between them.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel

from beanproto import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    MAX_LINE_SIZE,
    BrokenConnectionError,
    Command,
    Connection,
    DrainingError,
    Error,
    Event,
    Ignore,
    InvalidArgument,
    Job,
    JobRef,
    JobStats,
    NotFoundError,
    NotIgnoredError,
    ReserveJob,
    ReserveWithTimeout,
    ServerStats,
    TimedOutError,
    TubeStats,
    Use,
    Watch,
)
from beanproto.adapter import (
    Serializer,
    body_encoding,
    job_from_event,
    reserve_command,
    setup_commands,
)
from beanproto.address import Address, Resolved, describe, resolve_addresses
from beanproto.metrics import MetricsHooks
from beanproto.pool import (
    JobOrRef,
    Placement,
    ServerState,
    inserted,
    locate,
    logger,
    poll_pauses,
    reason,
)

from ._client import Client, connect

__all__ = ["Pool"]

T = TypeVar("T")

_POLL: Final = ReserveWithTimeout(0)

#: What says a connection (not the command) failed: the client is broken afterwards.
_BROKEN: Final = (OSError, Error)


class _Link:
    """One connected client (and its ``connect`` context) and the tubes its
    connection has confirmed."""

    __slots__ = ("client", "closing", "context", "used", "watched")

    def __init__(
        self,
        context: AbstractAsyncContextManager[Client[Any]],
        client: Client[Any],
        used: str,
        watched: frozenset[str],
    ) -> None:
        self.context = context
        self.client = client
        self.used = used
        self.watched = watched
        self.closing = False

    async def aclose(self) -> None:
        """Close the client once: tasks whose calls broke on the same link all
        drop it, and the connect context's exit must not run twice at once."""
        if self.closing:
            return
        self.closing = True
        # The client's aclose() always closes the stream, even when cancelled.
        await self.context.__aexit__(None, None, None)


class _Server(ServerState):
    __slots__ = ("address", "link", "lock")

    def __init__(self, address: Resolved) -> None:
        super().__init__(describe(address))  # times: anyio.current_time()
        self.address = address
        self.link: _Link | None = None
        self.lock: anyio.Lock | None = None  # one connection attempt at a time


class Pool:
    """A producer and client API over several beanstalkd servers, async.

    Open it with ``async with Pool(addresses, ...) as pool``: entering connects
    to every server at once, leaving closes them. ``addresses`` is a list of
    addresses, a comma-separated string (``"beanstalk://h1:11300,h2:11300"``),
    one address, or ``None`` for ``$BEANSTALKD_URL``
    (:func:`beanproto.address.resolve_addresses`). The keyword arguments are
    :func:`~beanproto_anyio.connect`'s and apply to the one client the pool
    keeps per server. Servers are named as :func:`beanproto.address.describe`
    writes them; :attr:`servers` lists them in order.

    A server that is down when the pool opens is logged and retried later;
    only if every server is down does entering raise
    :class:`beanproto.BrokenConnectionError`.

    Everything else is :class:`beanproto_sync.Pool`'s, as coroutines: placement
    round-robin or by ``key=`` (a keyed put whose server is down raises rather
    than move the key), a put never reaching two servers (one whose connection
    broke after it was written raises :class:`beanproto.BrokenConnectionError`
    naming the server), jobs and :class:`beanproto.JobRef` remembering their
    server, per-server answers from the operator calls, servers that are down
    skipped and tried again with backoff, reported by the ``beanproto.pool``
    logger. Bound calls with ``anyio.fail_after``.

    Many tasks may share a pool: each server's client pipelines their calls,
    and :meth:`reserve` polls, so it never holds a connection. For consuming at
    a rate, :class:`beanproto_anyio.Worker` over the same addresses is the
    better tool.
    """

    __slots__ = (
        "_closed",
        "_options",
        "_placement",
        "_polling",
        "_servers",
        "_used",
        "_watched",
    )

    def __init__(
        self,
        addresses: str | Iterable[Address] | Address | None = None,
        *,
        encoding: str | None = None,
        serializer: Serializer | None = None,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_command_size: int = MAX_LINE_SIZE,
        metrics: MetricsHooks | None = None,
    ) -> None:
        encoding = body_encoding(encoding, serializer)
        if watch is not None and not isinstance(watch, str):
            watch = list(watch)  # read once
        # Invalid settings raise here, as the clients' would, not as a server down.
        probe = Connection(max_body_size=max_body_size, max_command_size=max_command_size)
        for command in setup_commands(use, watch):
            probe.send(command)
        resolved = resolve_addresses(addresses)
        if (tls or ssl_context is not None) and any(isinstance(a, str) for a in resolved):
            raise InvalidArgument("TLS needs (host, port) addresses, not a Unix socket")
        if tls and ssl_context is None:
            ssl_context = ssl.create_default_context()  # one for every server
        self._options: dict[str, Any] = {
            "encoding": encoding,
            "serializer": serializer,
            "ssl_context": ssl_context,
            "max_body_size": max_body_size,
            "max_command_size": max_command_size,
            "metrics": metrics,
        }
        self._used = DEFAULT_TUBE if use is None else use
        watched = [watch] if isinstance(watch, str) else watch
        self._watched: tuple[str, ...] = (
            (DEFAULT_TUBE,) if watched is None else tuple(dict.fromkeys(watched))
        )
        self._servers = [_Server(a) for a in resolved]
        self._placement = Placement(len(resolved))  # where puts go
        self._polling = Placement(len(resolved))  # where a reserve looks first
        self._closed = False

    # -- links -----------------------------------------------------------------------

    def _names(self) -> str:
        return ", ".join(s.name for s in self._servers)

    async def _link(self, s: _Server) -> _Link | None:
        """The server's connected client, or ``None`` if it is down (not due for an
        attempt, or the attempt failed)."""
        link = s.link
        if link is not None and not link.client.closed:
            return link
        if s.lock is None:
            s.lock = anyio.Lock()
        async with s.lock:
            if self._closed:
                raise BrokenConnectionError("the pool was closed")
            link = s.link
            if link is not None:
                if not link.client.closed:
                    return link  # another task reconnected meanwhile
                s.link = None  # a cancelled call broke it: reconnect at once
                await link.aclose()
            if not s.due(anyio.current_time()):
                return None
            used, watched = self._used, self._watched
            context = connect(
                s.address,
                use=None if used == DEFAULT_TUBE else used,
                watch=watched,
                **self._options,
            )
            try:
                client = await context.__aenter__()
            except _BROKEN as exc:
                s.connect_failed(anyio.current_time(), exc)
                return None
            link = _Link(context, client, used, frozenset(watched))
            if self._closed:  # aclose() ran while this task connected
                await link.aclose()
                raise BrokenConnectionError("the pool was closed")
            s.link = link
            s.connected()
            return link

    async def _broke(self, s: _Server, link: _Link, exc: BaseException) -> BrokenConnectionError:
        """Drop a link whose call failed on the connection; return the error to raise."""
        if s.link is link:
            s.link = None
        error = s.broke(exc)
        await link.aclose()
        return error

    def _check(self, command: Command) -> None:
        """Raise :class:`beanproto.InvalidArgument` for a command the servers would
        not read whole (``max_command_size``), as a client's send would."""
        Connection(max_command_size=self._options["max_command_size"]).send(command)

    def _down(self, s: _Server, what: str) -> BrokenConnectionError:
        return s.down_error(anyio.current_time(), what)

    async def _sync_use(self, link: _Link) -> None:
        tube = self._used
        if link.used != tube:
            await link.client.use(tube)
            link.used = tube

    async def _sync_watch(self, link: _Link) -> None:
        want = self._watched
        if link.watched == frozenset(want):
            return
        for tube in want:  # watch first, so the list is never empty
            if tube not in link.watched:
                await link.client.watch(tube)
                link.watched = link.watched | {tube}
        for tube in link.watched - set(want):
            await link.client.ignore(tube)
            link.watched = link.watched - {tube}

    async def _on(self, s: _Server, call: Callable[[_Link], Awaitable[T]], what: str) -> T:
        """``call`` on the server's link; a broken connection raises naming it."""
        link = await self._link(s)
        if link is None:
            raise self._down(s, what)
        try:
            return await call(link)
        except _BROKEN as exc:
            if not link.client.closed:
                raise  # a refusal, or a body that does not decode: the link is fine
            raise await self._broke(s, link, exc) from exc

    def _server_of(self, job_or_ref: JobOrRef) -> tuple[_Server, int]:
        index, id = locate(job_or_ref, self.servers)
        return self._servers[index], id

    async def _place(
        self, send: Callable[[Client[Any]], Awaitable[T]], key: str | bytes | None
    ) -> tuple[str, T]:
        """Send a put (or a batch) to one server: the key's, else the next one up."""
        if self._closed:
            raise BrokenConnectionError("the pool was closed")
        candidates = [self._servers[i] for i in self._placement.candidates(key)]
        draining: DrainingError | None = None
        for s in candidates:
            link = await self._link(s)
            if link is None:
                if key is not None:
                    raise self._down(s, "a keyed put is not moved to another server")
                continue
            try:
                await self._sync_use(link)
            except _BROKEN as exc:
                if not link.client.closed:
                    raise
                error = await self._broke(s, link, exc)  # nothing of the put was sent
                if key is not None:
                    raise error from exc
                continue
            try:
                return s.name, await send(link.client)
            except DrainingError as exc:
                if key is not None or inserted(exc):
                    _note(exc, f"server {s.name}")
                    raise
                draining = exc  # nothing inserted: the next server may take it all
            except _BROKEN as exc:
                if not link.client.closed:
                    _note(exc, f"server {s.name}")
                    raise
                await self._broke(s, link, exc)
                raise BrokenConnectionError(
                    f"{s.name}: the connection broke during a put, which may or may not "
                    f"have inserted its job(s); not sent elsewhere ({reason(exc)})"
                ) from exc
        if draining is not None:
            raise draining
        raise BrokenConnectionError(f"every server is down: {self._names()}")

    async def _each(
        self,
        call: Callable[[_Link], Awaitable[T]],
        *,
        missing_ok: bool = False,
        used: bool = False,
    ) -> dict[str, T]:
        """``call`` on every server that is up: its answers by server name. A
        server that is down is left out (and logged); every server down raises."""
        if self._closed:
            raise BrokenConnectionError("the pool was closed")
        out: dict[str, T] = {}
        down: list[str] = []
        for s in self._servers:
            link = await self._link(s)
            if link is None:
                down.append(s.name)
                continue
            try:
                if used:
                    await self._sync_use(link)
                out[s.name] = await call(link)
            except NotFoundError:
                if not missing_ok:
                    raise
            except _BROKEN as exc:
                if not link.client.closed:
                    raise
                await self._broke(s, link, exc)
                down.append(s.name)
        if down:
            if len(down) == len(self._servers):
                raise BrokenConnectionError(f"every server is down: {self._names()}")
            logger.info("left out (down): %s", ", ".join(down))
        return out

    # -- producing -------------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """The servers' names, in the order given."""
        return [s.name for s in self._servers]

    async def put(
        self,
        body: Any,
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
        *,
        key: str | bytes | None = None,
    ) -> JobRef:
        """Insert a job on one server and return where it is: ``JobRef(server, id)``.

        Without ``key`` the server is the next one round-robin that is up and
        not draining; with ``key`` it is the key's server, always the same
        (raises :class:`beanproto.BrokenConnectionError` if that one is down).
        A put whose connection broke after it was written raises
        :class:`beanproto.BrokenConnectionError` naming the server: its job may
        exist there, and it is not sent anywhere else (a cancelled put, too,
        may have inserted its job). Refusals raise as from
        :meth:`beanproto_anyio.Client.put`.
        """
        name, id = await self._place(lambda c: c.put(body, priority, delay, ttr), key)
        return JobRef(name, id)

    async def put_many(
        self,
        bodies: Iterable[Any],
        priority: int = DEFAULT_PRIORITY,
        delay: int = 0,
        ttr: int = DEFAULT_TTR,
        *,
        key: str | bytes | None = None,
    ) -> list[JobRef]:
        """Insert many jobs in one pipelined exchange on one server (the next
        round-robin, or the ``key``'s); return where each is, in order.

        The whole batch goes to one server, so its jobs keep their order. As
        with :meth:`put`, a batch whose connection broke raises and is not sent
        elsewhere. A refusal raises as from
        :meth:`beanproto_anyio.Client.put_many`, ``exc.outcomes`` holding the
        ids on that server (named in the exception's notes on Python 3.11+).
        """
        items = list(bodies)
        if not items:
            await anyio.lowlevel.checkpoint()
            return []
        name, ids = await self._place(lambda c: c.put_many(items, priority, delay, ttr), key)
        return [JobRef(name, id) for id in ids]

    async def use(self, tube: str) -> str:
        """Put later jobs into ``tube`` on every server; return its name.

        Remembered: a server that is down uses it once it is back."""
        self._check(Use(tube))  # an invalid name raises before anything changes
        self._used = tube
        await self._each(_nothing, used=True)  # bring every link in line now
        return tube

    def using(self) -> str:
        """The tube :meth:`put` goes to (the pool's own setting: no I/O)."""
        return self._used

    # -- consuming -------------------------------------------------------------------

    async def reserve(self, timeout: float | None = None) -> Job[Any]:
        """Reserve a job from a watched tube on any server; the job's
        :attr:`~beanproto.Job.server` says which.

        Polls every server that is up (``reserve-with-timeout 0``, from a
        rotating start), then pauses (10 ms, doubling up to 0.5 s) and polls
        again, until a job comes or ``timeout`` seconds passed
        (:class:`beanproto.TimedOutError`; ``0`` polls once, ``None`` waits
        however long it takes). So a job may wait up to half a second for an
        idle consumer: for steady consuming, :class:`beanproto_anyio.Worker`
        reserves on every server at once. Raises
        :class:`beanproto.BrokenConnectionError` when every server is down, and
        :class:`beanproto.DeadlineSoonError` when a job reserved on a server is
        about to reach its TTR. Cancelled, it loses no job: a job on its way
        back closes that connection, and its server makes the job ready again.
        """
        reserve_command(timeout)  # checks the timeout
        deadline = None if timeout is None else anyio.current_time() + timeout
        pauses = poll_pauses()
        while True:
            if self._closed:
                raise BrokenConnectionError("the pool was closed")
            up = 0
            for i in self._polling.candidates():
                s = self._servers[i]
                link = await self._link(s)
                if link is None:
                    continue
                try:
                    await self._sync_watch(link)
                    # Through the client's request, which hands the job over in
                    # one step: no line runs between its reply and this return.
                    return await link.client._request(_POLL, self._reserved(s.name))
                except TimedOutError:
                    up += 1
                except _BROKEN as exc:
                    if not link.client.closed:
                        _note(exc, f"server {s.name}")
                        raise
                    await self._broke(s, link, exc)
            if not up:
                raise BrokenConnectionError(f"every server is down: {self._names()}")
            left = None if deadline is None else deadline - anyio.current_time()
            if left is not None and left <= 0:
                raise TimedOutError("no job came in time on any server")
            pause = next(pauses)
            await anyio.sleep(pause if left is None else min(pause, left))

    async def reserve_job(self, job_or_ref: JobOrRef) -> Job[Any]:
        """Reserve a given job on its server (beanstalkd 1.12+)."""
        s, id = self._server_of(job_or_ref)
        return await self._on(
            s,
            lambda link: link.client._request(ReserveJob(id), self._reserved(s.name)),
            "reserve-job",
        )

    def _reserved(self, name: str) -> Callable[[Event], Job[Any]]:
        encoding, serializer = self._options["encoding"], self._options["serializer"]
        return lambda event: job_from_event(event, encoding, serializer, name)

    async def delete(self, job_or_ref: JobOrRef) -> None:
        """Delete a job on its server (a :class:`beanproto.Job` or a :class:`beanproto.JobRef`)."""
        s, id = self._server_of(job_or_ref)
        await self._on(s, lambda link: link.client.delete(id), "delete")

    async def release(
        self, job_or_ref: JobOrRef, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a job reserved through this pool back into its server's ready queue
        (or delayed, by ``delay`` s)."""
        s, id = self._server_of(job_or_ref)
        await self._on(s, lambda link: link.client.release(id, priority, delay), "release")

    async def bury(self, job_or_ref: JobOrRef, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a job reserved through this pool aside on its server until it is kicked."""
        s, id = self._server_of(job_or_ref)
        await self._on(s, lambda link: link.client.bury(id, priority), "bury")

    async def touch(self, job_or_ref: JobOrRef) -> None:
        """Restart the TTR of a job reserved through this pool."""
        s, id = self._server_of(job_or_ref)
        await self._on(s, lambda link: link.client.touch(id), "touch")

    async def watch(self, tube: str) -> int:
        """Watch ``tube`` on every server; return how many tubes are watched.

        Remembered: a server that is down watches it once it is back."""
        self._check(Watch(tube))  # an invalid name raises before anything changes
        if tube not in self._watched:
            self._watched = (*self._watched, tube)
        await self._each(self._sync_watch)
        return len(self._watched)

    async def ignore(self, tube: str) -> int:
        """Stop watching ``tube`` on every server; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube."""
        self._check(Ignore(tube))
        if tube in self._watched:
            if len(self._watched) == 1:
                raise NotIgnoredError(f"{tube!r} is the last watched tube")
            self._watched = tuple(t for t in self._watched if t != tube)
        await self._each(self._sync_watch)
        return len(self._watched)

    def watching(self) -> list[str]:
        """The watched tubes (the pool's own setting: no I/O)."""
        return list(self._watched)

    # -- inspecting ------------------------------------------------------------------

    async def peek(self, job_or_ref: JobOrRef) -> Job[Any]:
        """A job, in any state, from its server. Raises :class:`beanproto.NotFoundError`."""
        s, id = self._server_of(job_or_ref)
        job = await self._on(s, lambda link: link.client.peek(id), "peek")
        return Job(job.id, job.body, s.name)

    async def _peeks(
        self, peek: Callable[[Client[Any]], Awaitable[Job[Any]]]
    ) -> dict[str, Job[Any]]:
        found = await self._each(lambda link: peek(link.client), missing_ok=True, used=True)
        return {name: Job(job.id, job.body, name) for name, job in found.items()}

    async def peek_ready(self) -> dict[str, Job[Any]]:
        """The next ready job of the used tube, per server (servers with none are left out)."""
        return await self._peeks(lambda c: c.peek_ready())

    async def peek_delayed(self) -> dict[str, Job[Any]]:
        """The delayed job of the used tube that becomes ready first, per server
        (servers with none are left out)."""
        return await self._peeks(lambda c: c.peek_delayed())

    async def peek_buried(self) -> dict[str, Job[Any]]:
        """The next buried job of the used tube, per server (servers with none are left out)."""
        return await self._peeks(lambda c: c.peek_buried())

    async def kick(self, bound: int) -> dict[str, int]:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube on
        each server; return how many were kicked, per server."""
        return await self._each(lambda link: link.client.kick(bound), used=True)

    async def kick_job(self, job_or_ref: JobOrRef) -> None:
        """Kick one buried or delayed job into its server's ready queue."""
        s, id = self._server_of(job_or_ref)
        await self._on(s, lambda link: link.client.kick_job(id), "kick-job")

    async def stats(self) -> dict[str, ServerStats]:
        """Each server's statistics, by server (a server that is down is left out)."""
        return await self._each(lambda link: link.client.stats())

    async def stats_job(self, job_or_ref: JobOrRef) -> JobStats:
        """A job's statistics, from its server."""
        s, id = self._server_of(job_or_ref)
        return await self._on(s, lambda link: link.client.stats_job(id), "stats-job")

    async def stats_tube(self, tube: str) -> dict[str, TubeStats]:
        """A tube's statistics per server; servers without that tube (and servers
        that are down) are left out, so ``{}`` means no server has it."""
        return await self._each(lambda link: link.client.stats_tube(tube), missing_ok=True)

    async def tubes(self) -> dict[str, list[str]]:
        """Every existing tube, per server."""
        return await self._each(lambda link: link.client.tubes())

    async def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds on every server
        that has it. Raises :class:`beanproto.NotFoundError` if none has it."""
        paused = await self._each(lambda link: link.client.pause_tube(tube, delay), missing_ok=True)
        if not paused:
            raise NotFoundError(f"no server has tube {tube!r}")

    # -- lifetime --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every server's connection; idempotent, and closes them even if
        this task is cancelled. Jobs reserved through the pool and not finished
        go back to their servers' ready queues."""
        self._closed = True
        links = [s.link for s in self._servers]
        for s in self._servers:
            s.link = None
        with anyio.CancelScope(shield=True):  # bounded: each aclose() takes ~1 s at most
            for link in links:
                if link is not None:
                    await link.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called; every call then raises
        :class:`beanproto.BrokenConnectionError`."""
        return self._closed

    async def __aenter__(self) -> Pool:
        """Connect to every server at once; raises only if every one is down."""
        up: list[_Link | None] = []

        async def open_(s: _Server) -> None:
            up.append(await self._link(s))

        try:
            async with anyio.create_task_group() as tg:
                for s in self._servers:
                    tg.start_soon(open_, s)
            if not any(up):
                raise BrokenConnectionError(f"every server is down: {self._names()}")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if self._closed:
            return f"<beanproto_anyio.Pool {self._names()} closed>"
        states = ", ".join(f"{s.name} {_state(s)}" for s in self._servers)
        return f"<beanproto_anyio.Pool {states}>"


async def _nothing(link: _Link) -> None:
    pass


def _state(s: _Server) -> str:
    if s.link is not None and not s.link.client.closed:
        return "up"
    return "down" if s.down else "idle"


def _note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
