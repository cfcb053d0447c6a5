"""The documentation's code runs, so the docs cannot rot.

Every fenced ````` ```python ````` block of the pages in ``PYTHON_PAGES`` is executed, in
order, in one namespace per page (later blocks may use what earlier ones defined), against
a private beanstalkd started for that page, with the server's address in place of the
placeholder ``("127.0.0.1", 11300)``. Blocks fenced as ````` ```py ````` are illustrations
that are not run (e.g. greenstalk code). The ````` ```sh ````` blocks of the CLI page run
in bash, in order, against their own fresh server (so job ids are the ones the page
shows), with ``127.0.0.1:11300`` replaced by its address and ``pip`` lines left out.

Also: every CLI command has an example, every page is in the nav, and the benchmark
charts match the saved benchmark output (``bench/chart.py --check``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from conftest import Server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLACEHOLDER = '("127.0.0.1", 11300)'
PLACEHOLDER_SH = "127.0.0.1:11300"

PYTHON_PAGES = [
    "index.md",
    "sync.md",
    "anyio.md",
    "embedding.md",
    "cancellation.md",
    "errors.md",
    "versions.md",
    "greenstalk.md",
    "workers.md",
    "many-servers.md",
    "../README.md",
]

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def code_blocks(page: str, language: str) -> list[tuple[int, str]]:
    """The ``language`` blocks of ``docs/<page>``: (line of the fence, code)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1) == language
    ]


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run(
    page: str, fresh_server: Callable[..., Server], capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = code_blocks(page, "python")
    assert blocks, f"docs/{page} has no python block"
    address = repr(fresh_server().address)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for line, code in blocks:
        code = code.replace(PLACEHOLDER, address)
        exec(compile(code, f"docs/{page}:{line}", "exec"), namespace)


def test_cli_examples_run(fresh_server: Callable[..., Server], tmp_path: Path) -> None:
    blocks = code_blocks("cli.md", "sh")
    assert blocks
    host, port = fresh_server().address
    script = "\n".join(
        f"# docs/cli.md:{line}\n{code}" for line, code in blocks if code.strip()
    ).replace(PLACEHOLDER_SH, f"{host}:{port}")
    script = "\n".join(line for line in script.splitlines() if not line.startswith("pip "))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BEANSTALKD_URL": f"beanstalk://{host}:{port}",
        "COLUMNS": "120",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Several servers, one of them down: shown, and exit status 2.
    assert f"{host}:{port}\t*\t0\t0\t0\t0\t0\t0\t\n127.0.0.1:1\t*\t-\t" in out
    assert "Error: cannot connect to 127.0.0.1:1: Connection refused" in result.stderr
    assert "total\t*\t0\t0\t0\t0\t0\t0\t\nexit status 2\n" in out
    # The ids and bodies the page promises.
    assert "1\n2\n3\n4\n5\n6\n" in out
    assert "job 1 (5 bytes)\nhello" in out
    assert "'\\x00\\x01binary'" in out
    assert "1\thello\n3\ta\n" in out
    assert "Error: job 999 not found" in result.stderr and "exit status 1" in out
    assert "unpaused tube 'emails'\n" in out
    # Operating: bury, kick --all-tubes, flush --state, dump, restore.
    assert "12\n13\n14\nburied 2 job(s) in tube 'reports'\n" in out
    assert "kicked 2 job(s) in tube 'reports'\nkicked 2 job(s) in all tubes\n" in out
    assert "buried 3 job(s) in tube 'reports'\n15\n" in out
    assert "tube 'reports' has no ready jobs\n" in out
    assert '{"id": 12, "tube": "reports", "state": "buried", "priority": 65536, ' in out
    assert "restored 4 job(s)\n  tube 'reports': 0 ready, 1 delayed, 3 buried\n" in out
    assert '{"id": 19, "tube": "reports", "state": "delayed", "priority": 5, ' in out
    assert "dumped 4 job(s)" in result.stderr
    assert "HELLO WORKER\n" in out
    assert "tubes shouts, backend sync, concurrency 1, burst" in result.stderr
    assert "shout has no attribute 'nothing'" in result.stderr and "exit status 2" in out


def test_every_cli_command_has_an_example() -> None:
    from beanproto_cli import cli

    text = "\n".join(code for _, code in code_blocks("cli.md", "sh"))
    missing = [name for name in cli.commands if not re.search(rf"^beanproto {name}\b", text, re.M)]
    assert not missing, f"docs/cli.md has no example for: {missing}"


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert pages
    assert [p for p in pages if f" {p}" not in nav] == []


def _chart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_chart", ROOT / "bench" / "chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chart"] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_charts_match_the_saved_results(capsys: pytest.CaptureFixture[str]) -> None:
    chart = _chart()
    code = chart.main(["--check"])
    assert code == 0, f"run: python bench/chart.py\n{capsys.readouterr().out}"
    for svg in chart.charts(ROOT / "bench" / "results"):
        assert f"(bench/{svg})" in (DOCS / "benchmarks.md").read_text(encoding="utf-8")


def test_chart_reads_benchmark_tables(tmp_path: Path) -> None:
    chart = _chart()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "demo.md").write_text(
        "Some run\n\n"
        "| phase | client | ops/s | \u00d7 raw |\n|---|---|--:|--:|\n"
        "| put | raw | 100 | 1.00\u00d7 |\n| put | beanproto | 1,500 | 1.50\u00d7 |\n"
        "| get | raw | 10 | \u2014 |\n",
        encoding="utf-8",
    )
    out = tmp_path / "svg"
    assert chart.main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    svg = (out / "demo-raw.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert ">put</text>" in svg and ">beanproto</text>" in svg and "1.50\u00d7" in svg
    assert ">get</text>" not in svg  # no value, no bar
    assert chart.main(["--results", str(tmp_path / "results"), "--out", str(out), "--check"]) == 0
