"""What a pool of servers decides, for any driver: the policy, without I/O.

``beanproto_sync.Pool`` and ``beanproto_anyio.Pool`` keep one connection per
server and choose a server per call. The choosing is the same on both, and
lives here, public, like :mod:`beanproto.worker`:

* :class:`Placement` orders the servers a put may go to: round-robin from a
  turning start, or the one server of a ``key`` (:func:`key_index`, a CRC-32,
  so every process with the same list agrees, across restarts);
* :func:`locate` finds the server of a :class:`~beanproto.Job` or
  :class:`~beanproto.JobRef` (job ids are per server);
* :class:`ServerState` is one server's up/down story: failed attempts in a
  row, when the next may be made (:func:`beanproto.adapter.reconnect_delay`),
  and the ``beanproto.pool`` log lines when it goes down and comes back;
* :func:`poll_pauses` are the pauses of a reserve that polls every server.

Times are whatever monotonic clock the driver passes in (``time.monotonic()``,
``anyio.current_time()``).
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeAlias

from ._errors import BrokenConnectionError, CommandError
from ._job import Job, JobRef
from .adapter import reconnect_delay

__all__ = [
    "POLL_FIRST_PAUSE",
    "POLL_MAX_PAUSE",
    "JobOrRef",
    "Placement",
    "ServerState",
    "inserted",
    "key_index",
    "locate",
    "logger",
    "poll_pauses",
    "reason",
]

#: A reserve that found no job on any server waits this long before polling again...
POLL_FIRST_PAUSE: Final = 0.01
#: ...doubling up to this (seconds).
POLL_MAX_PAUSE: Final = 0.5

#: Where pools log a server going down (WARNING) and coming back (INFO).
logger: Final = logging.getLogger("beanproto.pool")

#: What a pool's per-job methods take: a job reserved or peeked through a pool, or a ref.
JobOrRef: TypeAlias = "Job[Any] | JobRef"


def key_index(key: str | bytes, n: int) -> int:
    """The index, among ``n`` servers, of the server of ``key`` (a ``str`` is
    hashed as UTF-8): ``zlib.crc32(key) % n``.

        >>> key_index("account-42", 3)
        2
    """
    if isinstance(key, str):
        key = key.encode()
    elif not isinstance(key, bytes):
        raise TypeError(f"key must be str or bytes, not {type(key).__name__}")
    return zlib.crc32(key) % n


class Placement:
    """Which servers a put may go to, in the order to try them.

    Round-robin turns the start by one per call, so consecutive puts spread
    over the servers (one that is down is skipped by the caller, and the next
    in the order takes the put); a keyed put has one candidate only."""

    __slots__ = ("_n", "_turn")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("a pool needs at least one server")
        self._n = n
        self._turn = itertools.count()

    def candidates(self, key: str | bytes | None = None) -> list[int]:
        """Server indexes to try in turn: the key's alone, or all of them from
        the next round-robin start.

            >>> p = Placement(3)
            >>> p.candidates(), p.candidates(), p.candidates("k") == [key_index("k", 3)]
            ([0, 1, 2], [1, 2, 0], True)
        """
        n = self._n
        if key is not None:
            return [key_index(key, n)]
        start = next(self._turn) % n
        return [(start + i) % n for i in range(n)]


def locate(job_or_ref: object, servers: Sequence[str]) -> tuple[int, int]:
    """The index (in ``servers``, by name) of the server of a :class:`Job` or
    :class:`JobRef`, and its id there.

    ``TypeError`` for a bare id (ids are per server), ``ValueError`` for a job
    with no server (a plain client's) or a server not in the list."""
    if isinstance(job_or_ref, Job):
        name, id = job_or_ref.server, job_or_ref.id
    elif isinstance(job_or_ref, tuple) and len(job_or_ref) == 2:
        name, id = job_or_ref
    else:
        raise TypeError(
            "a pool needs a Job or a JobRef (job ids are per server), "
            f"not {type(job_or_ref).__name__}"
        )
    if name is None:
        raise ValueError(f"job {id} has no server: it did not come from a pool")
    try:
        return servers.index(name), id
    except ValueError:
        shown = ", ".join(servers)
        raise ValueError(f"job {id}: {name!r} is not a server of this pool ({shown})") from None


def inserted(exc: CommandError) -> bool:
    """Whether a refused batch put inserted some of its jobs on its server before
    the refusal (an id among ``exc.outcomes``): the batch must then not be sent
    to another server, which would insert those jobs twice."""
    return any(type(outcome) is int for outcome in exc.outcomes or ())


def reason(exc: BaseException) -> str:
    """An exception as a log line or a message shows it."""
    return str(exc) or type(exc).__name__


class ServerState:
    """One server of a pool: whether it is reported down, its failed attempts
    to connect in a row, and the time before which no new attempt is made."""

    __slots__ = ("down", "failures", "name", "retry_at")

    def __init__(self, name: str) -> None:
        self.name = name
        #: Reported down (a WARNING), and not yet back (an INFO).
        self.down = False
        self.failures = 0
        self.retry_at = 0.0

    def due(self, now: float) -> bool:
        """Whether an attempt to connect may be made at ``now``."""
        return now >= self.retry_at

    def connect_failed(self, now: float, exc: BaseException) -> None:
        """An attempt to connect failed: the next waits longer (0.1 s, doubling
        to 5 s). The first failure is logged as a WARNING, later ones at DEBUG."""
        self.failures += 1
        self.retry_at = now + reconnect_delay(self.failures)
        if not self.down:
            self.down = True
            logger.warning("server %s is down: %s", self.name, reason(exc))
        else:
            logger.debug("server %s: reconnecting failed: %s", self.name, reason(exc))

    def connected(self) -> None:
        """A connection was opened: attempts start over; a server that was
        down is logged as back (INFO)."""
        self.failures, self.retry_at = 0, 0.0
        if self.down:
            self.down = False
            logger.info("server %s is back", self.name)

    def broke(self, exc: BaseException) -> BrokenConnectionError:
        """The connection failed during a call (the next attempt is made at
        once); return the error that names the server."""
        if not self.down:
            self.down = True
            logger.warning("server %s went down: %s", self.name, reason(exc))
        return BrokenConnectionError(f"{self.name}: {reason(exc)}")

    def down_error(self, now: float, what: str) -> BrokenConnectionError:
        """The error of a call that needs this server while it is down."""
        wait = max(0.0, self.retry_at - now)
        return BrokenConnectionError(
            f"{self.name} is down ({what}); next attempt to connect in {wait:.2f} s"
        )


def poll_pauses() -> Iterator[float]:
    """The pauses between rounds of a reserve that polls every server:
    :data:`POLL_FIRST_PAUSE`, doubling up to :data:`POLL_MAX_PAUSE`.

        >>> import itertools
        >>> [round(p, 2) for p in itertools.islice(poll_pauses(), 8)]
        [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
    """
    pause = POLL_FIRST_PAUSE
    while True:
        yield pause
        pause = min(pause * 2, POLL_MAX_PAUSE)
