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
errors are :mod:`beanproto`'s, re-exported here. :class:`Worker` runs handlers on
reserved jobs in threads (with :class:`RetryJob` and :class:`BuryJob` for handlers).
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

from ._client import Client
from ._pool import Pool
from ._transport import Address, ConcurrentUseError
from ._worker import Worker

__all__ = [
    "Address",
    "BrokenConnectionError",
    "BuriedError",
    "BuryJob",
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
    "Pool",
    "RetryJob",
    "ServerStats",
    "TimedOutError",
    "TubeStats",
    "Worker",
]

# Name the public path, not the private module, in IDE hovers, reprs and tracebacks
# (beanproto_sync.Client, not beanproto_sync._client.Client), as trio does; pickle
# finds each class there too. Only what beanproto_sync's private modules define is
# renamed (not the errors, which are beanproto's).
for _obj in [globals()[_name] for _name in __all__]:
    if isinstance(_obj, (type, FunctionType)) and _obj.__module__.startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _obj
