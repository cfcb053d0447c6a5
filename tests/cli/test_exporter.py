"""``beanproto exporter``: the Prometheus text format against real servers, parsed back
with prometheus_client's own parser; served over HTTP by a real process and stopped by
SIGTERM; a dead or silent server is ``beanstalkd_up 0`` without stalling the scrape."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

import beanproto as bp
from beanproto_cli import cli
from beanproto_cli._exporter import (
    SERVER_FIELDS,
    TUBE_FIELDS,
    BeanstalkdCollector,
    parse_listen,
)
from beanproto_sync import Client
from conftest import Server, new_tube_name

BEANPROTO = [sys.executable, "-m", "beanproto_cli"]

# Fields of stats that the scrape itself, or time, may change between two reads.
MOVING = {
    "uptime",
    "rusage-utime",
    "rusage-stime",
    "cmd-stats",
    "cmd-stats-tube",
    "cmd-list-tubes",
    "cmd-use",
    "cmd-watch",
    "current-connections",
    "total-connections",
}


def invoke(args: list[str]) -> Result:
    result = CliRunner().invoke(cli, args, env={"BEANSTALKD_URL": None})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], dict[str, str], Samples]:
    """Each family's type and help, and every sample by (name, labels)."""
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        helps[family.name] = family.documentation
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return types, helps, samples


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def metric(key: str, kind: str, prefix: str = "beanstalkd_") -> str:
    """The sample name of a stats key: ``_total`` after a counter's."""
    name = prefix + key.replace("-", "_")
    return name + "_total" if kind == "counter" else name


def wire(stats: bp.ServerStats | bp.TubeStats) -> dict[str, Any]:
    return {f.name.replace("_", "-"): getattr(stats, f.name) for f in dataclasses.fields(stats)}


def shown(srv: Server) -> str:
    return f"{srv.host}:{srv.port}"


@pytest.fixture
def filled(fresh_server: Callable[..., Server]) -> tuple[Server, str]:
    """A fresh server with 3 ready jobs (one urgent), 1 delayed and 1 buried in a tube;
    the client that put them has disconnected."""
    srv = fresh_server()
    tube = new_tube_name()
    with Client(srv.address, use=tube, watch=tube) as c:
        c.put(b"a", priority=1)
        c.put_many([b"b", b"c", b"d"])
        c.put(b"later", delay=600)
        c.bury(c.reserve(timeout=1))  # the urgent one
    return srv, tube


def test_once_matches_stats_and_stats_tube(filled: tuple[Server, str]) -> None:
    srv, tube = filled
    result = invoke(["exporter", "--address", shown(srv), "--once"])
    assert result.exit_code == 0, result.output
    types, helps, samples = parse(result.stdout)
    with Client(srv.address) as c:
        server, tube_stats = c.stats(), c.stats_tube(tube)
    assert samples["beanstalkd_up", labels()] == 1
    info = labels(version=server.version, id=server.id, hostname=server.hostname)
    assert samples["beanstalkd_info", info] == 1
    # One server: no server label anywhere.
    assert not [key for key in samples if "server" in dict(key[1])]
    for key, value in wire(server).items():
        if key in SERVER_FIELDS and value is not None and key not in MOVING:
            kind = SERVER_FIELDS[key][0]
            assert samples[metric(key, kind), labels()] == float(value), key
    for key, value in wire(tube_stats).items():
        if key in TUBE_FIELDS:
            kind = TUBE_FIELDS[key][0]
            assert samples[metric(key, kind, "beanstalkd_tube_"), labels(tube=tube)] == value, key
    # The numbers the fixture promises, as a reader would query them.
    assert samples["beanstalkd_tube_current_jobs_ready", labels(tube=tube)] == 3
    assert samples["beanstalkd_tube_current_jobs_delayed", labels(tube=tube)] == 1
    assert samples["beanstalkd_tube_current_jobs_buried", labels(tube=tube)] == 1
    assert samples["beanstalkd_tube_total_jobs_total", labels(tube=tube)] == 5
    assert samples["beanstalkd_total_jobs_total", labels()] == 5
    assert samples["beanstalkd_cmd_put_total", labels()] == 5
    # Types and help from the table; the text fields are not metrics.
    assert types["beanstalkd_cmd_put"] == "counter"
    assert types["beanstalkd_current_jobs_ready"] == "gauge"
    assert types["beanstalkd_uptime"] == "gauge"
    assert types["beanstalkd_tube_total_jobs"] == "counter"
    assert helps["beanstalkd_cmd_put"] == "The cumulative number of put commands."
    assert not {"beanstalkd_version", "beanstalkd_hostname", "beanstalkd_id"} & set(types)
    assert samples["beanstalkd_scrape_duration_seconds", labels()] > 0


def test_every_numeric_field_has_a_kind_and_a_help(filled: tuple[Server, str]) -> None:
    """The tables cover the stats types: a new numeric field fails here, not silently."""
    srv, tube = filled
    with Client(srv.address) as c:
        server, tube_stats = c.stats(), c.stats_tube(tube)
    for stats, table in ((server, SERVER_FIELDS), (tube_stats, TUBE_FIELDS)):
        fields = {f.name.replace("_", "-") for f in dataclasses.fields(stats)}
        assert set(table) <= fields
        numeric = {key for key, value in wire(stats).items() if isinstance(value, (int, float))}
        assert numeric - set(table) == set()
        for kind, doc in table.values():
            assert kind in {"counter", "gauge"} and doc.endswith(".")
    # What protocol.txt calls cumulative is a counter; uptime is a gauge.
    assert {k for k, (kind, _) in SERVER_FIELDS.items() if kind == "counter"} == {
        *(k for k in SERVER_FIELDS if k.startswith("cmd-")),
        "job-timeouts",
        "total-jobs",
        "total-connections",
        "rusage-utime",
        "rusage-stime",
        "binlog-records-migrated",
        "binlog-records-written",
    }
    assert SERVER_FIELDS["uptime"][0] == "gauge"


def test_two_servers_one_killed(fresh_server: Callable[..., Server]) -> None:
    first, second = fresh_server(), fresh_server()
    tube = new_tube_name()
    with Client(first.address, use=tube) as c:
        c.put_many([b"1", b"2"])
    second.stop()
    result = invoke(["exporter", "--address", f"{shown(first)},{shown(second)}", "--once"])
    assert result.exit_code == 2
    _, _, samples = parse(result.stdout)
    assert samples["beanstalkd_up", labels(server=shown(first))] == 1
    assert samples["beanstalkd_up", labels(server=shown(second))] == 0
    key = ("beanstalkd_tube_current_jobs_ready", labels(server=shown(first), tube=tube))
    assert samples[key] == 2
    assert samples["beanstalkd_current_jobs_ready", labels(server=shown(first))] == 2
    # Every per-server sample has the label; the dead server has none but up.
    per_server = [k for k in samples if k[0] != "beanstalkd_scrape_duration_seconds"]
    assert all("server" in dict(k[1]) for k in per_server)
    dead = [k[0] for k in per_server if dict(k[1])["server"] == shown(second)]
    assert dead == ["beanstalkd_up"]
    assert result.stderr == f"Error: {shown(second)} is down: Connection refused\n"


@pytest.fixture
def silent() -> Iterator[str]:
    """An address that accepts connections (the listen backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        host, port = s.getsockname()
        yield f"{host}:{port}"


def test_a_silent_server_does_not_stall_the_scrape(server: Server, silent: str) -> None:
    started = time.monotonic()
    addresses = f"{shown(server)},{silent}"
    result = invoke(["exporter", "--address", addresses, "--once", "--timeout", "0.5"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 2
    _, _, samples = parse(result.stdout)
    assert samples["beanstalkd_up", labels(server=silent)] == 0
    assert samples["beanstalkd_up", labels(server=shown(server))] == 1
    assert samples["beanstalkd_scrape_duration_seconds", labels()] < 2
    assert elapsed < 3
    assert f"Error: {silent} is down: " in result.stderr


def test_the_collector_reads_the_servers_at_once() -> None:
    """Three servers each taking 0.3 s: one scrape takes about 0.3 s, not 0.9 s."""

    def read(target: Any, timeout: float) -> Any:
        time.sleep(0.3)
        raise ConnectionRefusedError(111, "Connection refused")

    targets = [(("127.0.0.1", n), f"127.0.0.1:{n}") for n in (1, 2, 3)]
    collector = BeanstalkdCollector(targets, timeout=2, read=read, log_changes=False)
    started = time.monotonic()
    families = list(collector.collect())
    assert time.monotonic() - started < 0.8
    [up] = [f for f in families if f.name == "beanstalkd_up"]
    assert [s.value for s in up.samples] == [0, 0, 0]
    assert collector.errors == {shown: "Connection refused" for _, shown in targets}


# -- serving -------------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [*BEANPROTO, "exporter", "--listen", "127.0.0.1:0", *args],
            env={**os.environ, "BEANSTALKD_URL": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"(http://\S+/metrics)", line)
        assert match, line + proc.stderr.read()
        return proc, match.group(1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text: str = response.read().decode()
        return text


def test_serves_metrics_and_exits_0_on_sigterm(
    exporter: Callable[..., tuple[subprocess.Popen[str], str]],
    fresh_server: Callable[..., Server],
) -> None:
    first, second = fresh_server(), fresh_server()
    proc, url = exporter("--address", f"{shown(first)},{shown(second)}", "--timeout", "2")
    _, _, samples = parse(scrape(url))
    assert samples["beanstalkd_up", labels(server=shown(first))] == 1
    assert samples["beanstalkd_up", labels(server=shown(second))] == 1
    # Live: each scrape reads the servers again.
    tube = new_tube_name()
    with Client(second.address, use=tube) as c:
        c.put(b"x")
    second.stop()
    _, _, samples = parse(scrape(url))
    assert samples["beanstalkd_up", labels(server=shown(first))] == 1
    assert samples["beanstalkd_up", labels(server=shown(second))] == 0
    gone = ("beanstalkd_tube_current_jobs_ready", labels(server=shown(second), tube=tube))
    assert gone not in samples
    # Anything but /metrics is a 404 (prometheus_client's app alone would serve any path).
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url.replace("/metrics", "/nothing"), timeout=10)
    assert info.value.code == 404
    info.value.close()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"{shown(second)} is down: Connection refused" in err
    assert "Traceback" not in err


def test_sigint_exits_0_too(
    exporter: Callable[..., tuple[subprocess.Popen[str], str]], server: Server
) -> None:
    proc, url = exporter("--address", shown(server))
    _, _, samples = parse(scrape(url))
    assert samples["beanstalkd_up", labels()] == 1
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# -- mistakes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9474", ("127.0.0.1", 9474)),
        (":9474", ("0.0.0.0", 9474)),
        ("[::1]:9474", ("::1", 9474)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9474", "host", "host:port", "::1:9474", "h:70000", ""])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected HOST:PORT|IPv6 address in brackets"):
        parse_listen(text)


def test_bad_listen_is_a_usage_error(server: Server) -> None:
    result = invoke(["exporter", "--address", shown(server), "--listen", "nowhere"])
    assert result.exit_code == 2
    assert "Invalid value for --listen: 'nowhere': expected HOST:PORT" in result.stderr


def test_a_port_in_use(server: Server) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke(["exporter", "--address", shown(server), "--listen", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.fixture
def without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if prometheus_client were not installed (None in sys.modules stops an import)."""
    for name in [n for n in sys.modules if n.partition(".")[0] == "prometheus_client"]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("beanproto_cli._exporter", "beanproto.prometheus"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        package, _, module = name.partition(".")
        monkeypatch.delattr(sys.modules[package], module, raising=False)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)


MISSING = "needs the [prometheus] extra: pip install 'beanproto[prometheus]'"


@pytest.mark.usefixtures("without_prometheus_client")
def test_the_exporter_names_the_missing_extra() -> None:
    result = invoke(["exporter", "--once"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: beanproto exporter {MISSING}"]


@pytest.mark.usefixtures("without_prometheus_client")
def test_worker_metrics_names_the_missing_extra() -> None:
    result = invoke(["worker", "handlers:record", "--metrics", "127.0.0.1:0"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: --metrics {MISSING}"]


@pytest.mark.usefixtures("without_prometheus_client")
def test_importing_beanproto_prometheus_names_the_extra() -> None:
    with pytest.raises(ModuleNotFoundError) as info:
        import beanproto.prometheus  # noqa: F401
    assert str(info.value) == (
        "beanproto.prometheus needs prometheus_client: pip install 'beanproto[prometheus]'"
    )
    assert info.value.name == "prometheus_client"
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- beanproto worker --metrics ----------------------------------------------------------------

HANDLERS = """\
import beanproto_sync

def record(job):
    if job.body == b"fail":
        raise ValueError("boom")

made = beanproto_sync.Worker()
"""


def test_worker_serves_its_metrics_while_it_runs(server: Server, tmp_path: Path) -> None:
    (tmp_path / "exported_handlers.py").write_text(HANDLERS)
    tube = new_tube_name()
    options = ["--tube", tube, "--metrics", "127.0.0.1:0", "--max-attempts", "1"]
    proc = subprocess.Popen(
        [*BEANPROTO, "--address", shown(server), "worker", "exported_handlers:record", *options],
        cwd=tmp_path,
        env={**os.environ, "BEANSTALKD_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline() + proc.stderr.readline()
        match = re.search(r"beanproto worker: metrics at (http://\S+/metrics)\n", banner)
        assert match, banner
        with Client(server.address, use=tube) as c:
            c.put_many([b"1", b"2", b"fail"])
        deleted = ("beanproto_jobs_total", labels(tube=tube, outcome="deleted"))
        buried = ("beanproto_jobs_total", labels(tube=tube, outcome="buried"))
        deadline = time.monotonic() + 10
        while True:
            types, _, samples = parse(scrape(match.group(1)))
            if samples.get(deleted) == 2 and samples.get(buried) == 1:
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.05)
        assert samples["beanproto_jobs_failed_total", labels(tube=tube)] == 1
        assert samples["beanproto_handler_duration_seconds_count", labels(tube=tube)] == 3
        assert types["beanproto_handler_duration_seconds"] == "histogram"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_worker_metrics_mistakes(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exported_handlers.py").write_text(HANDLERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    base = ["--address", shown(server), "worker"]
    result = invoke([*base, "exported_handlers:record", "--metrics", "9474"])
    assert result.exit_code == 2
    assert "Invalid value for --metrics: '9474': expected HOST:PORT" in result.stderr
    # A Worker object has its own options: metrics= is one of them.
    result = invoke([*base, "exported_handlers:made", "--metrics", "127.0.0.1:0"])
    assert result.exit_code == 2
    assert "drop --metrics" in result.stderr
