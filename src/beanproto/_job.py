"""The job type the adapters hand to their callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from ._slots import slot_setter

__all__ = ["Job", "JobRef"]

BodyT = TypeVar("BodyT", bytes, str)


@dataclass(frozen=True, slots=True, init=False)
class Job(Generic[BodyT]):
    """A job: its id and its body (``bytes``; ``str`` from a client with an encoding;
    whatever its ``loads`` returns from a client with a serializer).

    ``server`` names the server the job came from (as
    :func:`beanproto.address.describe` writes it) when a pool or a worker
    reserved it, so that its ``delete``/``release``/``bury``/
    ``touch`` go back there; ``None`` from a plain client. Job ids are per
    server: two servers may each have a job 7.

    The body is left out of the ``repr`` so that logs do not leak job contents.
    """

    id: int
    body: BodyT
    server: str | None

    # By hand, through the slots: a worker builds one per job, and the generated
    # frozen __init__ goes through object.__setattr__ per field.
    def __init__(self, id: int, body: BodyT, server: str | None = None) -> None:
        _set_id(self, id)
        _set_body(self, body)
        _set_server(self, server)

    def __repr__(self) -> str:
        body = self.body
        kind = type(body).__name__
        where = "" if self.server is None else f", server={self.server!r}"
        if isinstance(body, (bytes, str)):
            return f"Job(id={self.id}, body=<{len(body)} {kind}>{where})"
        return f"Job(id={self.id}, body=<{kind}>{where})"  # what a serializer's loads made

    @property
    def ref(self) -> JobRef:
        """The job's :class:`JobRef`: its server and its id."""
        return JobRef(self.server, self.id)


class JobRef(NamedTuple):
    """Where a job is: the server (as :func:`beanproto.address.describe` writes
    it; ``None`` for a plain client's) and its id there. A pool's ``put`` returns
    one, and its ``delete``/``stats_job``/... take one (or a :class:`Job`)::

        server, job_id = pool.put(b"hello")
    """

    server: str | None
    id: int


_set_id = slot_setter(Job, "id")
_set_body = slot_setter(Job, "body")
_set_server = slot_setter(Job, "server")
