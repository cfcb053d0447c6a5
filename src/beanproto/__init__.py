"""beanproto: a sans-IO beanstalkd client protocol.

Commands in, bytes out; bytes in, typed events out. No sockets, no event loop,
no dependencies: :class:`Connection` is the whole engine, and the blocking
(``beanproto_sync``) and async (``beanproto_anyio``) clients are thin drivers of it.
What those drivers share beyond it (a reply into a ``Job``, the outcomes of a
pipelined batch, ...) is the public module :mod:`beanproto.adapter`, for any other
driver too.

    >>> import beanproto as bp
    >>> conn = bp.Connection()
    >>> conn.send(bp.Put(b"hello", priority=10))
    b'put 10 0 60 5\\r\\nhello\\r\\n'
    >>> conn.receive_data(b"INSERTED 5\\r\\n")
    >>> conn.next_event()
    Inserted(id=5)
    >>> conn.next_event()
    NEED_DATA
"""

from importlib.metadata import PackageNotFoundError, version
from types import FunctionType

from . import _commands, _connection, _errors, _events, _job
from ._commands import *  # noqa: F403
from ._connection import *  # noqa: F403
from ._errors import *  # noqa: F403
from ._events import *  # noqa: F403
from ._job import *  # noqa: F403
from ._replies import REPLIES, Reply
from ._stats import JobStats, ServerStats, TubeStats

try:
    __version__ = version("beanproto")
    """The version of the beanproto distribution."""
except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    *_commands.__all__,
    *_connection.__all__,
    *_errors.__all__,
    *_events.__all__,
    *_job.__all__,
    "REPLIES",
    "JobStats",
    "Reply",
    "ServerStats",
    "TubeStats",
    "__version__",
]

# Name the public path, not the private module, in IDE hovers, reprs and tracebacks
# (beanproto.Job, not beanproto._job.Job), as trio does; pickle finds each class there too.
# Only what a private module defines is renamed (not beanproto.adapter's or .worker's).
for _obj in [globals()[_name] for _name in __all__]:
    if isinstance(_obj, (type, FunctionType)) and _obj.__module__.startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _obj
