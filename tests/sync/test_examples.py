"""The producer and worker examples move jobs through a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from beanproto_sync import Client
from conftest import Server

ROOT = Path(__file__).resolve().parent.parent.parent


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_producer_then_worker(server: Server, tube: str) -> None:
    address = f"{server.address[0]}:{server.address[1]}"
    # This client's "use" keeps the tube (and its counters) alive throughout.
    with Client(server.address, use=tube) as c:
        out = run("producer.py", "--address", address, "--tube", tube, "--count", "50")
        assert f"put 50 jobs into {tube!r}" in out
        assert c.stats_tube(tube).current_jobs_ready == 50
        bad = c.put(b"\xff not utf-8")
        out = run("worker.py", "--address", address, "--tube", tube)
        assert f"processed 50 jobs from {tube!r}" in out
        stats = c.stats_tube(tube)
        assert stats.current_jobs_ready == 0 and stats.cmd_delete == 50
        assert c.stats_job(bad).state == "buried"  # not handed back to crash the next worker
