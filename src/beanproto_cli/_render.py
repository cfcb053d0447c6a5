"""Turning replies into output: JSON-ready dicts, safe job bodies, rich tables, and
the plain text the tables become when standard output is not a terminal.

Kept free of I/O so tests can build every renderable (``top``'s frames included)
and render it into a string with ``rich.console.Console(file=io.StringIO())``.

Plain text (for pipes and scripts): tab-separated values, one record per line, with
no title and no decoration. ``key_value_text`` writes ``key<TAB>value`` lines (the
server's key names); ``tubes_text`` writes a header line then one line per tube.
A value never holds a tab or a newline (tube names cannot, and beanstalkd's stats
values are single tokens or short strings).

Several servers (``tubes``, ``stats`` and ``top`` given a list of addresses): the
tubes table gets a ``server`` first column; after each server's tubes a row with
``*`` as the tube sums its tubes, then ``total`` rows sum each tube over the
servers, and ``total``/``*`` is the grand total (``*`` is no tube name, and
``total`` no address as shown). ``stats`` becomes one column per server and a
``total`` column summing the counters (``current-*``, ``cmd-*``, ``total-*``,
``job-timeouts``). A server that could not be read is ``None``: ``-`` in its cells.
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
    "ALL_TUBES",
    "TOTAL",
    "TUBE_COLUMNS",
    "body_json",
    "body_text",
    "key_value_table",
    "key_value_text",
    "servers_stats_rows",
    "servers_stats_table",
    "servers_stats_text",
    "servers_top_frame",
    "servers_tube_rows",
    "servers_tubes_table",
    "servers_tubes_text",
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


#: The ``server`` cell of the rows summed over the servers.
TOTAL = "total"
#: The ``tube`` cell of the rows summed over a server's tubes.
ALL_TUBES = "*"


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


# -- several servers -------------------------------------------------------------------------

#: The summed columns of the tubes table (every column but ``paused``).
_COUNTED: tuple[str, ...] = tuple(attr for title, attr in TUBE_COLUMNS if title != "paused")


def servers_tube_rows(servers: Sequence[tuple[str, Sequence[TubeStats] | None]]) -> list[list[str]]:
    """The tubes table of several servers: ``server, tube, urgent, ..., paused`` rows.

    Per server (in the order given) its tubes, then its ``*`` row (the sum of its
    tubes); then the ``total`` rows: each tube summed over the servers, by name,
    then ``total``/``*``. A server given as ``None`` (down) is one ``*`` row of ``-``.
    Sums leave ``paused`` blank.
    """
    rows: list[list[str]] = []
    per_tube: dict[str, list[int]] = {}
    grand = [0] * len(_COUNTED)
    for shown, tubes in servers:
        if tubes is None:
            rows.append([shown, ALL_TUBES, *["-"] * len(TUBE_COLUMNS)])
            continue
        server_sum = [0] * len(_COUNTED)
        for stats in tubes:
            rows.append([shown, *tube_row(stats)])
            sums = per_tube.setdefault(stats.name, [0] * len(_COUNTED))
            for i, attr in enumerate(_COUNTED):
                value: int = getattr(stats, attr)
                sums[i] += value
                server_sum[i] += value
                grand[i] += value
        rows.append([shown, ALL_TUBES, *map(str, server_sum), ""])
    for name in sorted(per_tube):
        rows.append([TOTAL, name, *map(str, per_tube[name]), ""])
    rows.append([TOTAL, ALL_TUBES, *map(str, grand), ""])
    return rows


_TUBES_HEADER: tuple[str, ...] = ("server", "tube", *(name for name, _ in TUBE_COLUMNS))


def servers_tubes_text(servers: Sequence[tuple[str, Sequence[TubeStats] | None]]) -> str:
    """:func:`servers_tube_rows` as tab-separated lines, after a header line."""
    lines = ["\t".join(_TUBES_HEADER)]
    lines += ["\t".join(_clean(c) for c in row) for row in servers_tube_rows(servers)]
    return "\n".join(lines) + "\n"


def servers_tubes_table(servers: Sequence[tuple[str, Sequence[TubeStats] | None]]) -> Table:
    """:func:`servers_tube_rows` as a table: a line after each server, sums in bold,
    a server that is down in red."""
    table = Table(header_style="bold")
    table.add_column("server", overflow="fold")
    table.add_column("tube", overflow="fold")
    for name, _ in TUBE_COLUMNS:
        table.add_column(name, justify="right")
    rows = servers_tube_rows(servers)
    for i, row in enumerate(rows):
        following = rows[i + 1][0] if i + 1 < len(rows) else None
        style = "red" if row[2] == "-" else "bold" if ALL_TUBES in row[:2] else None
        table.add_row(*(Text(c) for c in row), style=style, end_section=following != row[0])
    return table


def _summable(key: str) -> bool:
    return key.startswith(("current-", "cmd-", "total-")) or key == "job-timeouts"


def servers_stats_rows(
    servers: Sequence[tuple[str, ServerStats | None]],
) -> list[list[str]]:
    """The stats of several servers: a header row ``key, <server>..., total``, then one
    row per key (every server's keys, in order). A server that is down (``None``)
    shows ``-``; ``total`` sums the counters of the others and is blank for the
    other keys (``pid``, ``version``, ``uptime``...)."""
    dicts = [(shown, None if stats is None else stats_dict(stats)) for shown, stats in servers]
    keys: dict[str, None] = {
        f.name.replace("_", "-"): None for f in dataclasses.fields(ServerStats) if f.name != "extra"
    }
    for _, values in dicts:
        keys.update(dict.fromkeys(values or ()))
    rows = [["key", *(shown for shown, _ in dicts), TOTAL]]
    for key in keys:
        cells = [key]
        total: int | None = 0 if _summable(key) else None
        for _, values in dicts:
            value = None if values is None else values.get(key)
            cells.append(_cell(value))
            if values is not None and total is not None:
                if isinstance(value, int) and not isinstance(value, bool):
                    total += value
                else:
                    total = None
        cells.append("" if total is None else str(total))
        rows.append(cells)
    return rows


def servers_stats_text(servers: Sequence[tuple[str, ServerStats | None]]) -> str:
    """:func:`servers_stats_rows` as tab-separated lines (the first is the header)."""
    rows = servers_stats_rows(servers)
    return "".join("\t".join(_clean(c) for c in row) + "\n" for row in rows)


def servers_stats_table(servers: Sequence[tuple[str, ServerStats | None]], title: str) -> Table:
    """:func:`servers_stats_rows` as a table, one column per server, then ``total``."""
    header, *rows = servers_stats_rows(servers)
    table = Table(title=Text(title), header_style="bold")
    table.add_column(header[0])
    for name in header[1:]:
        table.add_column(name, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    return table


def servers_top_frame(
    summaries: Sequence[str], servers: Sequence[tuple[str, Sequence[TubeStats] | None]]
) -> RenderableType:
    """One frame of ``top`` over several servers: one summary line per server (see
    :func:`top_summary`; a server that is down says so), then the tubes of them all."""
    return Group(Text("\n".join(summaries)), servers_tubes_table(servers))
