"""The README's demo script runs against a real server and says what happened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Server

ROOT = Path(__file__).resolve().parent.parent


def test_demo_core_moves_jobs_through_the_server(server: Server) -> None:
    host, port = server.address
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo_core.py"), "--address", f"{host}:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = result.stdout
    assert "put 1000 jobs pipelined" in out
    assert "reserved 1000" in out and "deleted 1000" in out
    assert "reserve on the empty tube -> TimedOut()" in out
    assert "delete of a deleted job -> NotFound()" in out
    assert "refused before the wire: invalid tube name" in out
    assert out.rstrip().endswith("after quit -> ConnectionClosed()")


def test_demo_drains_the_jobs_through_worker_processes(server: Server) -> None:
    host, port = server.address
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "demo.py"),
            "--address",
            f"{host}:{port}",
            "--jobs",
            "600",
            "--concurrency",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    out = result.stdout
    assert "every one of the 600 jobs was handled exactly once" in out
    assert "every worker stopped gracefully on SIGTERM and exited 0" in out
    for backend in ("sync", "asyncio", "trio"):
        assert f"backend {backend}" in out and f"{backend} worker (" in out
    assert "throughput" in out and "end to end" in out
