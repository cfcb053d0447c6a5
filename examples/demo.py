"""The beanproto demo: a producer and workers on asyncio and on trio share a tube.

A blocking producer puts ``--jobs`` jobs (pipelined, with a progress bar) while
consumers run concurrently: ``--workers`` connections on an asyncio event loop
in one thread and as many on a trio event loop in another, each reserving and
deleting jobs with ``beanproto_anyio``. It ends with the tubes table (as
``beanproto tubes`` shows it) and the throughput, and checks that every job was
consumed exactly once.

    python examples/demo.py --address 127.0.0.1:11300 [--jobs 10000] [--workers 4]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import beanproto
import beanproto_anyio
from beanproto_cli import tubes_table
from beanproto_sync import Client


@dataclass
class Tally:
    """What the workers of one event loop did."""

    backend: str
    done: Counter[int] = field(default_factory=Counter)
    last: float = 0.0  # perf_counter() when its last job was deleted
    error: BaseException | None = None


async def worker(
    address: tuple[str, int], tube: str, tally: Tally, finished: threading.Event
) -> None:
    """Reserve and delete jobs until the producer is done and the tube stays empty."""
    async with beanproto_anyio.connect(address, watch=tube) as client:
        while True:
            try:
                job = await client.reserve(timeout=1)
            except beanproto.TimedOutError:
                if finished.is_set():
                    return
                continue
            await client.delete(job)
            tally.done[int(job.body.split(b" ")[1])] += 1
            tally.last = time.perf_counter()


def run_workers(
    backend: str,
    address: tuple[str, int],
    tube: str,
    n: int,
    tally: Tally,
    finished: threading.Event,
) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(worker, address, tube, tally, finished)

    try:
        anyio.run(main, backend=backend)
    except BaseException as exc:  # reported by the main thread
        tally.error = exc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:11300", help="host:port of beanstalkd")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4, help="connections per event loop")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    address = (host, int(port))
    tube = f"demo-{int(time.time() * 1000) % 10**6}"
    console = Console()
    console.print(f"[bold]beanproto demo[/] against {args.address}, tube [cyan]{tube}[/]")

    finished = threading.Event()
    tallies = [Tally("asyncio"), Tally("trio")]
    threads = [
        threading.Thread(
            target=run_workers, args=(t.backend, address, tube, args.workers, t, finished)
        )
        for t in tallies
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()

    batch = 500
    with Client(address, use=tube, timeout=10) as producer:
        columns = (
            TextColumn("producer"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("put", total=args.jobs)
            for first in range(0, args.jobs, batch):
                count = min(batch, args.jobs - first)
                producer.put_many([b"job %d" % i for i in range(first, first + count)], ttr=30)
                progress.advance(task, count)
        put_seconds = time.perf_counter() - start
        finished.set()
        for thread in threads:
            thread.join()
        total_seconds = max(t.last for t in tallies) - start
        stats = producer.stats_tube(tube)

    for tally in tallies:
        if tally.error is not None:
            raise SystemExit(f"the {tally.backend} workers failed: {tally.error!r}")
    console.print(tubes_table([stats], title=f"tube {tube} after the run"))

    table = Table(title="throughput")
    for column in ("who", "jobs", "seconds", "jobs/s"):
        table.add_column(column, justify="right" if column != "who" else "left")
    table.add_row(
        "producer (put_many)",
        f"{args.jobs:,}",
        f"{put_seconds:.2f}",
        f"{args.jobs / put_seconds:,.0f}",
    )
    for tally in tallies:
        jobs = sum(tally.done.values())
        table.add_row(
            f"{args.workers} {tally.backend} workers",
            f"{jobs:,}",
            f"{tally.last - start:.2f}",
            f"{jobs / (tally.last - start):,.0f}",
        )
    table.add_row(
        "end to end", f"{args.jobs:,}", f"{total_seconds:.2f}", f"{args.jobs / total_seconds:,.0f}"
    )
    console.print(table)

    done = tallies[0].done + tallies[1].done
    missing = args.jobs - len(done)
    twice = sum(1 for n in done.values() if n > 1)
    if missing or twice or stats.current_jobs_ready:
        raise SystemExit(f"lost {missing} jobs, consumed {twice} twice")
    console.print(
        f"[green]every one of the {args.jobs:,} jobs was consumed exactly once[/] "
        f"(asyncio {sum(tallies[0].done.values()):,}, trio {sum(tallies[1].done.values()):,})"
    )


if __name__ == "__main__":
    main()
