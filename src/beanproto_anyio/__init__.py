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

from types import FunctionType

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

try:
    from ._client import Address, Client, connect
    from ._pool import Pool
    from ._worker import Worker
except ModuleNotFoundError as exc:
    if exc.name != "anyio":
        raise
    raise ModuleNotFoundError(
        "beanproto_anyio needs anyio: pip install 'beanproto[anyio]' (or 'beanproto[trio]')",
        name="anyio",
    ) from None

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
    "Pool",
    "RetryJob",
    "ServerStats",
    "TimedOutError",
    "TubeStats",
    "Worker",
    "connect",
]

# Name the public path, not the private module, in IDE hovers, reprs and tracebacks
# (beanproto_anyio.Client, not beanproto_anyio._client.Client), as trio does; pickle
# finds each class there too. Only what beanproto_anyio's private modules define is
# renamed (not the errors, which are beanproto's).
for _obj in [globals()[_name] for _name in __all__]:
    if isinstance(_obj, (type, FunctionType)) and _obj.__module__.startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _obj
