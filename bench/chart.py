"""Render the benchmarks' ratio columns as SVG bar charts, for the docs.

Reads the markdown tables the benchmarks print (saved as ``bench/results/*.md``)
and writes one horizontal bar chart per ratio column (a column whose header
starts with a multiplication sign or ``x``, e.g. ``x baseline``) into ``docs/bench/``,
named ``<results file>-<column>.svg``. Pure Python: no plotting library.

    python bench/parser.py --reps 3 > bench/results/parser.md
    python bench/sync.py --reps 3 > bench/results/sync.md
    python bench/anyio_bench.py --reps 3 > bench/results/anyio.md
    python bench/chart.py            # writes docs/bench/*.svg
    python bench/chart.py --check    # exit 1 if a chart is missing or stale

Rows are grouped by their label columns (all but the last, e.g. backend and
phase); each bar is one client, with its ratio written at its end and a line at
1.0 (as fast as the reference).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMES = "\u00d7"  # the multiplication sign the benchmarks print after ratios
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+\s*[x\u00d7]?$")
_MISSING = {"—", "-", ""}

# Layout, in pixels.
_WIDTH = 760
_ROW = 22
_GROUP_GAP = 14
_TOP = 58
_BOTTOM = 50
_CHAR = 7.0  # average width of a 12 px sans-serif character, for the label margin


@dataclass
class Table:
    """One markdown table and the line that introduced it."""

    title: str
    header: list[str]
    rows: list[list[str]]


def parse_tables(text: str) -> list[Table]:
    """Every pipe table in ``text``, with the nearest non-table line above it as title."""
    tables: list[Table] = []
    title = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            header = _cells(line)
            rows: list[list[str]] = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i].strip()))
                i += 1
            tables.append(Table(title, header, rows))
            continue
        if line:
            title = line.lstrip("#").strip()
        i += 1
    return tables


def _is_rule(line: str) -> bool:
    cells = _cells(line.strip())
    return bool(cells) and all(re.fullmatch(r":?-+:?", c) for c in cells)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _number(cell: str) -> float | None:
    cell = cell.strip()
    if cell in _MISSING or not _NUMBER.match(cell):
        return None
    return float(cell.rstrip(TIMES + "x ").replace(",", ""))


def is_ratio(header: str) -> bool:
    """A ratio column: its header starts with the multiplication sign or ``x``."""
    h = header.strip().lower()
    return h.startswith(TIMES) or h.startswith("x ")


def _numeric(table: Table, col: int) -> bool:
    cells = [r[col] for r in table.rows if col < len(r)]
    return all(c.strip() in _MISSING or _number(c) is not None for c in cells)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace(TIMES, "")).strip("-")


def _colour(client: str) -> str:
    if client.startswith("beanproto"):
        return "#2e7d32"  # ours
    if client.startswith("raw") or client == "baseline":
        return "#9e9e9e"  # the hand-written floor
    return "#1565c0"  # the alternatives (greenstalk, aiostalk)


def render(table: Table, col: int, source: str) -> str:
    """An SVG bar chart of ratio column ``col`` of ``table``."""
    labels = [c for c in range(len(table.header)) if not _numeric(table, c)]
    group_cols, bar_col = labels[:-1], labels[-1]
    groups: list[tuple[str, list[tuple[str, float]]]] = []
    for row in table.rows:
        value = _number(row[col])
        if value is None:
            continue
        key = " · ".join(row[c] for c in group_cols)
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append((row[bar_col], value))
    reference = table.header[col].lstrip(TIMES + "x ").strip()
    top = max(max(v for _, v in bars) for _, bars in groups)
    scale_max = max(1.0, top) * 1.12
    longest = max(len(name) for _, bars in groups for name, _ in bars)
    left = int(24 + _CHAR * longest)
    plot = _WIDTH - left - 60
    height = _TOP + _BOTTOM + sum(_GROUP_GAP + _ROW * (len(bars) + (1 if key else 0))
                                  for key, bars in groups)  # fmt: skip

    def x(value: float) -> float:
        return left + plot * value / scale_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="-apple-system, Segoe UI, Helvetica, '
        f'Arial, sans-serif" font-size="12" role="img">',
        f"<title>{escape(table.title)}: ops/s relative to {escape(reference)}</title>",
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="22" font-size="14" font-weight="bold">'
        f"ops/s relative to {escape(reference)} (1.0 = as fast; higher is better)</text>",
        f'<text x="12" y="40" fill="#555555">{escape(table.title)}</text>',
    ]
    y = _TOP
    for key, bars in groups:
        y += _GROUP_GAP
        if key:
            out.append(
                f'<text x="12" y="{y + 15}" font-weight="bold" fill="#333333">{escape(key)}</text>'
            )
            y += _ROW
        for name, value in bars:
            out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>')
            out.append(
                f'<rect x="{left}" y="{y + 3}" width="{x(value) - left:.1f}" height="{_ROW - 6}" '
                f'fill="{_colour(name)}"/>'
            )
            out.append(f'<text x="{x(value) + 5:.1f}" y="{y + 15}">{value:.2f}{TIMES}</text>')
            y += _ROW
    one = x(1.0)
    out.append(
        f'<line x1="{one:.1f}" y1="{_TOP}" x2="{one:.1f}" y2="{y + 6}" stroke="#c62828" '
        f'stroke-dasharray="4 3"/>'
    )
    out.append(f'<text x="{one:.1f}" y="{y + 22}" text-anchor="middle" fill="#c62828">1.0</text>')
    legend_x = 12
    for colour, what in (("#2e7d32", "beanproto"), ("#1565c0", "alternative"),
                         ("#9e9e9e", "hand-written baseline")):  # fmt: skip
        out.append(
            f'<rect x="{legend_x}" y="{height - 16}" width="10" height="10" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{legend_x + 14}" y="{height - 7}" font-size="10">{escape(what)}</text>'
        )
        legend_x += 24 + int(6 * len(what))
    out.append(
        f'<text x="{_WIDTH - 8}" y="{height - 6}" text-anchor="end" fill="#888888" '
        f'font-size="10">generated by bench/chart.py from {escape(source)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def charts(results: Path) -> dict[str, str]:
    """Every chart for every ``*.md`` in ``results``: file name -> SVG text."""
    out: dict[str, str] = {}
    for path in sorted(results.glob("*.md")):
        tables = parse_tables(path.read_text(encoding="utf-8"))
        for n, table in enumerate(tables):
            for col, header in enumerate(table.header):
                if not is_ratio(header):
                    continue
                suffix = f"-{n + 1}" if len(tables) > 1 else ""
                name = f"{path.stem}{suffix}-{_slug(header.lstrip(TIMES + 'x '))}.svg"
                out[name] = render(table, col, f"bench/results/{path.name}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a chart is stale"
    )
    args = parser.parse_args(argv)
    rendered = charts(args.results)
    if not rendered:
        print(f"no ratio columns in {args.results}/*.md", file=sys.stderr)
        return 1
    stale = []
    for name, svg in rendered.items():
        target = args.out / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == svg:
            continue
        stale.append(name)
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            target.write_text(svg, encoding="utf-8")
    verb = "stale" if args.check else "wrote"
    for name in stale:
        print(f"{verb}: {args.out / name}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
