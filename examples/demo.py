"""The beanproto demo: a producer, and `beanproto worker` processes on sync, asyncio and trio.

Three ``beanproto worker`` processes watch one tube: the blocking worker
(threads), the async worker on asyncio and the async worker on trio, each
running a handler from ``examples/demo_tasks.py`` that records every job it
handled. A blocking producer then puts ``--jobs`` jobs (pipelined, with a
progress bar) while the workers drain them. Once the tube is empty the demo
stops the workers with SIGTERM, as a deploy would (each must exit 0 after a
graceful stop), and ends with the tubes table (as ``beanproto tubes`` shows
it), the throughput of each worker, and a check that every job was handled
exactly once.

    python examples/demo.py --address 127.0.0.1:11300 [--jobs 10000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from beanproto import TubeStats
from beanproto_cli import tubes_table
from beanproto_sync import Client

HERE = Path(__file__).resolve().parent
#: (backend, handler, concurrency multiplier): async workers run more handlers per process.
WORKERS = (("sync", "record", 1), ("asyncio", "record_async", 4), ("trio", "record_async", 4))


def start_worker(
    backend: str, handler: str, concurrency: int, address: str, tube: str, log_dir: str
) -> subprocess.Popen[str]:
    beanproto = Path(sys.executable).with_name("beanproto")
    command = [str(beanproto)] if beanproto.exists() else [sys.executable, "-m", "beanproto_cli"]
    return subprocess.Popen(
        [
            *command,
            "--address",
            address,
            "worker",
            f"demo_tasks:{handler}",
            "--tube",
            tube,
            "--backend",
            backend,
            "--concurrency",
            str(concurrency),
        ],
        cwd=HERE,
        env={**os.environ, "DEMO_DIR": log_dir},
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_started(workers: list[subprocess.Popen[str]]) -> list[str]:
    """Each worker's banner (its first line on standard error)."""
    banners = []
    for proc in workers:
        assert proc.stderr is not None
        line = proc.stderr.readline().strip()
        if not line.startswith("beanproto worker:"):
            raise SystemExit(f"a worker did not start: {line}{proc.stderr.read()}")
        banners.append(line)
        # Keep reading (log lines), so a full pipe never blocks a worker.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    return banners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:11300", help="host:port of beanstalkd")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="handlers of the sync worker (x4 for async)"
    )
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    address = (host, int(port))
    tube = f"demo-{int(time.time() * 1000) % 10**6}"
    console = Console()
    console.print(f"[bold]beanproto demo[/] against {args.address}, tube [cyan]{tube}[/]")

    with tempfile.TemporaryDirectory() as log_dir:
        workers = [
            start_worker(backend, handler, args.concurrency * k, args.address, tube, log_dir)
            for backend, handler, k in WORKERS
        ]
        try:
            for banner in wait_started(workers):
                console.print(f"  {banner}")
            handled, put_seconds, drain_end, stats, start = produce_and_drain(
                console, address, tube, args.jobs
            )
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            statuses = [proc.wait(30) for proc in workers]
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        records = read_records(Path(log_dir), [proc.pid for proc in workers])

    console.print(tubes_table([stats], title=f"tube {tube} after the run"))
    table = Table(title="throughput")
    for column in ("who", "jobs", "seconds", "jobs/s", "exit"):
        table.add_column(column, justify="right" if column != "who" else "left")
    table.add_row(
        "producer (put_many)",
        f"{args.jobs:,}",
        f"{put_seconds:.2f}",
        f"{args.jobs / put_seconds:,.0f}",
        "",
    )
    for (backend, _, k), proc, status in zip(WORKERS, workers, statuses, strict=True):
        times = records[proc.pid][1]
        seconds = (max(times) - start) if times else 0.0
        rate = f"{len(times) / seconds:,.0f}" if seconds else "-"
        units = "threads" if backend == "sync" else "tasks"
        table.add_row(
            f"{backend} worker ({args.concurrency * k} {units})",
            f"{len(times):,}",
            f"{seconds:.2f}",
            rate,
            str(status),
        )
    total = drain_end - start
    table.add_row("end to end", f"{args.jobs:,}", f"{total:.2f}", f"{args.jobs / total:,.0f}", "")
    console.print(table)

    done: Counter[int] = Counter()
    for counts, _ in records.values():
        done += counts
    missing = args.jobs - len(done)
    twice = sum(1 for n in done.values() if n > 1)
    if missing or twice or stats.current_jobs_ready or handled != args.jobs:
        raise SystemExit(f"lost {missing} jobs, handled {twice} twice")
    if any(statuses):
        raise SystemExit(f"a worker did not exit 0 after SIGTERM: {statuses}")
    shares = ", ".join(
        f"{backend} {len(records[proc.pid][1]):,}"
        for (backend, _, _), proc in zip(WORKERS, workers, strict=True)
    )
    console.print(
        f"[green]every one of the {args.jobs:,} jobs was handled exactly once[/] ({shares}); "
        "every worker stopped gracefully on SIGTERM and exited 0"
    )


def produce_and_drain(
    console: Console, address: tuple[str, int], tube: str, jobs: int
) -> tuple[int, float, float, TubeStats, float]:
    """Put the jobs while the workers run; wait until the tube is empty."""
    batch = 500
    with Client(address, use=tube, timeout=10) as producer:
        columns = (TextColumn("producer"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        # Wall-clock time: the workers (other processes) record theirs with it too.
        start = time.time()
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("put", total=jobs)
            for first in range(0, jobs, batch):
                count = min(batch, jobs - first)
                producer.put_many([b"job %d" % i for i in range(first, first + count)], ttr=30)
                progress.advance(task, count)
        put_seconds = time.time() - start
        deadline = time.monotonic() + 120
        while True:
            stats = producer.stats_tube(tube)
            if stats.current_jobs_ready == 0 and stats.current_jobs_reserved == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the workers did not drain the tube: {stats}")
            time.sleep(0.02)
        drain_end = time.time()
        handled = stats.total_jobs - stats.current_jobs_delayed - stats.current_jobs_buried
    return handled, put_seconds, drain_end, stats, start


def read_records(log_dir: Path, pids: list[int]) -> dict[int, tuple[Counter[int], list[float]]]:
    """Per worker process: how many times it handled each job, and when."""
    out: dict[int, tuple[Counter[int], list[float]]] = {}
    for pid in pids:
        counts: Counter[int] = Counter()
        times: list[float] = []
        path = log_dir / f"handled-{pid}.log"
        if path.exists():
            for line in path.read_text().splitlines():
                number, at = line.split()
                counts[int(number)] += 1
                times.append(float(at))
        out[pid] = (counts, times)
    return out


if __name__ == "__main__":
    main()
