"""How the hand-written constructors of frozen, slotted dataclasses set their fields."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["slot_setter"]


def slot_setter(cls: type, field: str) -> Callable[[object, object], None]:
    """The ``__set__`` of a slotted class's field: what a hand-written ``__init__`` of
    a frozen dataclass uses to set it (the generated one goes through
    ``object.__setattr__`` for every field), for the classes built once per reply or
    per job."""
    setter: Callable[[object, object], None] = getattr(cls, field).__set__
    return setter
