"""beanproto_anyio: an async beanstalkd client over anyio streams (asyncio and trio),
driving the :mod:`beanproto` core.

    >>> import anyio, beanproto_anyio
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with beanproto_anyio.connect(("127.0.0.1", 11300), use="emails") as c:
    ...         job_id = await c.put(b"hello", priority=10, ttr=30)
    >>> anyio.run(main)  # doctest: +SKIP

One :class:`Client` may be shared by many tasks: calls never interleave on the
wire, and commands that do not block are pipelined. A waiting ``reserve`` holds
the connection (the server reads nothing else meanwhile), so use separate
clients for producing and for consuming. Its methods are those of
:class:`beanproto_sync.Client`, as coroutines. The errors are :mod:`beanproto`'s,
re-exported here.

:class:`Worker` runs handlers for the jobs of some tubes, in tasks, each with
a connection of its own; a handler raises :class:`RetryJob` or :class:`BuryJob`
to choose how its job ends.
"""

from beanproto import (
    BrokenConnectionError,
    BuriedError,
    CommandError,
    DeadlineSoonError,
    DrainingError,
    Error,
    Job,
    JobStats,
    JobTooBigError,
    NotFoundError,
    NotIgnoredError,
    ServerStats,
    TimedOutError,
    TubeStats,
)
from beanproto.worker import BuryJob, RetryJob

from ._client import Address, Client, connect
from ._worker import Worker

__all__ = [
    "Address",
    "BrokenConnectionError",
    "BuriedError",
    "BuryJob",
    "Client",
    "CommandError",
    "DeadlineSoonError",
    "DrainingError",
    "Error",
    "Job",
    "JobStats",
    "JobTooBigError",
    "NotFoundError",
    "NotIgnoredError",
    "RetryJob",
    "ServerStats",
    "TimedOutError",
    "TubeStats",
    "Worker",
    "connect",
]
