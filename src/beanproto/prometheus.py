"""Metrics hooks that count in Prometheus metrics (needs ``beanproto[prometheus]``).

    from beanproto.prometheus import PrometheusMetrics
    from beanproto_sync import Worker

    metrics = PrometheusMetrics()
    worker = Worker(("127.0.0.1", 11300), metrics=metrics)
    # serve metrics.registry, e.g. prometheus_client.start_http_server(9101, registry=...)

Theory of operation: :class:`PrometheusMetrics` is a :class:`~beanproto.metrics.MetricsHooks`
whose hooks update ``prometheus_client`` counters and histograms, in a registry of its
own by default (:attr:`PrometheusMetrics.registry`), so that two of them, or one per test,
never collide on names; pass ``registry=prometheus_client.REGISTRY`` to add them to the
global one. A hook runs inside the call it measures, so the label children are looked up
once per label set and kept, and the command-duration histogram (a dozen buckets to
update on every command) is off unless asked for (``command_durations=True``).

The metrics, with the default ``namespace="beanproto"``:

- ``beanproto_commands_total{command,outcome,server}``: commands by reply word;
- ``beanproto_command_duration_seconds{command,server}``: with ``command_durations=True``;
- ``beanproto_jobs_total{tube,outcome}``: a worker's jobs by outcome (``deleted``,
  ``released``, ``buried``, ``touched``);
- ``beanproto_jobs_failed_total{tube}``: the jobs whose handler raised (or whose body did
  not decode), whatever became of them;
- ``beanproto_handler_duration_seconds{tube}``: how long handlers ran, for the jobs that
  ended (deleted, released or buried; a ``touched`` job is still running).

Importing this module without ``prometheus_client`` raises :class:`ModuleNotFoundError`
with one line naming the extra; nothing else in beanproto imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.partition(".")[0] != "prometheus_client":
        raise
    raise ModuleNotFoundError(
        "beanproto.prometheus needs prometheus_client: pip install 'beanproto[prometheus]'",
        name="prometheus_client",
    ) from None

from .metrics import MetricsHooks

__all__ = ["COMMAND_BUCKETS", "HANDLER_BUCKETS", "PrometheusMetrics"]

#: Histogram buckets of command durations, in seconds (a round trip is ~0.1 ms on a LAN).
COMMAND_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Histogram buckets of handler durations, in seconds (prometheus_client's defaults
#: stretched to a minute: a job handler may well run that long).
HANDLER_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class PrometheusMetrics(MetricsHooks):
    """Hooks that count commands and jobs in Prometheus metrics (see the module's
    docstring for the names).

    :param registry: where the metrics are registered; by default a new
        :class:`prometheus_client.CollectorRegistry` of this object's own
        (:attr:`registry`). Two objects cannot share one registry and namespace.
    :param namespace: the prefix of every metric's name.
    :param command_durations: also keep a histogram of command durations (a
        dozen buckets updated on every command; off by default).
    :param handler_buckets: the buckets of the handler-duration histogram.
    """

    __slots__ = (
        "_command_durations",
        "_commands",
        "_duration_children",
        "_failed",
        "_failed_children",
        "_handler_children",
        "_handlers",
        "_job_children",
        "_jobs",
        "_outcome_children",
        "registry",
    )

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "beanproto",
        command_durations: bool = False,
        handler_buckets: Sequence[float] = HANDLER_BUCKETS,
    ) -> None:
        #: The registry holding the metrics: serve it (``prometheus_client.make_wsgi_app``,
        #: ``start_http_server(port, registry=...)``).
        self.registry = CollectorRegistry() if registry is None else registry
        self._commands = Counter(
            "commands",
            "Commands answered, by command, reply (BROKEN: the connection failed first; "
            "INTERRUPTED: the call was cancelled, interrupted or timed out first) and server.",
            ["command", "outcome", "server"],
            namespace=namespace,
            registry=self.registry,
        )
        self._command_durations: Histogram | None = None
        if command_durations:
            self._command_durations = Histogram(
                "command_duration_seconds",
                "Seconds from writing a command to its reply, by command and server.",
                ["command", "server"],
                namespace=namespace,
                registry=self.registry,
                buckets=COMMAND_BUCKETS,
            )
        self._jobs = Counter(
            "jobs",
            "A worker's jobs by outcome: deleted, released (retried), buried, touched.",
            ["tube", "outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self._failed = Counter(
            "jobs_failed",
            "A worker's jobs whose handler raised or whose body did not decode.",
            ["tube"],
            namespace=namespace,
            registry=self.registry,
        )
        self._handlers = Histogram(
            "handler_duration_seconds",
            "Seconds a worker's handler ran, for the jobs deleted, released or buried.",
            ["tube"],
            namespace=namespace,
            registry=self.registry,
            buckets=tuple(handler_buckets),
        )
        # Label children by label values: .labels() takes a lock and builds a key each
        # time; a dict lookup is all a hook should cost.
        self._outcome_children: dict[tuple[str, str, str], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}
        self._job_children: dict[tuple[str, str], Counter] = {}
        self._failed_children: dict[str, Counter] = {}
        self._handler_children: dict[str, Histogram] = {}

    def command(self, name: str, outcome: str, duration: float, server: str) -> None:
        key = (name, outcome, server)
        counter = self._outcome_children.get(key)
        if counter is None:
            counter = self._outcome_children[key] = self._commands.labels(*key)
        counter.inc()
        if self._command_durations is not None:
            timing_key = (name, server)
            histogram = self._duration_children.get(timing_key)
            if histogram is None:
                histogram = self._command_durations.labels(*timing_key)
                self._duration_children[timing_key] = histogram
            histogram.observe(duration)

    def job(self, tube: str, outcome: str, duration: float, *, failed: bool, server: str) -> None:
        key = (tube, outcome)
        counter = self._job_children.get(key)
        if counter is None:
            counter = self._job_children[key] = self._jobs.labels(*key)
        counter.inc()
        if outcome == "touched":
            return
        if failed:
            failures = self._failed_children.get(tube)
            if failures is None:
                failures = self._failed_children[tube] = self._failed.labels(tube)
            failures.inc()
        histogram = self._handler_children.get(tube)
        if histogram is None:
            histogram = self._handler_children[tube] = self._handlers.labels(tube)
        histogram.observe(duration)
