"""beanproto_sync.Worker over several servers: fairness, dead servers, reconnects,
the job's server, and the metrics hooks."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import beanproto as bp
from beanproto.address import describe
from beanproto.worker import BuryJob
from beanproto_sync import Client, Worker
from conftest import RecordingHooks, Server, free_port

Job = bp.Job[Any]


def put_bodies(address: Any, tube: str, bodies: list[bytes]) -> list[int]:
    with Client(address, use=tube, timeout=5) as c:
        return c.put_many(bodies)


def wait_until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_busy_server_never_holds_up_a_quiet_one(
    server: Server, fresh_server: Callable[..., Server], tube: str
) -> None:
    # 2,000 jobs on one server, 20 on the other: the 20 are all handled
    # before the 500th of the 2,000.
    other = fresh_server()
    put_bodies(server.address, tube, [b"a%d" % i for i in range(2000)])
    put_bodies(other.address, tube, [b"b%d" % i for i in range(20)])
    seen: list[tuple[bytes, str | None]] = []
    worker = Worker([server.address, other.address])
    worker.add_handler(tube, lambda job: seen.append((job.body, job.server)))
    worker.run(burst=True)
    assert len(seen) == 2020
    order = [body for body, _ in seen]
    last_b = max(i for i, body in enumerate(order) if body.startswith(b"b"))
    five_hundredth_a = [i for i, body in enumerate(order) if body.startswith(b"a")][499]
    assert last_b < five_hundredth_a
    assert {s for body, s in seen if body.startswith(b"a")} == {server.name}
    assert {s for body, s in seen if body.startswith(b"b")} == {other.name}


def test_a_dead_server_is_skipped(
    server: Server, tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    put_bodies(server.address, tube, [b"x", b"y"])
    dead = ("127.0.0.1", free_port())
    seen: list[bytes] = []
    worker = Worker([dead, server.address], concurrency=2)
    worker.add_handler(tube, lambda job: seen.append(job.body))
    with caplog.at_level(logging.WARNING, "beanproto.worker"):
        worker.run(burst=True)
    assert sorted(seen) == [b"x", b"y"]
    assert f"server {describe(dead)}: cannot connect" in caplog.text


def test_one_server_alone_still_fails_the_worker(tube: str) -> None:
    worker = Worker(("127.0.0.1", free_port()))
    worker.add_handler(tube, lambda job: None)
    with pytest.raises(OSError):
        worker.run(burst=True)


def test_a_killed_server_is_reconnected_in_the_background(
    fresh_server: Callable[..., Server],
    restarted: Callable[[Server], Server],
    tube: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = fresh_server(), fresh_server()
    seen: list[tuple[bytes, str | None]] = []
    lock = threading.Lock()

    def handle(job: Job) -> None:
        with lock:
            seen.append((job.body, job.server))

    worker = Worker([first.address, second.address], concurrency=2)
    worker.add_handler(tube, handle)
    caplog.set_level(logging.INFO, "beanproto.worker")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        put_bodies(second.address, tube, [b"before"])
        wait_until(lambda: (b"before", second.name) in seen)
        second.kill()
        put_bodies(first.address, tube, [b"meanwhile"])
        wait_until(lambda: (b"meanwhile", first.name) in seen)
        revived = restarted(second)
        put_bodies(revived.address, tube, [b"after"])
        wait_until(lambda: (b"after", second.name) in seen)
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()
    server = second.name
    assert f"server {server}: connection lost" in caplog.text
    assert f"server {server}: reconnected" in caplog.text


def test_a_stop_while_reconnecting_returns_at_once(server: Server, tube: str) -> None:
    worker = Worker([server.address, ("127.0.0.1", free_port())])
    worker.add_handler(tube, lambda job: None)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.5)  # the dead server's slot is between attempts
    started = time.monotonic()
    worker.stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 2


def test_each_job_ends_on_its_own_server(fresh_server: Callable[..., Server], tube: str) -> None:
    # Both servers hand out job 1: each one's bury goes to the server it came from.
    first, second = fresh_server(), fresh_server()
    assert put_bodies(first.address, tube, [b"one"]) == put_bodies(second.address, tube, [b"two"])

    def bury(job: Job) -> None:
        raise BuryJob("check")

    worker = Worker(f"{first.name},{second.name}")
    worker.add_handler(tube, bury)
    worker.run(burst=True)
    for srv in (first, second):
        with Client(srv.address) as c:
            assert c.stats_tube(tube).current_jobs_buried == 1


def test_metrics_hooks_see_each_job_outcome(server: Server, tube: str) -> None:
    put_bodies(server.address, tube, [b"ok", b"ok", b"fail", b"bury", b"bad\xff"])
    with Client(server.address, use=tube) as c:
        c.put(b"slow", ttr=1)
    recorder = RecordingHooks()

    def handle(job: Job) -> None:
        if job.body == "fail":
            raise ValueError("boom")
        if job.body == "bury":
            raise BuryJob("asked")
        if job.body == "slow":
            time.sleep(1.6)  # past its TTR: the worker touches it

    worker = Worker(
        server.address, metrics=recorder, retry_delay=60, concurrency=2, encoding="utf-8"
    )
    worker.add_handler(tube, handle)
    worker.run(burst=True)
    where = server.name
    counts = Counter((o, f) for t, o, _, f, s in recorder.jobs if t == tube and s == where)
    assert counts[("deleted", False)] == 3
    assert counts[("released", True)] == 1
    assert counts[("buried", False)] == 1
    assert counts[("buried", True)] == 1  # the body that does not decode
    assert counts[("touched", False)] >= 1
    assert len(recorder.jobs) == sum(counts.values())
    assert max(d for _, _, d, _, _ in recorder.jobs) >= 1.5
    # The commands went through the hooks too: a delete per deleted job, ...
    commands = Counter(recorder.pairs())
    assert commands["delete", "DELETED"] == 3
    assert commands["release", "RELEASED"] == 1
    assert commands["bury", "BURIED"] == 2
    assert commands["reserve-with-timeout", "RESERVED"] == 6
    assert commands["touch", "TOUCHED"] >= 1


def test_a_hook_that_raises_on_touched_reaches_run_and_the_job_is_not_lost(
    server: Server, tube: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception from a hook goes to its caller: for ``touched``, the monitor,
    which fails the worker; the touch itself went through, so the job is not
    reported lost."""
    with Client(server.address, use=tube) as c:
        c.put(b"slow", ttr=1)

    class Raising(RecordingHooks):
        def job(
            self, tube: str, outcome: str, duration: float, *, failed: bool, server: str
        ) -> None:
            if outcome == "touched":
                raise RuntimeError("hook broke")
            super().job(tube, outcome, duration, failed=failed, server=server)

    worker = Worker(server.address, metrics=Raising())
    worker.add_handler(tube, lambda job: time.sleep(1.6))
    with (
        caplog.at_level(logging.DEBUG, logger="beanproto.worker"),
        pytest.raises(RuntimeError, match="hook broke"),
    ):
        worker.run(burst=True)
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
