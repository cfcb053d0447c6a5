"""``beanproto exporter``: beanstalkd's statistics in the Prometheus text format.

Theory of operation: the metrics are read live, on each scrape, by a custom collector
(:class:`BeanstalkdCollector`) in a registry of its own: every server is read at once,
each in a thread with a fresh blocking client (``stats``, ``list-tubes``, then one
pipelined ``stats-tube`` per tube), and the scrape waits for them until ``timeout``
seconds have passed; a server that has not answered by then, or whose connection failed,
is ``beanstalkd_up 0`` and the others are shown as usual, so one dead server never
stalls a scrape. A fresh connection per scrape means no state to repair after a server
restarts; what it costs the server is one connection and a few commands per scrape,
which its counters (``total-connections``, ``cmd-stats``, ...) include.

Names: a ``stats`` field is ``beanstalkd_<field>`` and a ``stats-tube`` field is
``beanstalkd_tube_<field>`` (label ``tube``; the prefix keeps a tube's
``current-jobs-ready`` apart from the server's), with ``-`` as ``_`` and ``_total``
after a counter's name (prometheus_client adds it). Which field is a counter, and its
``# HELP``, come from :data:`SERVER_FIELDS` and :data:`TUBE_FIELDS` (the descriptions of
beanstalkd's protocol.txt); which fields there are comes from the stats types
themselves (:class:`beanproto.ServerStats`, :class:`beanproto.TubeStats`): every field
whose value is a number. ``draining`` is 0 or 1; ``version``, ``id`` and ``hostname``
are the labels of ``beanstalkd_info``; ``os`` and ``platform`` are left out, as are the
keys beanproto does not know (``extra``: whether one is a counter is not known either).
With several servers every metric has a ``server`` label.

This module needs prometheus_client: the command imports it only when it runs, so the
rest of the tool works without the ``[prometheus]`` extra.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from beanproto import ServerStats, StatsTube, TubeStats
from beanproto.address import Resolved
from beanproto.prometheus import PrometheusMetrics
from beanproto_sync import Client

from ._cli import reason

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_TIMEOUT",
    "SERVER_FIELDS",
    "TUBE_FIELDS",
    "BeanstalkdCollector",
    "PrometheusMetrics",
    "parse_listen",
    "run_exporter",
    "serve_registry",
]

#: Seconds a scrape waits for each server (all are read at once).
DEFAULT_TIMEOUT: Final = 5.0

log = logging.getLogger("beanproto.exporter")

COUNTER: Final = "counter"
GAUGE: Final = "gauge"

# Wire key -> (kind, # HELP). The descriptions are protocol.txt's; the keys it does not
# describe (cmd-reserve-with-timeout, cmd-touch, draining) say what beanstalkd counts.
# "cumulative" there means a counter, reset when the process starts.
SERVER_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "current-jobs-urgent": (GAUGE, "The number of ready jobs with priority < 1024."),
    "current-jobs-ready": (GAUGE, "The number of jobs in the ready queue."),
    "current-jobs-reserved": (GAUGE, "The number of jobs reserved by all clients."),
    "current-jobs-delayed": (GAUGE, "The number of delayed jobs."),
    "current-jobs-buried": (GAUGE, "The number of buried jobs."),
    "cmd-put": (COUNTER, "The cumulative number of put commands."),
    "cmd-peek": (COUNTER, "The cumulative number of peek commands."),
    "cmd-peek-ready": (COUNTER, "The cumulative number of peek-ready commands."),
    "cmd-peek-delayed": (COUNTER, "The cumulative number of peek-delayed commands."),
    "cmd-peek-buried": (COUNTER, "The cumulative number of peek-buried commands."),
    "cmd-reserve": (COUNTER, "The cumulative number of reserve commands."),
    "cmd-reserve-with-timeout": (
        COUNTER,
        "The cumulative number of reserve-with-timeout commands.",
    ),
    "cmd-delete": (COUNTER, "The cumulative number of delete commands."),
    "cmd-release": (COUNTER, "The cumulative number of release commands."),
    "cmd-use": (COUNTER, "The cumulative number of use commands."),
    "cmd-watch": (COUNTER, "The cumulative number of watch commands."),
    "cmd-ignore": (COUNTER, "The cumulative number of ignore commands."),
    "cmd-bury": (COUNTER, "The cumulative number of bury commands."),
    "cmd-kick": (COUNTER, "The cumulative number of kick commands."),
    "cmd-touch": (COUNTER, "The cumulative number of touch commands."),
    "cmd-stats": (COUNTER, "The cumulative number of stats commands."),
    "cmd-stats-job": (COUNTER, "The cumulative number of stats-job commands."),
    "cmd-stats-tube": (COUNTER, "The cumulative number of stats-tube commands."),
    "cmd-list-tubes": (COUNTER, "The cumulative number of list-tubes commands."),
    "cmd-list-tube-used": (COUNTER, "The cumulative number of list-tube-used commands."),
    "cmd-list-tubes-watched": (
        COUNTER,
        "The cumulative number of list-tubes-watched commands.",
    ),
    "cmd-pause-tube": (COUNTER, "The cumulative number of pause-tube commands."),
    "job-timeouts": (COUNTER, "The cumulative count of times a job has timed out."),
    "total-jobs": (COUNTER, "The cumulative count of jobs created."),
    "max-job-size": (GAUGE, "The maximum number of bytes in a job."),
    "current-tubes": (GAUGE, "The number of currently-existing tubes."),
    "current-connections": (GAUGE, "The number of currently open connections."),
    "current-producers": (
        GAUGE,
        "The number of open connections that have each issued at least one put command.",
    ),
    "current-workers": (
        GAUGE,
        "The number of open connections that have each issued at least one reserve command.",
    ),
    "current-waiting": (
        GAUGE,
        "The number of open connections that have issued a reserve command "
        "but not yet received a response.",
    ),
    "total-connections": (COUNTER, "The cumulative count of connections."),
    "pid": (GAUGE, "The process id of the server."),
    "rusage-utime": (COUNTER, "The cumulative user CPU time of this process in seconds."),
    "rusage-stime": (COUNTER, "The cumulative system CPU time of this process in seconds."),
    # A gauge: it restarts at 0 with the server, and rate() of it means nothing.
    "uptime": (GAUGE, "The number of seconds since this server process started running."),
    "binlog-oldest-index": (
        GAUGE,
        "The index of the oldest binlog file needed to store the current jobs.",
    ),
    "binlog-current-index": (
        GAUGE,
        "The index of the current binlog file being written to (0 if binlog is not active).",
    ),
    "binlog-records-migrated": (
        COUNTER,
        "The cumulative number of records written as part of compaction.",
    ),
    "binlog-records-written": (
        COUNTER,
        "The cumulative number of records written to the binlog.",
    ),
    "binlog-max-size": (
        GAUGE,
        "The maximum size in bytes a binlog file is allowed to get "
        "before a new binlog file is opened.",
    ),
    "draining": (GAUGE, "1 if the server is in drain mode (no new job accepted), else 0."),
}

TUBE_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "current-jobs-urgent": (
        GAUGE,
        "The number of ready jobs with priority < 1024 in this tube.",
    ),
    "current-jobs-ready": (GAUGE, "The number of jobs in the ready queue in this tube."),
    "current-jobs-reserved": (
        GAUGE,
        "The number of jobs reserved by all clients in this tube.",
    ),
    "current-jobs-delayed": (GAUGE, "The number of delayed jobs in this tube."),
    "current-jobs-buried": (GAUGE, "The number of buried jobs in this tube."),
    "total-jobs": (COUNTER, "The cumulative count of jobs created in this tube."),
    "current-using": (
        GAUGE,
        "The number of open connections that are currently using this tube.",
    ),
    "current-watching": (
        GAUGE,
        "The number of open connections that are currently watching this tube.",
    ),
    "current-waiting": (
        GAUGE,
        "The number of open connections that have issued a reserve command while "
        "watching this tube but not yet received a response.",
    ),
    "cmd-delete": (COUNTER, "The cumulative number of delete commands for this tube."),
    "cmd-pause-tube": (COUNTER, "The cumulative number of pause-tube commands for this tube."),
    "pause": (GAUGE, "The number of seconds the tube has been paused for."),
    "pause-time-left": (GAUGE, "The number of seconds until the tube is un-paused."),
}

#: The text fields of ``stats`` that label ``beanstalkd_info``.
INFO_FIELDS: Final = ("version", "id", "hostname")

_Target = tuple[Resolved, str]
_Reading = tuple[ServerStats, list[TubeStats]]


def read_server(target: Resolved, timeout: float) -> _Reading:
    """One server's ``stats`` and the ``stats-tube`` of each of its tubes (a tube
    that vanished between ``list-tubes`` and its ``stats-tube`` is left out)."""
    with Client(target, timeout=timeout) as client:
        server = client.stats()
        replies = client.pipeline([StatsTube(name) for name in client.tubes()])
    return server, [reply for reply in replies if isinstance(reply, TubeStats)]


def _numbers(stats: ServerStats | TubeStats) -> Iterator[tuple[str, float]]:
    """The fields whose value is a number (``bool`` as 0 or 1), as (wire key, value)."""
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        if isinstance(value, (int, float)):
            yield f.name.replace("_", "-"), float(value)


def _label(text: str) -> str:
    # Host data (hostname) may hold bytes that are not UTF-8, kept as surrogates by the
    # stats parser; the exposition is UTF-8.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class _Slot:
    """One server's reading in one scrape, filled by its thread."""

    reading: _Reading | None = None
    error: str | None = None
    done: bool = False


class BeanstalkdCollector(Collector):
    """Reads every server on each :meth:`collect` (see the module's docstring)."""

    def __init__(
        self,
        targets: Sequence[_Target],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read: Callable[[Resolved, float], _Reading] = read_server,
        log_changes: bool = True,
    ) -> None:
        self.targets = list(targets)
        self.timeout = timeout
        self.read = read
        self.log_changes = log_changes
        #: Why each server was down in the last scrape that found it down.
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def _read_all(self) -> list[tuple[str, _Reading | None]]:
        slots = [_Slot() for _ in self.targets]

        def run(target: Resolved, slot: _Slot) -> None:
            try:
                slot.reading = self.read(target, self.timeout)
            except Exception as exc:
                slot.error = reason(exc)
            slot.done = True

        threads = [
            threading.Thread(
                target=run, args=(target, slot), name=f"beanproto-exporter {shown}", daemon=True
            )
            for (target, shown), slot in zip(self.targets, slots, strict=True)
        ]
        deadline = time.monotonic() + self.timeout
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        results: list[tuple[str, _Reading | None]] = []
        for (_, shown), slot in zip(self.targets, slots, strict=True):
            # Read once: a thread that finishes now is late all the same.
            if slot.done:
                self._note(shown, slot.error)
                results.append((shown, slot.reading))
            else:
                self._note(shown, f"no answer within {self.timeout:g} s")
                results.append((shown, None))
        return results

    def _note(self, shown: str, error: str | None) -> None:
        """Keep why a server is down; log (``log_changes``) a server going down or
        coming back, once rather than on every scrape."""
        with self._lock:
            before = self.errors.get(shown)
            if error is None:
                if before is not None:
                    del self.errors[shown]
                    if self.log_changes:
                        log.info("%s is up again", shown)
            else:
                self.errors[shown] = error
                if before is None and self.log_changes:
                    log.warning("%s is down: %s", shown, error)

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        results = self._read_all()
        several = len(self.targets) > 1
        server_labels = ["server"] if several else []
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

        def family(name: str, kind: str, doc: str, labels: list[str]) -> Any:
            found = families.get(name)
            if found is None:
                cls = CounterMetricFamily if kind == COUNTER else GaugeMetricFamily
                found = families[name] = cls(name, doc, labels=labels)
            return found

        up = GaugeMetricFamily(
            "beanstalkd_up", "1 if the server answered this scrape, else 0.", labels=server_labels
        )
        info = GaugeMetricFamily(
            "beanstalkd_info",
            "The server's version, id and hostname (value 1).",
            labels=[*server_labels, *INFO_FIELDS],
        )
        for shown, reading in results:
            where = [shown] if several else []
            up.add_metric(where, 0.0 if reading is None else 1.0)
            if reading is None:
                continue
            server, tubes = reading
            info.add_metric(
                [*where, *(_label(str(getattr(server, f) or "")) for f in INFO_FIELDS)], 1.0
            )
            for key, value in _numbers(server):
                kind, doc = SERVER_FIELDS[key]  # every numeric field (a test checks)
                name = "beanstalkd_" + key.replace("-", "_")
                family(name, kind, doc, server_labels).add_metric(where, value)
            for tube in tubes:
                labels = [*where, _label(tube.name)]
                for key, value in _numbers(tube):
                    kind, doc = TUBE_FIELDS[key]
                    name = "beanstalkd_tube_" + key.replace("-", "_")
                    family(name, kind, doc, [*server_labels, "tube"]).add_metric(labels, value)
        yield up
        yield info
        yield from families.values()
        yield GaugeMetricFamily(
            "beanstalkd_scrape_duration_seconds",
            "Seconds this scrape took to read every server.",
            value=time.monotonic() - started,
        )


# -- serving ---------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every IPv4 interface); ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9474 or :9474")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9474")
    return host or "0.0.0.0", int(port)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every few seconds is not news."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _app(registry: CollectorRegistry, title: str) -> WSGIApplication:
    metrics = make_wsgi_app(registry)
    page = f"{title}: the metrics are at /metrics\n".encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        status = "200 OK" if path == "/" else "404 Not Found"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [page]

    return app


def serve_registry(registry: CollectorRegistry, host: str, port: int, title: str) -> WSGIServer:
    """A threaded HTTP server of ``registry`` at ``/metrics`` (not started: call
    ``serve_forever``); ``OSError`` if the address cannot be bound."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = _Server6 if family == socket.AF_INET6 else _Server
    return make_server(
        host, port, _app(registry, title), server_class=server_class, handler_class=_QuietHandler
    )


def url(server: WSGIServer) -> str:
    """Where ``server`` serves the metrics (with the port bound, for ``:0``)."""
    host, port = server.socket.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


def _log_to_stderr() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def run_exporter(targets: Sequence[_Target], *, listen: str, timeout: float, once: bool) -> int:
    """Serve until SIGTERM or SIGINT (exit status 0), or print one scrape (``once``:
    exit status 2 if a server was down)."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    registry = CollectorRegistry(auto_describe=False)
    collector = BeanstalkdCollector(targets, timeout=timeout, log_changes=not once)
    registry.register(collector)
    if once:
        click.echo(generate_latest(registry).decode(), nl=False)
        for shown, error in collector.errors.items():
            click.echo(f"Error: {shown} is down: {error}", err=True)
        return 2 if collector.errors else 0
    try:
        server = serve_registry(registry, host, port, "beanproto exporter")
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {reason(exc)}") from None
    _log_to_stderr()
    # SIGTERM and SIGINT are blocked in every thread (the server's threads inherit the
    # mask) and taken by sigwait here, so no handler runs in the middle of a request;
    # blocked before the line below, which tells a supervisor (or a test) we are up.
    stop = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        thread = threading.Thread(target=server.serve_forever, name="beanproto-exporter")
        thread.start()
        try:
            servers = ", ".join(shown for _, shown in targets)
            click.echo(
                f"beanproto exporter: {url(server)} for {servers}, timeout {timeout:g} s",
                err=True,
            )
            signal.sigwait(stop)
        finally:
            server.shutdown()
            thread.join()
            server.server_close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return 0
