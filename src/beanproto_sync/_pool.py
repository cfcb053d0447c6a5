"""The blocking pool: one client per server, and the choice of a server per call.

Theory of operation: a :class:`Pool` holds, per server, at most one connected
:class:`~beanproto_sync.Client` (a "link") with the used tube and watch list
that connection has confirmed, and the server's down state (failed attempts in a
row, the time of the next attempt). The pool's own ``use``/``watch`` are
remembered, and a link is brought in line (``use``, ``watch``, ``ignore``, each
recorded only once its reply came) just before a call that depends on them: so
an interrupted ``use`` leaves nothing half applied, only a link that is behind
and is caught up by its next call.

A link is replaced, never repaired: a client that broke (an I/O error, an
interrupted call, a protocol error) is dropped and the next call on that server
opens a new client with the pool's current tubes, at once after a break, then
with :func:`beanproto.adapter.reconnect_delay` between failed attempts. That is
what tells a put that was never sent (no link: the server is skipped) from one
whose fate is unknown (the link broke during the put: the put raises and is
never sent anywhere else).

A reserve over several servers polls: ``reserve-with-timeout 0`` on each
server, from a rotating start, then a short pause that grows to
:data:`beanproto.pool.POLL_MAX_PAUSE`, so no server is waited on while another has a job. A
reserved job comes back through the transport in one step (the transport hands
the value over in the line that releases its lock), with its server in
:attr:`beanproto.Job.server`.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final, TypeVar

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

from ._client import Client

__all__ = ["Pool"]

T = TypeVar("T")

#: What says a connection (not the command) failed: the client is broken afterwards.
_BROKEN: Final = (OSError, Error)
_POLL: Final = ReserveWithTimeout(0)


class _Link:
    """One connected client and the tubes its connection has confirmed."""

    __slots__ = ("client", "used", "watched")

    def __init__(self, client: Client[Any], used: str, watched: frozenset[str]) -> None:
        self.client = client
        self.used = used
        self.watched = watched


class _Server(ServerState):
    __slots__ = ("address", "link", "lock")

    def __init__(self, address: Resolved) -> None:
        super().__init__(describe(address))  # times: time.monotonic()
        self.address = address
        self.link: _Link | None = None
        self.lock = threading.RLock()  # one connection attempt at a time


class Pool:
    """A producer and client API over several beanstalkd servers, blocking.

    ``addresses`` is a list of addresses, a comma-separated string
    (``"beanstalk://h1:11300,h2:11300"``), one address, or ``None`` for
    ``$BEANSTALKD_URL`` (:func:`beanproto.address.resolve_addresses`). The
    keyword arguments are :class:`~beanproto_sync.Client`'s and apply to the
    one client the pool keeps per server. Servers are named as
    :func:`beanproto.address.describe` writes them (``"10.0.0.5:11300"``);
    :attr:`servers` lists them in order.

    Construction connects to every server; a server that is down is logged and
    retried later, and only if every server is down does it raise
    :class:`beanproto.BrokenConnectionError`. ``with Pool(...) as pool`` closes
    the pool at the end.

    Placement: :meth:`put` picks a server round-robin, skipping servers that
    are down (and one in drain mode), or by ``key=``: the CRC-32 of the key
    over the configured list, so one key's jobs go to one server and are
    reserved in the order they were put. A keyed put whose server is down
    raises instead of moving the key (that would break the order). Changing the
    list of servers moves most keys. A put never reaches two servers: if the
    connection breaks after the put was written, its fate is unknown (the job
    may exist) and the put raises :class:`beanproto.BrokenConnectionError`
    naming the server; it is never sent again elsewhere.

    Jobs remember their server: :meth:`put` returns a
    :class:`beanproto.JobRef`, a reserved or peeked job has
    :attr:`beanproto.Job.server`, and the per-job methods (:meth:`delete`,
    :meth:`release`, :meth:`bury`, :meth:`touch`, :meth:`kick_job`,
    :meth:`stats_job`, :meth:`peek`) take a job or a ref and go to its server.
    A bare job id is refused (``TypeError``): ids are per server.

    Down servers: a server whose connection broke is tried again at once by
    its next call, then after 0.1 s, doubling up to 5 s
    (:func:`beanproto.adapter.reconnect_delay`); meanwhile it is skipped. The
    ``beanproto.pool`` logger reports a server going down (WARNING) and coming
    back (INFO). A call for one server (a per-job method, a keyed put) raises
    :class:`beanproto.BrokenConnectionError` naming it; the operator calls
    answer per server and leave a down server out; a call that finds every
    server down raises.

    Consuming: :meth:`reserve` polls the servers; for consuming at a rate,
    :class:`beanproto_sync.Worker` over the same addresses is the better tool.

    Threads may share a pool: each server's client serializes its calls, and
    connecting is one thread at a time per server. Give each server a
    ``timeout`` when a host may vanish without refusing connections.
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
        timeout: float | None = None,
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
        if timeout is not None and not timeout > 0:
            raise InvalidArgument("timeout must be a positive number of seconds, or None")
        resolved = resolve_addresses(addresses)
        if (tls or ssl_context is not None) and any(isinstance(a, str) for a in resolved):
            raise InvalidArgument("TLS needs (host, port) addresses, not a Unix socket")
        if tls and ssl_context is None:
            ssl_context = ssl.create_default_context()  # one for every server
        self._options: dict[str, Any] = {
            "encoding": encoding,
            "serializer": serializer,
            "timeout": timeout,
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
        try:
            up = [self._link(s) for s in self._servers]
            if not any(up):
                raise BrokenConnectionError(f"every server is down: {self._names()}")
        except BaseException:
            self.close()
            raise

    # -- links -----------------------------------------------------------------------

    def _names(self) -> str:
        return ", ".join(s.name for s in self._servers)

    def _link(self, s: _Server) -> _Link | None:
        """The server's connected client, or ``None`` if it is down (not due for an
        attempt, or the attempt failed)."""
        link = s.link
        if link is not None and not link.client.closed:
            return link
        with s.lock:
            if self._closed:
                raise BrokenConnectionError("the pool was closed")
            link = s.link
            if link is not None:
                if not link.client.closed:
                    return link  # another thread reconnected meanwhile
                s.link = None  # an interrupted call closed it: reconnect at once
                link.client.close()
            if not s.due(time.monotonic()):
                return None
            used, watched = self._used, self._watched
            try:
                client: Client[Any] = Client(
                    s.address,
                    use=None if used == DEFAULT_TUBE else used,
                    watch=watched,
                    **self._options,
                )
            except _BROKEN as exc:
                s.connect_failed(time.monotonic(), exc)
                return None
            link = _Link(client, used, frozenset(watched))
            s.link = link
            # close() from another thread does not wait for this lock: it sets
            # _closed first, then takes each link, so the link is closed by one of
            # the two.
            if self._closed:
                s.link = None
                client.close()
                raise BrokenConnectionError("the pool was closed")
            s.connected()
            return link

    def _broke(self, s: _Server, link: _Link, exc: BaseException) -> BrokenConnectionError:
        """Drop a link whose call failed on the connection; return the error to raise."""
        if s.link is link:
            s.link = None
        error = s.broke(exc)
        link.client.close()
        return error

    def _check(self, command: Command) -> None:
        """Raise :class:`beanproto.InvalidArgument` for a command the servers would
        not read whole (``max_command_size``), as a client's send would."""
        Connection(max_command_size=self._options["max_command_size"]).send(command)

    def _down(self, s: _Server, what: str) -> BrokenConnectionError:
        return s.down_error(time.monotonic(), what)

    def _sync_use(self, link: _Link) -> None:
        tube = self._used
        if link.used != tube:
            link.client.use(tube)
            link.used = tube

    def _sync_watch(self, link: _Link) -> None:
        want = self._watched
        if link.watched == frozenset(want):
            return
        for tube in want:  # watch first, so the list is never empty
            if tube not in link.watched:
                link.client.watch(tube)
                link.watched = link.watched | {tube}
        for tube in link.watched - set(want):
            link.client.ignore(tube)
            link.watched = link.watched - {tube}

    def _on(self, s: _Server, call: Callable[[_Link], T], what: str) -> T:
        """``call`` on the server's link; a broken connection raises naming it."""
        link = self._link(s)
        if link is None:
            raise self._down(s, what)
        try:
            return call(link)
        except _BROKEN as exc:
            if not link.client.closed:
                raise  # a refusal, or a body that does not decode: the link is fine
            raise self._broke(s, link, exc) from exc

    def _server_of(self, job_or_ref: JobOrRef) -> tuple[_Server, int]:
        index, id = locate(job_or_ref, self.servers)
        return self._servers[index], id

    def _place(self, send: Callable[[Client[Any]], T], key: str | bytes | None) -> tuple[str, T]:
        """Send a put (or a batch) to one server: the key's, else the next one up."""
        if self._closed:
            raise BrokenConnectionError("the pool was closed")
        candidates = [self._servers[i] for i in self._placement.candidates(key)]
        draining: DrainingError | None = None
        for s in candidates:
            link = self._link(s)
            if link is None:
                if key is not None:
                    raise self._down(s, "a keyed put is not moved to another server")
                continue
            try:
                self._sync_use(link)
            except _BROKEN as exc:
                if not link.client.closed:
                    raise
                error = self._broke(s, link, exc)  # nothing of the put was sent
                if key is not None:
                    raise error from exc
                continue
            try:
                return s.name, send(link.client)
            except DrainingError as exc:
                if key is not None or inserted(exc):
                    _note(exc, f"server {s.name}")
                    raise
                draining = exc  # nothing inserted: the next server may take it all
            except _BROKEN as exc:
                if not link.client.closed:
                    _note(exc, f"server {s.name}")
                    raise
                self._broke(s, link, exc)
                raise BrokenConnectionError(
                    f"{s.name}: the connection broke during a put, which may or may not "
                    f"have inserted its job(s); not sent elsewhere ({reason(exc)})"
                ) from exc
        if draining is not None:
            raise draining
        raise BrokenConnectionError(f"every server is down: {self._names()}")

    def _each(
        self, call: Callable[[_Link], T], *, missing_ok: bool = False, used: bool = False
    ) -> dict[str, T]:
        """``call`` on every server that is up: its answers by server name. A
        server that is down is left out (and logged); every server down raises."""
        if self._closed:
            raise BrokenConnectionError("the pool was closed")
        out: dict[str, T] = {}
        down: list[str] = []
        for s in self._servers:
            link = self._link(s)
            if link is None:
                down.append(s.name)
                continue
            try:
                if used:
                    self._sync_use(link)
                out[s.name] = call(link)
            except NotFoundError:
                if not missing_ok:
                    raise
            except _BROKEN as exc:
                if not link.client.closed:
                    raise
                self._broke(s, link, exc)
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

    def put(
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
        exist there, and it is not sent anywhere else. Refusals raise as from
        :meth:`beanproto_sync.Client.put`.
        """
        name, id = self._place(lambda c: c.put(body, priority, delay, ttr), key)
        return JobRef(name, id)

    def put_many(
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
        :meth:`beanproto_sync.Client.put_many`, ``exc.outcomes`` holding the
        ids on that server (named in the exception's notes on Python 3.11+).
        """
        items = list(bodies)
        if not items:
            return []
        name, ids = self._place(lambda c: c.put_many(items, priority, delay, ttr), key)
        return [JobRef(name, id) for id in ids]

    def use(self, tube: str) -> str:
        """Put later jobs into ``tube`` on every server; return its name.

        Remembered: a server that is down uses it once it is back."""
        self._check(Use(tube))  # an invalid name raises before anything changes
        self._used = tube
        self._each(lambda link: None, used=True)  # bring every link in line now
        return tube

    def using(self) -> str:
        """The tube :meth:`put` goes to (the pool's own setting: no I/O)."""
        return self._used

    # -- consuming -------------------------------------------------------------------

    def reserve(self, timeout: float | None = None) -> Job[Any]:
        """Reserve a job from a watched tube on any server; the job's
        :attr:`~beanproto.Job.server` says which.

        Polls every server that is up (``reserve-with-timeout 0``, from a
        rotating start), then pauses (10 ms, doubling up to 0.5 s) and polls
        again, until a job comes or ``timeout`` seconds passed
        (:class:`beanproto.TimedOutError`; ``0`` polls once, ``None`` waits
        however long it takes). So a job may wait up to half a second for an
        idle consumer: for steady consuming, :class:`beanproto_sync.Worker`
        reserves on every server at once. Raises
        :class:`beanproto.BrokenConnectionError` when every server is down, and
        :class:`beanproto.DeadlineSoonError` when a job reserved on a server is
        about to reach its TTR.
        """
        reserve_command(timeout)  # checks the timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        pauses = poll_pauses()
        while True:
            if self._closed:
                raise BrokenConnectionError("the pool was closed")
            up = 0
            for i in self._polling.candidates():
                s = self._servers[i]
                link = self._link(s)
                if link is None:
                    continue
                try:
                    self._sync_watch(link)
                    # Through the transport, which hands the job over in one step.
                    return link.client._transport.request(_POLL, self._reserved(s.name))
                except TimedOutError:
                    up += 1
                except _BROKEN as exc:
                    if not link.client.closed:
                        _note(exc, f"server {s.name}")
                        raise
                    self._broke(s, link, exc)
            if not up:
                raise BrokenConnectionError(f"every server is down: {self._names()}")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimedOutError("no job came in time on any server")
            pause = next(pauses)
            time.sleep(pause if left is None else min(pause, left))

    def _reserved(self, name: str) -> Callable[[Event], Job[Any]]:
        encoding, serializer = self._options["encoding"], self._options["serializer"]
        return lambda event: job_from_event(event, encoding, serializer, name)

    def reserve_job(self, job_or_ref: JobOrRef) -> Job[Any]:
        """Reserve a given job on its server (beanstalkd 1.12+)."""
        s, id = self._server_of(job_or_ref)
        return self._on(
            s,
            lambda link: link.client._transport.request(ReserveJob(id), self._reserved(s.name)),
            "reserve-job",
        )

    def delete(self, job_or_ref: JobOrRef) -> None:
        """Delete a job on its server (a :class:`beanproto.Job` or a :class:`beanproto.JobRef`)."""
        s, id = self._server_of(job_or_ref)
        self._on(s, lambda link: link.client.delete(id), "delete")

    def release(
        self, job_or_ref: JobOrRef, priority: int = DEFAULT_PRIORITY, delay: int = 0
    ) -> None:
        """Put a job reserved through this pool back into its server's ready queue
        (or delayed, by ``delay`` s)."""
        s, id = self._server_of(job_or_ref)
        self._on(s, lambda link: link.client.release(id, priority, delay), "release")

    def bury(self, job_or_ref: JobOrRef, priority: int = DEFAULT_PRIORITY) -> None:
        """Set a job reserved through this pool aside on its server until it is kicked."""
        s, id = self._server_of(job_or_ref)
        self._on(s, lambda link: link.client.bury(id, priority), "bury")

    def touch(self, job_or_ref: JobOrRef) -> None:
        """Restart the TTR of a job reserved through this pool."""
        s, id = self._server_of(job_or_ref)
        self._on(s, lambda link: link.client.touch(id), "touch")

    def watch(self, tube: str) -> int:
        """Watch ``tube`` on every server; return how many tubes are watched.

        Remembered: a server that is down watches it once it is back."""
        self._check(Watch(tube))  # an invalid name raises before anything changes
        if tube not in self._watched:
            self._watched = (*self._watched, tube)
        self._each(lambda link: self._sync_watch(link))
        return len(self._watched)

    def ignore(self, tube: str) -> int:
        """Stop watching ``tube`` on every server; return how many tubes are watched.

        Raises :class:`beanproto.NotIgnoredError` for the last watched tube."""
        self._check(Ignore(tube))
        if tube in self._watched:
            if len(self._watched) == 1:
                raise NotIgnoredError(f"{tube!r} is the last watched tube")
            self._watched = tuple(t for t in self._watched if t != tube)
        self._each(lambda link: self._sync_watch(link))
        return len(self._watched)

    def watching(self) -> list[str]:
        """The watched tubes (the pool's own setting: no I/O)."""
        return list(self._watched)

    # -- inspecting ------------------------------------------------------------------

    def peek(self, job_or_ref: JobOrRef) -> Job[Any]:
        """A job, in any state, from its server. Raises :class:`beanproto.NotFoundError`."""
        s, id = self._server_of(job_or_ref)
        job = self._on(s, lambda link: link.client.peek(id), "peek")
        return Job(job.id, job.body, s.name)

    def _peeks(self, peek: Callable[[Client[Any]], Job[Any]]) -> dict[str, Job[Any]]:
        found = self._each(lambda link: peek(link.client), missing_ok=True, used=True)
        return {name: Job(job.id, job.body, name) for name, job in found.items()}

    def peek_ready(self) -> dict[str, Job[Any]]:
        """The next ready job of the used tube, per server (servers with none are left out)."""
        return self._peeks(lambda c: c.peek_ready())

    def peek_delayed(self) -> dict[str, Job[Any]]:
        """The delayed job of the used tube that becomes ready first, per server
        (servers with none are left out)."""
        return self._peeks(lambda c: c.peek_delayed())

    def peek_buried(self) -> dict[str, Job[Any]]:
        """The next buried job of the used tube, per server (servers with none are left out)."""
        return self._peeks(lambda c: c.peek_buried())

    def kick(self, bound: int) -> dict[str, int]:
        """Kick up to ``bound`` buried (or else delayed) jobs of the used tube on
        each server; return how many were kicked, per server."""
        return self._each(lambda link: link.client.kick(bound), used=True)

    def kick_job(self, job_or_ref: JobOrRef) -> None:
        """Kick one buried or delayed job into its server's ready queue."""
        s, id = self._server_of(job_or_ref)
        self._on(s, lambda link: link.client.kick_job(id), "kick-job")

    def stats(self) -> dict[str, ServerStats]:
        """Each server's statistics, by server (a server that is down is left out)."""
        return self._each(lambda link: link.client.stats())

    def stats_job(self, job_or_ref: JobOrRef) -> JobStats:
        """A job's statistics, from its server."""
        s, id = self._server_of(job_or_ref)
        return self._on(s, lambda link: link.client.stats_job(id), "stats-job")

    def stats_tube(self, tube: str) -> dict[str, TubeStats]:
        """A tube's statistics per server; servers without that tube (and servers
        that are down) are left out, so ``{}`` means no server has it."""
        return self._each(lambda link: link.client.stats_tube(tube), missing_ok=True)

    def tubes(self) -> dict[str, list[str]]:
        """Every existing tube, per server."""
        return self._each(lambda link: link.client.tubes())

    def pause_tube(self, tube: str, delay: int) -> None:
        """Hold back reserves from ``tube`` for ``delay`` seconds on every server
        that has it. Raises :class:`beanproto.NotFoundError` if none has it."""
        paused = self._each(lambda link: link.client.pause_tube(tube, delay), missing_ok=True)
        if not paused:
            raise NotFoundError(f"no server has tube {tube!r}")

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Close every server's connection; idempotent. Jobs reserved through the
        pool and not finished go back to their servers' ready queues."""
        self._closed = True
        for s in self._servers:
            link, s.link = s.link, None
            if link is not None:
                link.client.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; every call then raises
        :class:`beanproto.BrokenConnectionError`."""
        return self._closed

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<beanproto_sync.Pool {self._names()} closed>"
        states = ", ".join(f"{s.name} {_state(s)}" for s in self._servers)
        return f"<beanproto_sync.Pool {states}>"


def _state(s: _Server) -> str:
    if s.link is not None and not s.link.client.closed:
        return "up"
    return "down" if s.down else "idle"


def _note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
