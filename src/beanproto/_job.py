"""The job type the adapters hand to their callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Job"]

BodyT = TypeVar("BodyT", bytes, str)


@dataclass(frozen=True, slots=True)
class Job(Generic[BodyT]):
    """A job: its id and its body (``bytes``, or ``str`` from a client with an encoding).

    The body is left out of the ``repr`` so that logs do not leak job contents.
    """

    id: int
    body: BodyT

    def __repr__(self) -> str:
        return f"Job(id={self.id}, body=<{len(self.body)} {type(self.body).__name__}>)"
