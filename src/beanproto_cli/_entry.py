"""The ``beanproto`` console script, importable without click and rich.

The console script, ``python -m beanproto_cli`` and ``python -m beanproto_sync`` all start
here, so that an installation without the ``[cli]`` extra ends with one line saying which
extra to install (exit status 1), never with a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["MISSING_EXTRA", "main", "missing_extra"]

MISSING_EXTRA = (
    "beanproto: the command-line tool needs the [cli] extra: pip install 'beanproto[cli]'"
)
"""The line printed when click or rich is not installed."""

_EXTRA_MODULES = ("click", "rich")


def missing_extra(exc: ImportError) -> bool:
    """Whether ``exc`` is the import of click or rich failing (and not some other bug)."""
    name = exc.name or ""
    return name.partition(".")[0] in _EXTRA_MODULES


def main(argv: list[str] | None = None) -> None:
    """Run the ``beanproto`` command (the console script's entry point)."""
    try:
        from ._cli import main as run
    except ImportError as exc:
        if not missing_extra(exc):
            raise
        sys.exit(MISSING_EXTRA)
    run(argv)
