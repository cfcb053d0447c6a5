"""Soak: move many jobs through producers and workers while killing workers.

    .venv/bin/python soak/soak.py                      # 1,000,000 jobs
    .venv/bin/python soak/soak.py --jobs 100000 --workers 4 --producers 2 --kill-every 0.2

Starts a private beanstalkd (or uses ``--address host:port``), then runs
producer and worker processes: each with the sync client, or the anyio client
on asyncio or trio, in turn (``--kinds``). Producers put every job once (body =
its sequence number, in ``put_many`` batches). Workers reserve, "complete" the
job (log ``C <seq> <id>``), delete it (log ``D <seq> <id>``). Meanwhile the
soak SIGKILLs a random worker every ``--kill-every`` seconds and starts a new
one, and workers also crash themselves (``os._exit``) between completing and
deleting with probability ``--crash-rate``: so reservations are interrupted at
random points, including the worst one.

Checks at the end:

* every job was completed at least once, and none is left on the server;
* the tube's ``cmd-delete`` equals the number of jobs (each deleted once);
* duplicates (completions beyond the first) equal the interrupted reservations
  whose delete did not land: an interrupted reservation is a ``C`` with no ``D``
  after it (the worker died in between); it either caused exactly one
  re-delivery of that job id, or its delete had landed just before the kill;
* no job was completed twice without an interruption in between.

Exits 0 and prints the figures if every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("sync", "asyncio", "trio")


# -- the processes ------------------------------------------------------------------------


def _log(fd: int, tag: bytes, seq: int, job_id: int) -> None:
    os.write(fd, b"%s %d %d %d\n" % (tag, seq, job_id, time.monotonic_ns()))


def worker(address: tuple[str, int], tube: str, log: str, kind: str, crash_rate: float) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random()
    if kind == "sync":
        from beanproto import TimedOutError
        from beanproto_sync import Client

        with Client(address, watch=tube, timeout=10) as c:
            while True:
                try:
                    job = c.reserve(timeout=1)
                except TimedOutError:
                    continue
                _log(fd, b"C", int(job.body), job.id)
                if rng.random() < crash_rate:
                    os._exit(3)
                c.delete(job)
                _log(fd, b"D", int(job.body), job.id)
    else:
        import anyio

        import beanproto_anyio

        async def main() -> None:
            async with beanproto_anyio.connect(address, watch=tube) as c:
                while True:
                    try:
                        job = await c.reserve(timeout=1)
                    except beanproto_anyio.TimedOutError:
                        continue
                    _log(fd, b"C", int(job.body), job.id)
                    if rng.random() < crash_rate:
                        os._exit(3)
                    await c.delete(job)
                    _log(fd, b"D", int(job.body), job.id)

        anyio.run(main, backend=kind)


def producer(address: tuple[str, int], tube: str, start: int, stop: int, kind: str) -> None:
    batch = 200
    if kind == "sync":
        from beanproto_sync import Client

        with Client(address, use=tube, timeout=30) as c:
            for i in range(start, stop, batch):
                c.put_many([b"%d" % s for s in range(i, min(i + batch, stop))])
    else:
        import anyio

        import beanproto_anyio

        async def main() -> None:
            async with beanproto_anyio.connect(address, use=tube) as c:
                for i in range(start, stop, batch):
                    await c.put_many([b"%d" % s for s in range(i, min(i + batch, stop))])

        anyio.run(main, backend=kind)


# -- the soak -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_beanstalkd() -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    binary = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
    port = _free_port()
    # stderr muted: beanstalkd reports every connection reset by a killed worker.
    proc = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, ("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def soak(opts: argparse.Namespace) -> int:
    from beanproto import NotFoundError
    from beanproto_sync import Client

    server = None
    if opts.address:
        host, port = opts.address.rsplit(":", 1)
        address = (host, int(port))
    else:
        server, address = _start_beanstalkd()
    tube = f"soak-{os.getpid()}-{int(time.time())}"
    logs = Path(tempfile.mkdtemp(prefix="bp-soak-"))
    addr = f"{address[0]}:{address[1]}"
    kinds = opts.kinds.split(",")
    rng = random.Random(opts.seed)
    started = time.monotonic()
    n = opts.jobs
    producers = []
    for p in range(opts.producers):
        lo, hi = n * p // opts.producers, n * (p + 1) // opts.producers
        kind = kinds[p % len(kinds)]
        producers.append(_spawn(["--produce", addr, tube, str(lo), str(hi), kind]))
    workers: list[subprocess.Popen[bytes]] = []
    spawned = collections.Counter()

    def new_worker() -> subprocess.Popen[bytes]:
        kind = kinds[sum(spawned.values()) % len(kinds)]
        spawned[kind] += 1
        log = logs / f"w{sum(spawned.values())}.log"
        return _spawn(["--work", addr, tube, str(log), kind, str(opts.crash_rate)])

    workers = [new_worker() for _ in range(opts.workers)]
    kills = crashes = 0
    next_kill = time.monotonic() + opts.kill_every
    try:
        with Client(address, timeout=10) as observer:
            while True:
                time.sleep(0.05)
                for i, w in enumerate(workers):
                    if w.poll() is not None:
                        crashes += w.returncode == 3
                        if w.returncode not in (3, -signal.SIGKILL):
                            print(f"worker exited with {w.returncode}", file=sys.stderr)
                            return 1
                        workers[i] = new_worker()
                if time.monotonic() >= next_kill:
                    victim = rng.randrange(len(workers))
                    workers[victim].kill()
                    workers[victim].wait()
                    kills += 1
                    workers[victim] = new_worker()
                    next_kill = time.monotonic() + opts.kill_every
                if any(p.poll() is None for p in producers):
                    continue
                if any(p.returncode for p in producers):
                    print("a producer failed", file=sys.stderr)
                    return 1
                try:
                    s = observer.stats_tube(tube)
                except NotFoundError:
                    break
                if s.current_jobs_ready + s.current_jobs_reserved == 0:
                    cmd_delete = s.cmd_delete
                    left = (s.current_jobs_delayed, s.current_jobs_buried)
                    break
    finally:
        for w in workers:
            w.kill()
            w.wait()
        for p in producers:
            p.kill()
            p.wait()
    took = time.monotonic() - started
    with Client(address, timeout=10) as observer:
        try:
            s = observer.stats_tube(tube)
            left_now = s.current_jobs_ready + s.current_jobs_reserved + s.current_jobs_buried
        except NotFoundError:
            left_now = 0
    if server is not None:
        server.terminate()
        server.wait()

    # -- the checks -----------------------------------------------------------------
    completions: collections.Counter[int] = collections.Counter()
    # job id -> [(when, interrupted?)] for each completion, sorted by time below
    by_id: dict[int, list[tuple[int, bool]]] = collections.defaultdict(list)
    for log in logs.iterdir():
        lines = [line.split() for line in log.read_bytes().splitlines()]
        for i, (tag, seq, job_id, when) in enumerate(lines):
            if tag == b"C":
                completions[int(seq)] += 1
                finished = i + 1 < len(lines) and lines[i + 1][:3] == [b"D", seq, job_id]
                by_id[int(job_id)].append((int(when), not finished))
    for v in by_id.values():
        v.sort()
    shutil.rmtree(logs)
    missing = [s for s in range(n) if completions[s] == 0]
    duplicates = sum(completions.values()) - len(completions)
    interrupted = sum(x for v in by_id.values() for _, x in v)
    # An interrupted completion that was not the job's last one caused a re-delivery.
    redelivered = sum(x for v in by_id.values() for _, x in v[:-1])
    landed = interrupted - redelivered
    unexplained = sum(1 for v in by_id.values() if not all(x for _, x in v[:-1]))
    failures = []
    if missing:
        failures.append(f"{len(missing)} jobs never completed, e.g. {missing[:5]}")
    if left_now or left != (0, 0):
        failures.append(f"jobs left on the server: {left_now}, delayed/buried {left}")
    if cmd_delete != n:
        failures.append(f"cmd-delete {cmd_delete} != {n} jobs")
    if duplicates != redelivered:
        failures.append(f"duplicates {duplicates} != re-deliveries after interruption")
    if unexplained:
        failures.append(f"{unexplained} jobs completed twice without an interruption between")
    if len(completions) != n or set(completions) - set(range(n)):
        failures.append("completions of jobs that were never put")
    print(
        f"jobs {n:,} in {took:.1f} s ({n / took:,.0f} jobs/s); workers spawned "
        f"{dict(spawned)}; SIGKILLs {kills}, self-crashes {crashes}; completions "
        f"{sum(completions.values()):,}; duplicates {duplicates}; interrupted reservations "
        f"{interrupted} (re-delivered {redelivered}, delete had landed {landed}); "
        f"cmd-delete {cmd_delete:,}; left {left_now}"
    )
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


def main() -> int:
    if sys.argv[1:2] == ["--work"]:
        host, port = sys.argv[2].rsplit(":", 1)
        worker((host, int(port)), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
        return 0
    if sys.argv[1:2] == ["--produce"]:
        host, port = sys.argv[2].rsplit(":", 1)
        a = sys.argv
        producer((host, int(port)), a[3], int(a[4]), int(a[5]), a[6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.5, help="seconds between SIGKILLs")
    parser.add_argument("--crash-rate", type=float, default=0.0005)
    parser.add_argument("--kinds", default=",".join(KINDS), help="sync,asyncio,trio")
    parser.add_argument("--address", help="host:port of a beanstalkd to use instead")
    parser.add_argument("--seed", type=int, default=1)
    return soak(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
