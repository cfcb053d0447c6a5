"""``beanproto worker`` end to end: real processes, real signals, the real server.

Each test writes a handler module into its own directory and runs the command
there as a subprocess (the command imports from the current directory), then
checks the server and the files the handlers wrote. Mistakes in the command
line are checked in-process too (one line, exit status 2, no traceback).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import beanproto as bp
from beanproto_cli import cli
from beanproto_sync import Client
from conftest import Server, free_port

BEANPROTO = [sys.executable, "-m", "beanproto_cli"]

HANDLERS = """\
import os, time, anyio

def record(job):
    with open("handled.txt", "a") as f:
        f.write(job.body.decode() + "\\n")

async def record_async(job):
    await anyio.sleep(0)
    record(job)

def slow(job):
    open("started", "w").close()
    time.sleep(float(os.environ.get("SLOW", "2")))
    record(job)

def fail(job):
    raise ValueError("boom " + job.body.decode())

not_callable = 42
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # A module name of its own: in-process tests import it into this interpreter.
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path


@pytest.fixture
def client(server: Server, tube: str) -> Iterator[Client[bytes]]:
    with Client(server.address, use=tube, watch=tube, timeout=10) as c:
        yield c


Start = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start(server: Server, workdir: Path) -> Iterator[Start]:
    procs: list[subprocess.Popen[str]] = []

    def start_(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        host, port = server.address
        proc = subprocess.Popen(
            [*BEANPROTO, "--address", f"{host}:{port}", "worker", *args],
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start_
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def handled(workdir: Path) -> list[str]:
    path = workdir / "handled.txt"
    return sorted(path.read_text().split()) if path.exists() else []


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def banner_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline()


@pytest.mark.parametrize(
    ("handler", "backend", "shown"),
    [
        ("record", None, "sync"),
        ("record_async", None, "asyncio"),
        ("record_async", "trio", "trio"),
        ("record", "asyncio", "asyncio"),
    ],
)
def test_burst_drains_the_tube(
    start: Start,
    client: Client[bytes],
    tube: str,
    workdir: Path,
    handler: str,
    backend: str | None,
    shown: str,
) -> None:
    bodies = [f"job{i}" for i in range(50)]
    client.put_many([b.encode() for b in bodies])
    args = [f"handlers:{handler}", "--tube", tube, "--burst", "--concurrency", "3"]
    proc = start(*args, *(["--backend", backend] if backend else []))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    first = err.splitlines()[0]
    assert first.startswith("beanproto worker: ")
    assert f"tubes {tube}, backend {shown}, concurrency 3, burst" in first
    assert handled(workdir) == sorted(bodies)
    assert client.stats_tube(tube).total_jobs == 50
    assert client.stats_tube(tube).current_jobs_ready == 0


def test_failures_are_logged_retried_and_buried(
    start: Start, client: Client[bytes], tube: str
) -> None:
    job_id = client.put(b"x", priority=77)
    proc = start("handlers:fail", "--tube", tube, "--burst", "--max-attempts", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"job {job_id} (tube {tube})" in err and "boom x" in err
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri) == ("buried", 77)


def test_sigterm_during_a_handler_lets_it_finish(
    start: Start, client: Client[bytes], tube: str, workdir: Path
) -> None:
    job_id = client.put(b"slow-one")
    proc = start("handlers:slow", "--tube", tube, env={"SLOW": "1.5"})
    banner_of(proc)
    wait_for(workdir / "started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert handled(workdir) == ["slow-one"]
    with pytest.raises(bp.NotFoundError):
        client.stats_job(job_id)  # deleted: the handler finished within the grace


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_idle_stops_at_once(
    start: Start, client: Client[bytes], tube: str, sig: int
) -> None:
    proc = start("handlers:record", "--tube", tube, "--concurrency", "2")
    banner_of(proc)
    time.sleep(0.3)  # the reserves are waiting
    began = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - began < 5
    job_id = client.put(b"after")
    assert client.stats_job(job_id).state == "ready"  # nobody took it


def test_grace_runs_out_and_the_job_goes_back(
    start: Start, client: Client[bytes], tube: str, workdir: Path
) -> None:
    job_id = client.put(b"too-slow", priority=9)
    proc = start("handlers:slow", "--tube", tube, "--grace", "0.5", env={"SLOW": "30"})
    banner_of(proc)
    wait_for(workdir / "started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    stats = client.stats_job(job_id)
    assert (stats.state, stats.pri) == ("ready", 9)


def test_a_second_sigint_stops_at_once(
    start: Start, client: Client[bytes], tube: str, workdir: Path
) -> None:
    job_id = client.put(b"stuck")
    proc = start("handlers:slow", "--tube", tube, env={"SLOW": "60"})
    banner_of(proc)
    wait_for(workdir / "started")
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - began < 10
    assert client.stats_job(job_id).state == "ready"


def test_a_worker_object(
    start: Start, client: Client[bytes], tube: str, workdir: Path, server: Server
) -> None:
    (workdir / "app.py").write_text(
        textwrap.dedent(
            f"""\
            import os
            import beanproto_anyio
            from handlers import record_async

            host, port = os.environ["QUEUE"].split(":")
            worker = beanproto_anyio.Worker((host, int(port)), concurrency=4)
            worker.add_handler({tube!r}, record_async)
            """
        )
    )
    client.put_many([b"a", b"b", b"c"])
    host, port = server.address
    proc = start("app:worker", "--burst", "--backend", "trio", env={"QUEUE": f"{host}:{port}"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "backend trio, concurrency 4, burst" in err
    assert handled(workdir) == ["a", "b", "c"]


# -- mistakes: one line, exit status 2, before anything runs --------------------------------


@pytest.fixture
def invoke(server: Server, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.chdir(workdir)
    # A module name no other test uses: this interpreter imports it.
    module = f"handlers_{uuid.uuid4().hex[:8]}"
    (workdir / f"{module}.py").write_text(HANDLERS)

    def invoke_(*args: str, address: str | None = None) -> str:
        host, port = server.address
        argv = ["--address", address or f"{host}:{port}", "worker"]
        argv += [a.replace("handlers:", f"{module}:") for a in args]
        result = CliRunner().invoke(cli, argv, env={"BEANSTALKD_URL": None})
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
        return line.replace(module, "handlers")

    return invoke_


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("handlers", "expected MODULE:ATTR"),
        ("handlers:", "expected MODULE:ATTR"),
        ("no_such_module_here:f", "no module named 'no_such_module_here'"),
        ("handlers:nothing", "handlers has no attribute 'nothing'"),
        ("handlers:not_callable", "is a int: expected a function or a Worker"),
    ],
)
def test_bad_targets(invoke: Callable[..., str], target: str, message: str) -> None:
    assert message in invoke(target, "--burst")


def test_a_module_that_fails_to_import(invoke: Callable[..., str], workdir: Path) -> None:
    (workdir / "broken_mod_x.py").write_text("1 / 0\n")
    line = invoke("broken_mod_x:f")
    assert "importing broken_mod_x failed: ZeroDivisionError" in line


def test_an_unreachable_server(invoke: Callable[..., str]) -> None:
    line = invoke("handlers:record", "--burst", address=f"127.0.0.1:{free_port()}")
    assert "cannot connect to 127.0.0.1:" in line


def test_an_invalid_tube(invoke: Callable[..., str]) -> None:
    assert "tube" in invoke("handlers:record", "--tube", "bad tube!", "--burst")


def test_an_async_handler_on_the_sync_backend(invoke: Callable[..., str]) -> None:
    line = invoke("handlers:record_async", "--backend", "sync")
    assert "async def" in line and "--backend asyncio or trio" in line


def test_options_with_a_worker_object(invoke: Callable[..., str], workdir: Path) -> None:
    (workdir / "app_obj.py").write_text(
        "import beanproto_sync\nworker = beanproto_sync.Worker(('127.0.0.1', 1))\n"
    )
    line = invoke("app_obj:worker", "--concurrency", "3", "--tube", "x")
    assert "has its own address and options: drop --tube, --concurrency" in line
    assert "runs on --backend sync" in invoke("app_obj:worker", "--backend", "trio")


def test_a_worker_serves_several_servers(
    server: Server,
    fresh_server: Callable[..., Server],
    client: Client[bytes],
    tube: str,
    workdir: Path,
) -> None:
    other = fresh_server()
    client.put_many([b"first%d" % i for i in range(5)])
    with Client(other.address, use=tube) as c:
        c.put_many([b"second%d" % i for i in range(5)])
    dead = f"127.0.0.1:{free_port()}"
    addresses = f"{server.address[0]}:{server.address[1]},{other.address[0]}:{other.address[1]}"
    proc = subprocess.run(
        [
            *BEANPROTO,
            "--address",
            f"{addresses},{dead}",
            "worker",
            "handlers:record",
            "-t",
            tube,
            "--burst",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"beanproto worker: {addresses.replace(',', ', ')}, {dead}, tubes" in proc.stderr
    assert f"server {dead}: cannot connect" in proc.stderr
    assert handled(workdir) == sorted(
        [f"first{i}" for i in range(5)] + [f"second{i}" for i in range(5)]
    )


def test_a_worker_needs_one_server_up(workdir: Path) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    proc = subprocess.run(
        [*BEANPROTO, "--address", ",".join(dead), "worker", "handlers:record", "--burst"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"Error: cannot connect to {dead[0]}")
