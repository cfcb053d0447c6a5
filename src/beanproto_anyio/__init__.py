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

from ._client import Address, Client, connect

__all__ = [
    "Address",
    "BrokenConnectionError",
    "BuriedError",
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
    "ServerStats",
    "TimedOutError",
    "TubeStats",
    "connect",
]
