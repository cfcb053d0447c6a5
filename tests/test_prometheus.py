"""``beanproto.prometheus.PrometheusMetrics``: hooks fed by hand and by real workers, read
back from the registry."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

import beanproto_anyio
import beanproto_sync
from beanproto.metrics import JOB_OUTCOMES, MetricsHooks
from beanproto.prometheus import HANDLER_BUCKETS, PrometheusMetrics
from beanproto.worker import BuryJob, RetryJob
from beanproto_sync import Client
from conftest import Server


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_commands_count_by_command_outcome_and_server() -> None:
    m = PrometheusMetrics()
    assert isinstance(m, MetricsHooks)
    for _ in range(3):
        m.command("put", "INSERTED", 0.001, "h1:11300")
    m.command("reserve-with-timeout", "TIMED_OUT", 1.0, "h1:11300")
    m.command("put", "BROKEN", 0.5, "h2:11300")
    total = "beanproto_commands_total"
    assert value(m, total, command="put", outcome="INSERTED", server="h1:11300") == 3
    assert value(m, total, command="put", outcome="BROKEN", server="h2:11300") == 1
    timed_out = {"command": "reserve-with-timeout", "outcome": "TIMED_OUT", "server": "h1:11300"}
    assert value(m, total, **timed_out) == 1
    # No duration histogram unless asked for.
    assert b"beanproto_command_duration_seconds" not in generate_latest(m.registry)


def test_command_durations_when_asked_for() -> None:
    m = PrometheusMetrics(command_durations=True)
    m.command("put", "INSERTED", 0.0002, "h1:11300")
    m.command("put", "JOB_TOO_BIG", 0.3, "h1:11300")
    labels = {"command": "put", "server": "h1:11300"}
    assert value(m, "beanproto_command_duration_seconds_count", **labels) == 2
    assert value(m, "beanproto_command_duration_seconds_sum", **labels) == pytest.approx(0.3002)
    assert value(m, "beanproto_command_duration_seconds_bucket", le="0.0005", **labels) == 1


def test_jobs_failures_and_handler_durations() -> None:
    m = PrometheusMetrics()
    m.job("emails", "deleted", 0.2, failed=False, server="h1:11300")
    m.job("emails", "deleted", 0.4, failed=False, server="h2:11300")
    m.job("emails", "released", 1.5, failed=True, server="h1:11300")
    m.job("emails", "buried", 2.0, failed=True, server="h1:11300")
    m.job("emails", "buried", 0.1, failed=False, server="h1:11300")  # BuryJob
    m.job("emails", "touched", 30.0, failed=False, server="h1:11300")
    m.job("reports", "deleted", 0.01, failed=False, server="h1:11300")
    for outcome, count in [("deleted", 2), ("released", 1), ("buried", 2), ("touched", 1)]:
        assert value(m, "beanproto_jobs_total", tube="emails", outcome=outcome) == count
    assert value(m, "beanproto_jobs_total", tube="reports", outcome="deleted") == 1
    assert value(m, "beanproto_jobs_failed_total", tube="emails") == 2
    assert value(m, "beanproto_jobs_failed_total", tube="reports") is None
    # The histogram has the jobs that ended; a touch is a job still running.
    assert value(m, "beanproto_handler_duration_seconds_count", tube="emails") == 5
    assert value(m, "beanproto_handler_duration_seconds_sum", tube="emails") == pytest.approx(4.2)
    assert value(m, "beanproto_handler_duration_seconds_bucket", tube="emails", le="0.25") == 2
    assert len(HANDLER_BUCKETS) > 5
    assert set(JOB_OUTCOMES) == {"deleted", "released", "buried", "touched"}


def test_registries_and_namespaces() -> None:
    # Each object has a registry of its own by default: two never collide.
    a, b = PrometheusMetrics(), PrometheusMetrics()
    assert a.registry is not b.registry and a.registry is not REGISTRY
    a.command("put", "INSERTED", 0.0, "h")
    put = {"command": "put", "outcome": "INSERTED", "server": "h"}
    assert value(a, "beanproto_commands_total", **put) == 1
    assert value(b, "beanproto_commands_total", **put) is None
    # A given registry, with another namespace.
    registry = CollectorRegistry()
    c = PrometheusMetrics(registry, namespace="app", handler_buckets=(1.0, 10.0))
    assert c.registry is registry
    c.job("t", "deleted", 2.0, failed=False, server="h")
    assert registry.get_sample_value("app_jobs_total", {"tube": "t", "outcome": "deleted"}) == 1
    bucket = {"tube": "t", "le": "10.0"}
    assert registry.get_sample_value("app_handler_duration_seconds_bucket", bucket) == 1
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry, namespace="app")


def handle(body: bytes) -> None:
    if body == b"retry":
        raise RetryJob(delay=3600)
    if body == b"bury":
        raise BuryJob("by request")
    if body == b"fail":
        raise ValueError("boom")


def put_jobs(server: Server, tube: str) -> None:
    with Client(server.address, use=tube) as c:
        c.put_many([b"ok", b"ok", b"ok", b"retry", b"bury", b"fail", b"fail"])


def check_worker_counts(m: PrometheusMetrics, tube: str) -> None:
    # max_attempts=2: a first failure or a RetryJob releases the job (with a delay).
    expected = {"deleted": 3, "released": 3, "buried": 1}
    for outcome, count in expected.items():
        assert value(m, "beanproto_jobs_total", tube=tube, outcome=outcome) == count, outcome
    assert value(m, "beanproto_jobs_failed_total", tube=tube) == 2
    assert value(m, "beanproto_handler_duration_seconds_count", tube=tube) == 7


def test_a_sync_worker_counts_what_it_handled(server: Server, tube: str) -> None:
    put_jobs(server, tube)
    m = PrometheusMetrics()
    worker = beanproto_sync.Worker(server.address, max_attempts=2, metrics=m)
    worker.add_handler(tube, lambda job: handle(job.body))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("beanproto.worker.logger.disabled", True)  # the failures' log lines
        worker.run(burst=True)
    check_worker_counts(m, tube)


def test_an_anyio_worker_counts_what_it_handled(server: Server, tube: str) -> None:
    put_jobs(server, tube)
    m = PrometheusMetrics()
    worker = beanproto_anyio.Worker(server.address, max_attempts=2, metrics=m, concurrency=3)

    async def handler(job: beanproto_anyio.Job[bytes]) -> None:
        handle(job.body)

    worker.add_handler(tube, handler)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("beanproto.worker.logger.disabled", True)
        anyio.run(lambda: worker.run(burst=True))
    check_worker_counts(m, tube)
