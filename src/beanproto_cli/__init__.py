"""beanproto_cli: the ``beanproto`` command-line tool for operators of a beanstalkd server.

Built on the blocking client :mod:`beanproto_sync`, with click and rich (the
``[cli]`` extra). Run ``beanproto --help``, ``python -m beanproto_cli`` or
``python -m beanproto_sync``.
"""

from ._entry import main, missing_extra

try:
    from ._address import AddressError, describe, parse_address
    from ._cli import cli
    from ._render import body_json, body_text, stats_dict, top_frame, tubes_table
except ImportError as _exc:  # pragma: no cover - tests/test_packaging.py, without the extra
    # Without click or rich only main() is here: it says which extra to install.
    if not missing_extra(_exc):
        raise

__all__ = [
    "AddressError",
    "body_json",
    "body_text",
    "cli",
    "describe",
    "main",
    "parse_address",
    "stats_dict",
    "top_frame",
    "tubes_table",
]
