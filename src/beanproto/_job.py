"""The job type the adapters hand to their callers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Job"]

BodyT = TypeVar("BodyT", bytes, str)


@dataclass(frozen=True, slots=True, init=False)
class Job(Generic[BodyT]):
    """A job: its id and its body (``bytes``; ``str`` from a client with an encoding;
    whatever its ``loads`` returns from a client with a serializer).

    The body is left out of the ``repr`` so that logs do not leak job contents.
    """

    id: int
    body: BodyT

    # By hand, through the slots: a worker builds one per job, and the generated
    # frozen __init__ goes through object.__setattr__ per field.
    def __init__(self, id: int, body: BodyT) -> None:
        _set_id(self, id)
        _set_body(self, body)

    def __repr__(self) -> str:
        body = self.body
        kind = type(body).__name__
        if isinstance(body, (bytes, str)):
            return f"Job(id={self.id}, body=<{len(body)} {kind}>)"
        return f"Job(id={self.id}, body=<{kind}>)"  # what a serializer's loads made


def _slot_setter(field: str) -> Callable[[object, object], None]:
    setter: Callable[[object, object], None] = getattr(Job, field).__set__
    return setter


_set_id = _slot_setter("id")
_set_body = _slot_setter("body")
