"""Blocking clients against one private beanstalkd: beanproto_sync, greenstalk, raw sockets.

Starts beanstalkd on a free loopback port (stopped by its PID at the end) and, for
``--jobs`` jobs of ``--body`` bytes, times on one connection per client:

  put             sequential put (one round trip per job)
  put, metrics hooks  the same put by a beanproto client given ``metrics=MetricsHooks()``
                  (hooks that do nothing: the cost of measuring each command), in
                  the same turns as the others
  reserve+delete  sequential reserve-with-timeout 0 + delete (two round trips per job)
  put pipelined   beanproto ``put_many`` vs a raw client writing batches in one sendall
  delete pipel.   beanproto ``delete_many`` vs the raw client doing the same for deletes

The raw clients are the floor of what Python can do: ``raw-seq`` does one sendall and
one recv per command, ``raw-pipelined`` writes ``--batch`` commands in one sendall and
then reads their replies, counting lines. Reported: ops/s (wall), client CPU µs per op
(``time.process_time``), and ratios of ops/s to greenstalk and to the raw baseline of
the same kind. Median of ``--reps`` runs; clients interleaved within each run.
The sequential phases run in turns of ``--block`` jobs (clients alternating
block by block, so the machine's drift during a phase falls on all alike), and
their ratios of beanproto_sync to greenstalk are also given rep by rep: their
spread, and in how many reps beanproto_sync was ahead.

    python bench/sync.py [--jobs 20000] [--body 100] [--reps 5] [--block 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _server import start_server
from beanproto.metrics import MetricsHooks
from beanproto_sync import Client

PUT_FMT = b"put 65536 0 60 %d\r\n%b\r\n"

Phase = Callable[[Any, bytes, int], Any]


# -- raw baselines ------------------------------------------------------------


def _raw_connect(addr: tuple[str, int], tube: str) -> socket.socket:
    sock = socket.create_connection(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = tube.encode()
    sock.sendall(b"use %s\r\nwatch %s\r\nignore default\r\n" % (t, t))
    got = b""
    while got.count(b"\r\n") < 3:
        got += sock.recv(4096)
    return sock


def _read_line(sock: socket.socket, r: bytes) -> bytes:
    while not r.endswith(b"\r\n"):
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("server closed")
        r += d
    return r


def raw_put(sock: socket.socket, body: bytes, n: int) -> list[int]:
    sendall, recv = sock.sendall, sock.recv
    ids = []
    for _ in range(n):
        sendall(PUT_FMT % (len(body), body))
        r = _read_line(sock, recv(4096))
        if not r.startswith(b"INSERTED "):
            raise RuntimeError(f"put: {r!r}")
        ids.append(int(r[9:-2]))
    return ids


def raw_consume(sock: socket.socket, body: bytes, n: int) -> None:
    sendall, recv = sock.sendall, sock.recv
    for _ in range(n):
        sendall(b"reserve-with-timeout 0\r\n")
        r = recv(65536)
        i = r.find(b"\r\n")
        while i < 0 or len(r) < i + 4 + int(r[:i].split()[2]):
            r += recv(65536)
            i = r.find(b"\r\n")
        parts = r[:i].split()
        if parts[0] != b"RESERVED":
            raise RuntimeError(f"reserve: {r[:100]!r}")
        sendall(b"delete %d\r\n" % int(parts[1]))
        if _read_line(sock, recv(64)) != b"DELETED\r\n":
            raise RuntimeError("delete")


def _raw_batch_replies(sock: socket.socket, k: int) -> bytes:
    lines, chunks = 0, []
    while lines < k:  # each reply here is exactly one line
        d = sock.recv(256 * 1024)
        if not d:
            raise ConnectionError("server closed")
        lines += d.count(b"\n")
        chunks.append(d)
    return b"".join(chunks)


def raw_put_pipelined(sock: socket.socket, body: bytes, n: int, batch: int) -> list[int]:
    ids: list[int] = []
    put = PUT_FMT % (len(body), body)
    done = 0
    while done < n:
        k = min(batch, n - done)
        sock.sendall(put * k)
        data = _raw_batch_replies(sock, k)
        ids.extend(int(line[9:]) for line in data.split(b"\r\n")[:-1])
        done += k
    return ids


def raw_delete_pipelined(sock: socket.socket, ids: list[int], batch: int) -> None:
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        sock.sendall(b"".join([b"delete %d\r\n" % i for i in chunk]))
        data = _raw_batch_replies(sock, len(chunk))
        if data.count(b"DELETED\r\n") != len(chunk):
            raise RuntimeError("delete batch")


# -- the clients --------------------------------------------------------------


def bp_consume(c: Client[bytes], body: bytes, n: int) -> None:
    reserve, delete = c.reserve, c.delete
    for _ in range(n):
        delete(reserve(0))


def bp_put(c: Client[bytes], body: bytes, n: int) -> list[int]:
    put = c.put
    return [put(body) for _ in range(n)]


def gs_put(c: Any, body: bytes, n: int) -> list[int]:
    put = c.put
    return [put(body) for _ in range(n)]


def gs_consume(c: Any, body: bytes, n: int) -> None:
    reserve, delete = c.reserve, c.delete
    for _ in range(n):
        delete(reserve(timeout=0))


def run_rep(
    addr: tuple[str, int], body: bytes, n: int, batch: int, block: int, rep: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """One rep: every (client, phase) once, clients in rotated order.

    The sequential phases run in blocks of ``block`` jobs, the clients taking
    turns block by block (``block=0``: each client's ``n`` jobs in one go), so
    that the machine's drift over a phase falls on every client alike."""
    import greenstalk

    results: dict[tuple[str, str], tuple[float, float]] = {}

    def timed(key: tuple[str, str], fn: Callable[[], Any]) -> Any:
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        w1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = results.get(key, (0.0, 0.0))
        results[key] = (wall + w1 - w0, cpu + c1 - c0)
        return out

    def tube() -> str:
        return "bench-" + uuid.uuid4().hex[:8]

    with contextlib.ExitStack() as stack:  # the connections opened are closed, whatever happens
        t = tube()
        gs = greenstalk.Client(addr, encoding=None, use=t, watch=t)
        stack.callback(gs.close)
        raw = _raw_connect(addr, tube())
        stack.callback(raw.close)
        bpm = stack.enter_context(Client(addr, use=tube(), metrics=MetricsHooks()))
        t = tube()
        bp = stack.enter_context(Client(addr, use=t, watch=t))
        sequential: dict[str, dict[str, Callable[[int], Any]]] = {
            "greenstalk": {
                "put": lambda k: gs_put(gs, body, k),
                "reserve+delete": lambda k: gs_consume(gs, body, k),
            },
            "raw": {
                "put": lambda k: raw_put(raw, body, k),
                "reserve+delete": lambda k: raw_consume(raw, body, k),
            },
            "beanproto_sync": {
                "put": lambda k: bp_put(bp, body, k),
                "reserve+delete": lambda k: bp_consume(bp, body, k),
            },
        }
        names = list(sequential)
        names = names[rep % 3 :] + names[: rep % 3]
        sizes = [block] * (n // block) + ([n % block] if n % block else []) if block else [n]
        # Measured puts take their turns among the others' puts.
        extra: dict[str, list[tuple[tuple[str, str], Callable[[int], Any]]]] = {
            "put": [(("beanproto_sync", "put, metrics hooks"), lambda k: bp_put(bpm, body, k))]
        }
        for phase in ("put", "reserve+delete"):
            gc.collect()
            runners = [((name, phase), sequential[name][phase]) for name in names]
            runners += extra.get(phase, [])
            for i, size in enumerate(sizes):
                r = i % len(runners)
                for key, fn in runners[r:] + runners[:r]:
                    timed(key, partial(fn, size))

        def raw_pipelined() -> None:
            ids = timed(("raw", "put pipelined"), lambda: raw_put_pipelined(raw, body, n, batch))
            timed(("raw", "delete pipelined"), lambda: raw_delete_pipelined(raw, ids, batch))

        def bp_pipelined() -> None:
            ids = timed(("beanproto_sync", "put pipelined"), lambda: bp.put_many([body] * n))
            timed(("beanproto_sync", "delete pipelined"), lambda: bp.delete_many(ids))

        for run in (raw_pipelined, bp_pipelined)[:: 1 if rep % 2 else -1]:
            gc.collect()
            run()
        assert bp.stats_tube(t).current_jobs_ready == 0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000, help="raw pipelined batch size")
    parser.add_argument(
        "--block",
        type=int,
        default=1000,
        help="jobs per turn in the sequential phases (0: each client's jobs in one go)",
    )
    args = parser.parse_args()
    body = b"x" * (args.body - 2) + b"\r\n"
    proc, addr = start_server()
    try:
        reps = [run_rep(addr, body, args.jobs, args.batch, args.block, r) for r in range(args.reps)]
    finally:
        os.kill(proc.pid, 15)
        proc.wait(5)
    n = args.jobs
    med: dict[tuple[str, str], tuple[float, float]] = {}
    for key in reps[0]:
        med[key] = (
            statistics.median(n / r[key][0] for r in reps),
            statistics.median(r[key][1] / n * 1e6 for r in reps),
        )
    print(
        f"{n} jobs of {args.body} bytes, median of {args.reps} reps, "
        + (f"sequential phases in turns of {args.block} jobs, " if args.block else "")
        + f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    print("| phase | client | ops/s | CPU µs/op | × greenstalk | × raw |")  # noqa: RUF001
    print("|---|---|---:|---:|---:|---:|")
    gs_of = {
        "put": "put",
        "put, metrics hooks": "put",
        "reserve+delete": "reserve+delete",
        "put pipelined": "put",
        "delete pipelined": None,
    }
    raw_of = {"put, metrics hooks": "put"}
    phases = ("put", "put, metrics hooks", "reserve+delete", "put pipelined", "delete pipelined")
    for phase in phases:
        for client in ("greenstalk", "raw", "beanproto_sync"):
            if (client, phase) not in med:
                continue
            ops, cpu = med[(client, phase)]
            gs_phase = gs_of[phase]
            gs = f"{ops / med[('greenstalk', gs_phase)][0]:.2f}×" if gs_phase else "—"  # noqa: RUF001
            raw = f"{ops / med[('raw', raw_of.get(phase, phase))][0]:.2f}×"  # noqa: RUF001
            name = "raw-pipelined" if client == "raw" and "pipelined" in phase else client
            name = "raw-seq" if name == "raw" else name
            print(f"| {phase} | {name} | {ops:,.0f} | {cpu:.1f} | {gs} | {raw} |")
    print(
        "\nbeanproto_sync against greenstalk rep by rep (both clients ran in the same "
        "rep, on the same server):\n"
    )
    for phase in ("put", "reserve+delete"):
        print(_paired(phase, reps))


def _paired(phase: str, reps: list[dict[tuple[str, str], tuple[float, float]]]) -> str:
    """How the medians' ratio holds rep by rep: the spread and count of the
    per-rep ratios of ops/s, and of client CPU per op, for one phase."""
    ops = sorted(r[("greenstalk", phase)][0] / r[("beanproto_sync", phase)][0] for r in reps)
    cpu = sorted(r[("beanproto_sync", phase)][1] / r[("greenstalk", phase)][1] for r in reps)
    faster = sum(x >= 1 for x in ops)
    leaner = sum(x <= 1 for x in cpu)
    n = len(reps)
    return (
        f"- {phase}: ops/s {statistics.median(ops):.3f}× (reps {ops[0]:.3f} to {ops[-1]:.3f}; "  # noqa: RUF001
        f"at least 1.0× in {faster} of {n}); CPU per op {statistics.median(cpu):.3f}× "  # noqa: RUF001
        f"({cpu[0]:.3f} to {cpu[-1]:.3f}; no higher in {leaner} of {n})"
    )


if __name__ == "__main__":
    main()
