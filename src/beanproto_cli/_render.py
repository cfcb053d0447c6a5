"""Turning replies into output: JSON-ready dicts, safe job bodies, rich tables, and
the plain text the tables become when standard output is not a terminal.

Kept free of I/O so tests can build every renderable (``top``'s frames included)
and render it into a string with ``rich.console.Console(file=io.StringIO())``.

Plain text (for pipes and scripts): tab-separated values, one record per line, with
no title and no decoration. ``key_value_text`` writes ``key<TAB>value`` lines (the
server's key names); ``tubes_text`` writes a header line then one line per tube.
A value never holds a tab or a newline (tube names cannot, and beanstalkd's stats
values are single tokens or short strings).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from beanproto import JobStats, ServerStats, TubeStats

__all__ = [
    "TUBE_COLUMNS",
    "body_json",
    "body_text",
    "key_value_table",
    "key_value_text",
    "stats_dict",
    "top_frame",
    "top_summary",
    "tube_row",
    "tubes_table",
    "tubes_text",
]

#: The ``tubes`` table: column title -> ``TubeStats`` attribute.
TUBE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("urgent", "current_jobs_urgent"),
    ("ready", "current_jobs_ready"),
    ("reserved", "current_jobs_reserved"),
    ("delayed", "current_jobs_delayed"),
    ("buried", "current_jobs_buried"),
    ("waiting", "current_waiting"),
    ("paused", "pause_time_left"),
)


def stats_dict(stats: ServerStats | TubeStats | JobStats) -> dict[str, Any]:
    """Every key as the server spells it (``current-jobs-ready``), in the server's order
    of the known keys, then the keys beanproto does not know (``extra``, raw strings).

    A key an older server does not send is ``null``, so the set of keys is stable.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(stats):
        if f.name != "extra":
            out[f.name.replace("_", "-")] = getattr(stats, f.name)
    for key, value in stats.extra.items():
        out.setdefault(key, value)
    return out


def _printable(text: str, *, multiline: bool) -> bool:
    allowed = "\n\t" if multiline else "\t"
    return all(c.isprintable() or c in allowed for c in text)


def body_text(body: bytes, *, multiline: bool = True) -> str:
    """A job body made safe for a terminal.

    The body itself when it decodes as UTF-8 and is printable (newlines allowed when
    ``multiline``); otherwise an escaped, ``repr``-style form: ``'...'`` for text with
    control characters, ``b'...'`` for bytes that are not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return repr(body)
    if _printable(text, multiline=multiline):
        return text
    return repr(text)


def body_json(job_id: int, body: bytes) -> dict[str, Any]:
    """A job for ``--json``: ``body`` is the text when UTF-8 (else ``null``), and
    ``body_base64`` always holds the exact bytes."""
    try:
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "id": job_id,
        "size": len(body),
        "body": text,
        "body_base64": base64.b64encode(body).decode("ascii"),
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def key_value_table(stats: ServerStats | TubeStats | JobStats, title: str) -> Table:
    """Two columns, one row per key as the server spells it (``current-jobs-ready``)."""
    table = Table(title=Text(title), show_header=True, header_style="bold")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in stats_dict(stats).items():
        table.add_row(key, Text(_cell(value)))
    return table


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def key_value_text(stats: ServerStats | TubeStats | JobStats) -> str:
    """``key<TAB>value`` lines (the server's key names; ``-`` for a missing value)."""
    return "".join(f"{key}\t{_clean(_cell(value))}\n" for key, value in stats_dict(stats).items())


def tubes_text(tubes: Sequence[TubeStats]) -> str:
    """The tubes table as tab-separated lines: a header, then one line per tube."""
    lines = ["\t".join(["tube", *(name for name, _ in TUBE_COLUMNS)])]
    lines += ["\t".join(_clean(cell) for cell in tube_row(stats)) for stats in tubes]
    return "\n".join(lines) + "\n"


def tube_row(stats: TubeStats) -> list[str]:
    """One row of the tubes table: the name, then the :data:`TUBE_COLUMNS` counts;
    ``paused`` is the pause time left in seconds, blank when the tube is not paused."""
    row = [stats.name]
    for title, attr in TUBE_COLUMNS:
        if title == "paused":
            row.append(f"{stats.pause_time_left}s" if stats.pause else "")
        else:
            row.append(str(getattr(stats, attr)))
    return row


def tubes_table(tubes: Sequence[TubeStats], title: str | None = None) -> Table:
    """The tubes table, one row per tube, in the order given."""
    table = Table(title=None if title is None else Text(title), header_style="bold")
    table.add_column("tube", overflow="fold")
    for name, _ in TUBE_COLUMNS:
        table.add_column(name, justify="right")
    for stats in tubes:
        table.add_row(*(Text(cell) for cell in tube_row(stats)))
    return table


def _rate(now: int, before: int, elapsed: float) -> str:
    if elapsed <= 0:
        return "-"
    return f"{(now - before) / elapsed:.1f}/s"


def top_frame(
    server: ServerStats,
    tubes: Sequence[TubeStats],
    *,
    address: str,
    previous: ServerStats | None = None,
    elapsed: float = 0.0,
) -> RenderableType:
    """One frame of ``top``: a summary line of the server, then the tubes table.

    With the ``previous`` frame's server stats and the seconds ``elapsed`` since, the
    summary shows put/reserve/delete rates; the first frame shows ``-``.
    """
    summary = top_summary(server, address=address, previous=previous, elapsed=elapsed)
    return Group(Text(summary), tubes_table(tubes))


def top_summary(
    server: ServerStats,
    *,
    address: str,
    previous: ServerStats | None = None,
    elapsed: float = 0.0,
) -> str:
    """The summary line of a ``top`` frame (see :func:`top_frame`)."""
    if previous is None:
        rates = "put - reserve - delete -"
    else:
        reserves = server.cmd_reserve + server.cmd_reserve_with_timeout
        reserves_before = previous.cmd_reserve + previous.cmd_reserve_with_timeout
        rates = (
            f"put {_rate(server.cmd_put, previous.cmd_put, elapsed)} "
            f"reserve {_rate(reserves, reserves_before, elapsed)} "
            f"delete {_rate(server.cmd_delete, previous.cmd_delete, elapsed)}"
        )
    return (
        f"beanstalkd {server.version} at {address}  up {server.uptime}s  "
        f"connections {server.current_connections}  jobs {server.current_jobs_ready} ready "
        f"{server.current_jobs_reserved} reserved {server.current_jobs_delayed} delayed "
        f"{server.current_jobs_buried} buried  {rates}"
    )
