"""The demo's handlers, run by ``beanproto worker`` processes (examples/demo.py).

Each handled job is recorded as a line ``<job number> <time>`` in a file of its
own process under ``$DEMO_DIR``, so the demo can check afterwards that every
job was handled exactly once, and by whom.
"""

from __future__ import annotations

import os
import time

import beanproto

_fd: int | None = None


def _record(job: beanproto.Job[bytes]) -> None:
    global _fd
    if _fd is None:
        path = os.path.join(os.environ["DEMO_DIR"], f"handled-{os.getpid()}.log")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    number = job.body.split(b" ")[1]
    # One os.write of a short line on an O_APPEND file: threads never interleave lines.
    os.write(_fd, b"%s %.6f\n" % (number, time.time()))


def record(job: beanproto.Job[bytes]) -> None:
    """A plain function: ``beanproto worker`` runs it on the sync backend, in threads."""
    _record(job)


async def record_async(job: beanproto.Job[bytes]) -> None:
    """An ``async def``: run on asyncio, or on trio with ``--backend trio``."""
    _record(job)
