"""beanproto_sync: a blocking beanstalkd client over ``socket``, driving the
:mod:`beanproto` core.

    >>> from beanproto_sync import Client
    >>> with Client(("127.0.0.1", 11300), use="emails", watch="emails") as c:  # doctest: +SKIP
    ...     job_id = c.put(b"hello", priority=10, ttr=30)
    ...     job = c.reserve(timeout=5)
    ...     c.delete(job)

A :class:`Client` may be shared by threads: their calls take turns. Use separate
clients for producing and for a blocking ``reserve`` (the server reads nothing
else from a connection whose reserve is waiting, so neither can the client). The
errors are :mod:`beanproto`'s, re-exported here.
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

from ._client import Client
from ._transport import Address, ConcurrentUseError

__all__ = [
    "Address",
    "BrokenConnectionError",
    "BuriedError",
    "Client",
    "CommandError",
    "ConcurrentUseError",
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
]
