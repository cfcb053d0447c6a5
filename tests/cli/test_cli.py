"""The ``beanproto`` command against the real beanstalkd the test suite starts.

Commands run in-process through click's ``CliRunner``; their effects are checked
with a :class:`beanproto_sync.Client` on the same server. One smoke test runs the
real entry points as subprocesses.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import beanproto as bp
import beanproto_cli._cli
from beanproto_cli import body_text, cli, stats_dict, top_frame, tubes_table
from beanproto_sync import Client
from conftest import Server, new_tube_name

Run = Callable[..., Result]


def invoke(
    args: Sequence[str], *, input: Any = None, env: dict[str, str | None] | None = None
) -> Result:
    """Run the command in-process; BEANSTALKD_URL is unset unless ``env`` sets it."""
    environment: dict[str, str | None] = {"BEANSTALKD_URL": None}
    environment.update(env or {})
    result = CliRunner().invoke(cli, list(args), input=input, env=environment)
    # Never a traceback: an exception other than click's exit would be a bug.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output,
        result.exc_info,
    )
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def run(server: Server) -> Run:
    """``run("stats", "--json")``: the command against the session's server."""
    address = f"{server.host}:{server.port}"

    def run_(*args: str, input: Any = None, env: dict[str, str | None] | None = None) -> Result:
        return invoke(["--address", address, *args], input=input, env=env)

    return run_


@pytest.fixture
def client(server: Server, tube: str) -> Iterator[Client[bytes]]:
    """A client using and watching the test's tube, to set up and check the server."""
    with Client(server.address, use=tube, watch=tube, timeout=10) as c:
        yield c


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


# -- read commands -------------------------------------------------------------------------


def test_stats_json_matches_the_server(run: Run, client: Client[bytes]) -> None:
    data = json.loads(ok(run("stats", "--json")).stdout)
    server = client.stats()
    # The server's own key names: known ones, then the ones beanproto does not know.
    known = {f.name.replace("_", "-") for f in dataclasses.fields(bp.ServerStats)} - {"extra"}
    assert set(data) == known | set(server.extra)
    assert data["pid"] == server.pid
    assert data["id"] == server.id
    assert data["version"] == server.version
    assert data["current-connections"] >= 2  # this client and the command's
    assert "current_connections" not in data and "extra" not in data


def test_stats_table(run: Run, client: Client[bytes]) -> None:
    out = ok(run("stats")).stdout
    # Not a terminal: key<TAB>value lines, no table.
    lines = dict(line.split("\t") for line in out.splitlines())
    assert lines["pid"] == str(client.stats().pid)
    assert "current-jobs-ready" in lines
    assert "┃" not in out and "│" not in out


def _fill(client: Client[bytes], server: Server, tube: str) -> Client[bytes]:
    """Jobs in every state in ``tube``: 1 urgent + 2 ready, 1 delayed, 1 buried,
    1 reserved (by the returned client, which the caller closes)."""
    client.put(b"urgent", priority=5)
    client.put(b"r1", priority=2000)
    client.put(b"r2", priority=2000)
    client.put(b"later", delay=3600)
    client.put(b"bury me", priority=1)
    job = client.reserve(timeout=0)
    assert job.body == b"bury me"
    client.bury(job)
    worker = Client(server.address, watch=tube, timeout=10)
    assert worker.reserve(timeout=0).body == b"urgent"
    return worker


def test_tubes_json_and_table(run: Run, client: Client[bytes], server: Server, tube: str) -> None:
    worker = _fill(client, server, tube)
    try:
        client.pause_tube(tube, 100)
        rows = json.loads(ok(run("tubes", "--json")).stdout)
        names = [row["name"] for row in rows]
        assert names == sorted(names)
        (row,) = [r for r in rows if r["name"] == tube]
        expected = stats_dict(client.stats_tube(tube))
        keys = ["current-jobs-urgent", "current-jobs-ready", "current-jobs-reserved"]
        keys += ["current-jobs-delayed", "current-jobs-buried", "current-waiting", "pause"]
        for key in keys:
            assert row[key] == expected[key], key
        assert (row["current-jobs-ready"], row["current-jobs-reserved"]) == (2, 1)
        assert (row["current-jobs-delayed"], row["current-jobs-buried"]) == (1, 1)
        assert row["pause"] == 100 and 0 < row["pause-time-left"] <= 100

        table = ok(run("tubes")).stdout  # not a terminal: tab-separated, a header line
        lines = table.splitlines()
        assert lines[0].split("\t") == [
            "tube", "urgent", "ready", "reserved", "delayed", "buried", "waiting", "paused"
        ]  # fmt: skip
        (cells,) = [ln.split("\t") for ln in lines if ln.split("\t")[0] == tube]
        assert cells[0] == tube
        assert cells[1:7] == ["0", "2", "1", "1", "1", "0"]  # urgent..waiting
        assert cells[7].endswith("s") and 0 < int(cells[7][:-1]) <= 100
    finally:
        worker.close()


def test_stats_job(run: Run, client: Client[bytes], tube: str) -> None:
    job_id = client.put(b"x", priority=42, ttr=17)
    data = json.loads(ok(run("stats-job", str(job_id), "--json")).stdout)
    assert data["id"] == job_id
    assert (data["tube"], data["state"], data["pri"], data["ttr"]) == (tube, "ready", 42, 17)
    known = {f.name.replace("_", "-") for f in dataclasses.fields(bp.JobStats)} - {"extra"}
    assert set(data) == known and "time-left" in data
    assert "pri\t42\n" in ok(run("stats-job", str(job_id))).stdout

    client.delete(job_id)
    result = run("stats-job", str(job_id))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: job {job_id} not found"


def test_stats_tube(run: Run, client: Client[bytes], tube: str) -> None:
    client.put(b"x")
    data = json.loads(ok(run("stats-tube", tube, "--json")).stdout)
    assert data["name"] == tube
    assert data["current-jobs-ready"] == 1 and data["total-jobs"] == 1
    assert f"name\t{tube}\n" in ok(run("stats-tube", tube)).stdout

    missing = new_tube_name()
    result = run("stats-tube", missing)
    assert result.exit_code == 1
    assert f"tube {missing!r} not found" in result.stderr

    result = run("stats-tube", "bad tube name")  # invalid: a usage error, not a traceback
    assert result.exit_code == 2
    assert "Error:" in result.stderr


# -- put -------------------------------------------------------------------------------------


def test_put_argument(run: Run, client: Client[bytes], tube: str) -> None:
    out = ok(run("put", "--tube", tube, "--priority", "7", "--ttr", "9", "héllo")).stdout
    job_id = int(out)
    job = client.peek(job_id)
    assert job.body == "héllo".encode()
    st = client.stats_job(job_id)
    assert (st.tube, st.pri, st.ttr, st.delay) == (tube, 7, 9, 0)

    out = ok(run("put", "-t", tube, "--delay", "60", "later")).stdout
    assert client.stats_job(int(out)).state == "delayed"


def test_put_file_binary(run: Run, client: Client[bytes], tube: str, tmp_path: Path) -> None:
    body = bytes(range(256)) + b"\r\n\x00"
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    job_id = int(ok(run("put", "-t", tube, "--file", str(path))).stdout)
    assert client.peek(job_id).body == body
    # --file - reads all of stdin as one job
    job_id = int(ok(run("put", "-t", tube, "--file", "-", input=b"a\nb\n")).stdout)
    assert client.peek(job_id).body == b"a\nb\n"


def test_put_lines_prints_ids(run: Run, client: Client[bytes], tube: str) -> None:
    result = ok(run("put", "-t", tube, "--lines", "-p", "3", input=b"one\r\ntwo\n\nthree"))
    ids = [int(x) for x in result.stdout.split()]
    assert len(ids) == 3
    assert [client.peek(i).body for i in ids] == [b"one", b"two", b"three"]
    assert {client.stats_job(i).pri for i in ids} == {3}


def test_put_many_lines_prints_a_count(run: Run, client: Client[bytes], tube: str) -> None:
    n = 2500  # more than one pipelined batch
    data = b"".join(b"job %d\n" % i for i in range(n))
    result = ok(run("put", "-t", tube, "-", input=data))
    assert result.stdout.strip() == f"put {n} jobs into tube {tube!r}"
    st = client.stats_tube(tube)
    assert st.current_jobs_ready == n
    assert client.reserve(timeout=0).body == b"job 0"


def test_put_lines_with_progress_bar(
    run: Run, client: Client[bytes], tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bar is drawn only when stderr is a terminal; force that path here.
    monkeypatch.setattr(beanproto_cli._cli, "_progress_wanted", lambda: True)
    data = b"".join(b"%d\n" % i for i in range(1500))
    result = ok(run("put", "-t", tube, "--lines", input=data))
    assert result.stdout.strip() == f"put 1500 jobs into tube {tube!r}"
    assert client.stats_tube(tube).current_jobs_ready == 1500


def test_put_refused_mid_batch(run: Run, server: Server, tube: str) -> None:
    big = b"x" * 70000 + b"\n"  # over the default max job size (65535)
    result = run("put", "-t", tube, "--lines", input=b"a\n" + big + b"b\n")
    assert result.exit_code == 1
    assert "refused 1 job(s) (JOB_TOO_BIG); 2 job(s) were put" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["put"],
        ["put", "body", "--lines"],
        ["put", "body", "--file", "-"],
        ["put", "--priority", "-1", "x"],
        ["put", "--ttr", "0", "x"],
        ["put", "--file", "/nonexistent/file"],
    ],
)
def test_put_usage_errors(run: Run, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


# -- peek, kick, delete, pause -----------------------------------------------------------------


def test_peek_text_binary_raw_json(run: Run, client: Client[bytes], tube: str) -> None:
    text_id = client.put(b"hello\nworld", priority=1)
    binary = b"\x00\xff\x1b[31mred"
    bin_id = client.put(binary, priority=2)

    out = ok(run("peek", "--tube", tube, "ready")).stdout
    assert out == f"job {text_id} (11 bytes)\nhello\nworld\n"

    out = ok(run("peek", str(bin_id))).stdout
    assert out == f"job {bin_id} ({len(binary)} bytes)\n{binary!r}\n"
    assert "\x1b" not in out and "\x00" not in out

    assert ok(run("peek", str(bin_id), "--raw")).stdout_bytes == binary

    data = json.loads(ok(run("peek", str(bin_id), "--json")).stdout)
    assert data == {
        "id": bin_id,
        "size": len(binary),
        "body": None,
        "body_base64": base64.b64encode(binary).decode(),
    }
    data = json.loads(ok(run("peek", str(text_id), "--json")).stdout)
    assert data["body"] == "hello\nworld"


def test_body_text_escaping() -> None:
    assert body_text(b"plain text\n") == "plain text\n"
    assert body_text("héllo".encode()) == "héllo"
    assert body_text(b"\xff\x00") == "b'\\xff\\x00'"
    assert body_text(b"bell\x07") == "'bell\\x07'"
    assert body_text(b"two\nlines", multiline=False) == "'two\\nlines'"


def test_peek_states_and_refusals(run: Run, client: Client[bytes], tube: str) -> None:
    result = run("peek", "-t", tube, "buried")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: no buried job in tube {tube!r}"

    delayed = client.put(b"d", delay=3600)
    assert ok(run("peek", "-t", tube, "delayed")).stdout.startswith(f"job {delayed} ")
    client.put(b"b")
    job = client.reserve(timeout=0)
    client.bury(job)
    assert ok(run("peek", "-t", tube, "buried")).stdout.startswith(f"job {job.id} ")

    client.delete(job)
    result = run("peek", str(job.id))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: job {job.id} not found"

    result = run("peek", "sideways")
    assert result.exit_code == 2
    assert "'sideways' is not ready, delayed, buried or a job id" in result.stderr


def test_kick_and_kick_job(run: Run, client: Client[bytes], tube: str) -> None:
    for body in (b"a", b"b", b"c"):
        client.put(body)
        client.bury(client.reserve(timeout=0))
    result = ok(run("kick", "--tube", tube, "2"))
    assert result.stdout.strip() == f"kicked 2 job(s) in tube {tube!r}"
    assert client.stats_tube(tube).current_jobs_buried == 1

    buried = client.peek_buried()
    assert ok(run("kick-job", str(buried.id))).stdout.strip() == f"kicked job {buried.id}"
    assert client.stats_job(buried.id).state == "ready"

    result = run("kick-job", str(buried.id))  # ready now: not kickable
    assert result.exit_code == 1
    assert f"job {buried.id} not found" in result.stderr


def test_delete(run: Run, client: Client[bytes]) -> None:
    ids = client.put_many([b"1", b"2", b"3"])
    result = ok(run("delete", str(ids[0]), str(ids[1])))
    assert result.stdout.splitlines() == [f"deleted job {ids[0]}", f"deleted job {ids[1]}"]
    result = run("delete", str(ids[0]), str(ids[2]))
    assert result.exit_code == 1
    assert result.stdout.strip() == f"deleted job {ids[2]}"
    assert result.stderr.strip() == f"Error: job {ids[0]} not found"
    result = run("delete", str(ids[0]), str(ids[1]))
    assert result.stderr.strip() == f"Error: jobs {ids[0]}, {ids[1]} not found"
    assert run("delete").exit_code == 2
    assert run("delete", "abc").exit_code == 2


def test_pause(run: Run, client: Client[bytes], tube: str) -> None:
    client.put(b"x")
    assert ok(run("pause", tube, "30")).stdout.strip() == f"paused tube {tube!r} for 30s"
    assert client.stats_tube(tube).pause == 30
    assert ok(run("pause", tube, "0")).stdout.strip() == f"unpaused tube {tube!r}"
    assert client.stats_tube(tube).pause == 0
    missing = new_tube_name()
    result = run("pause", missing, "5")
    assert result.exit_code == 1
    assert f"tube {missing!r} not found" in result.stderr


# -- tail, flush, move ---------------------------------------------------------------------------


def test_tail_delete_count(run: Run, client: Client[bytes], tube: str) -> None:
    ids = client.put_many([b"first", b"\x00second", b"third"])
    result = ok(run("tail", "--tube", tube, "--delete", "--count", "2"))
    assert result.stdout.splitlines() == [f"{ids[0]}\tfirst", f"{ids[1]}\t'\\x00second'"]
    assert "2 job(s) shown, deleted" in result.stderr
    st = client.stats_tube(tube)
    assert (st.current_jobs_ready, st.cmd_delete) == (1, 2)


def test_tail_release_keeps_priorities(run: Run, client: Client[bytes], tube: str) -> None:
    a = client.put(b"a", priority=10)
    b = client.put(b"b", priority=20)
    result = ok(run("tail", "-t", tube, "--timeout", "0", "--json"))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["id"], d["body"]) for d in lines] == [(a, "a"), (b, "b")]  # each shown once
    assert "2 job(s) shown, 2 released" in result.stderr
    assert client.stats_tube(tube).current_jobs_ready == 2
    assert (client.stats_job(a).pri, client.stats_job(b).pri) == (10, 20)
    # --count stops early and releases what it held
    result = ok(run("tail", "-t", tube, "--count", "1"))
    assert result.stdout == f"{a}\ta\n"
    assert client.stats_job(a).state == "ready"


def test_tail_holds_a_job_past_its_ttr(run: Run, client: Client[bytes], tube: str) -> None:
    # TTR 1 s: the next reserve answers DEADLINE_SOON, then the job times out and is
    # reserved again; it is shown once, and released when tail stops.
    job_id = client.put(b"short", ttr=1, priority=77)
    result = ok(run("tail", "-t", tube, "--timeout", "1.5"))
    assert result.stdout == f"{job_id}\tshort\n"
    st = client.stats_job(job_id)
    assert (st.state, st.pri) == ("ready", 77)


def test_tail_idle_timeout_on_empty_tube(run: Run, tube: str) -> None:
    result = ok(run("tail", "-t", tube, "--timeout", "0"))
    assert result.stdout == ""
    assert "0 job(s) shown" in result.stderr


def test_flush_asks_then_deletes(
    run: Run, client: Client[bytes], server: Server, tube: str
) -> None:
    worker = _fill(client, server, tube)
    try:
        result = run("flush", "--tube", tube, input="n\n")
        assert result.exit_code == 1
        assert "Delete 4 job(s)" in result.output and "Aborted" in result.output
        assert client.stats_tube(tube).current_jobs_ready == 2

        result = ok(run("flush", "--tube", tube, input="y\n"))
        assert "deleted 4 job(s)" in result.stdout
        assert "2 ready, 1 delayed, 1 buried" in result.stdout
        assert "1 reserved job(s) left alone" in result.stdout
        st = client.stats_tube(tube)
        assert (st.current_jobs_ready, st.current_jobs_delayed, st.current_jobs_buried) == (0, 0, 0)
        assert st.current_jobs_reserved == 1
    finally:
        worker.close()  # the reserved job goes back to ready
    result = ok(run("flush", "-t", tube, "--yes"))
    assert result.stdout.startswith(f"deleted 1 job(s) from tube {tube!r}: 1 ready")
    assert "nothing to flush" in ok(run("flush", "-t", new_tube_name(), "--yes")).stdout


def test_move_keeps_priorities(run: Run, client: Client[bytes], server: Server, tube: str) -> None:
    target = new_tube_name()
    priorities = [5, 100, 2**31, 0, 7]
    for i, pri in enumerate(priorities):
        client.put(b"body %d" % i, priority=pri, ttr=30 + i)
    result = ok(run("move", "--from-tube", tube, "--to-tube", target, "--count", "2"))
    assert result.stdout.strip() == f"moved 2 job(s) from tube {tube!r} to tube {target!r}"
    result = ok(run("move", "--from-tube", tube, "--to-tube", target))
    assert "moved 3 job(s)" in result.stdout
    assert client.stats_tube(tube).current_jobs_ready == 0

    with Client(server.address, watch=target, timeout=10) as c:
        moved = []
        for _ in priorities:
            job = c.reserve(timeout=0)
            st = c.stats_job(job)
            moved.append((job.body, st.pri, st.ttr))
            c.delete(job)
    expected = sorted(
        ((b"body %d" % i, pri, 30 + i) for i, pri in enumerate(priorities)),
        key=lambda t: (t[1], t[0]),
    )
    assert moved == expected


def test_move_to_another_server(
    run: Run, client: Client[bytes], fresh_server: Callable[..., Server], tube: str
) -> None:
    other = fresh_server()
    client.put_many([b"a", b"b"], priority=9)
    to = f"beanstalk://{other.host}:{other.port}"
    result = ok(run("move", "--from-tube", tube, "--to-tube", tube, "--to-address", to))
    assert "moved 2 job(s)" in result.stdout
    with Client(other.address, use=tube) as c:
        assert c.stats_tube(tube).current_jobs_ready == 2
        assert c.stats_job(c.peek_ready()).pri == 9


def test_move_refused_by_the_target_loses_nothing(
    run: Run, client: Client[bytes], fresh_server: Callable[..., Server], tube: str
) -> None:
    small = fresh_server("-z", "10")  # the target takes bodies of at most 10 bytes
    job_id = client.put(b"more than ten bytes", priority=12)
    to = f"{small.host}:{small.port}"
    result = run("move", "--from-tube", tube, "--to-tube", tube, "--to-address", to)
    assert result.exit_code == 1
    assert f"the target refused job {job_id} (JOB_TOO_BIG)" in result.stderr
    st = client.stats_job(job_id)
    assert (st.state, st.pri) == ("ready", 12)


def test_move_usage_errors(run: Run, tube: str) -> None:
    result = run("move", "--from-tube", tube, "--to-tube", tube)
    assert result.exit_code == 2 and "same tube" in result.stderr
    result = run("move", "--from-tube", tube, "--to-tube", "x", "--to-address", "ftp://x")
    assert result.exit_code == 2 and "--to-address" in result.stderr
    result = run("move", "--from-tube", tube, "--to-tube", "x", "--to-address", "127.0.0.1:1")
    assert result.exit_code == 2
    assert "cannot connect to 127.0.0.1:1" in result.stderr
    assert "without losing" in run("move", "--help").stdout


# -- top ---------------------------------------------------------------------------------------


def render(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_top_frames_show_the_servers_numbers(
    client: Client[bytes], server: Server, tube: str
) -> None:
    worker = _fill(client, server, tube)
    try:
        first_server = client.stats()
        stats = [client.stats_tube(tube)]
        frame = render(top_frame(first_server, stats, address="here:1"))
        (line,) = [ln for ln in frame.splitlines() if f" {tube} " in ln]
        cells = [c.strip() for c in line.split("│")[1:-1]]
        assert cells == [tube, "0", "2", "1", "1", "1", "0", ""]
        assert f"beanstalkd {first_server.version} at here:1" in frame
        assert "put - reserve - delete -" in frame

        client.put_many([b"x"] * 4)
        second = render(
            top_frame(
                client.stats(),
                [client.stats_tube(tube)],
                address="here:1",
                previous=first_server,
                elapsed=2.0,
            )
        )
        (line,) = [ln for ln in second.splitlines() if f" {tube} " in ln]
        assert [c.strip() for c in line.split("│")[1:-1]][2] == "6"
        assert "put 2.0/s" in second
        assert render(tubes_table([])).count("\n") >= 3  # headers only
    finally:
        worker.close()


def test_top_command_prints_frames(run: Run, client: Client[bytes], tube: str) -> None:
    client.put(b"x")
    result = ok(run("top", "--iterations", "2", "--interval", "0"))
    assert result.stdout.count("beanstalkd ") == 2
    assert sum(ln.startswith(f"{tube}\t") for ln in result.stdout.splitlines()) == 2
    assert "put 0.0/s" not in result.stdout.split("beanstalkd ")[1]  # first frame: no rates


# -- addresses and errors -------------------------------------------------------------------


def test_unreachable_address() -> None:
    result = invoke(["--address", "127.0.0.1:1", "stats"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: cannot connect to 127.0.0.1:1: Connection refused"
    result = invoke(["tubes", "--address", "unix:/nonexistent/beanstalkd.sock"])
    assert result.exit_code == 2
    assert "cannot connect to unix:/nonexistent/beanstalkd.sock: No such file" in result.stderr


def test_beanstalkd_url(server: Server, fresh_server: Callable[..., Server]) -> None:
    url = f"beanstalk://{server.host}:{server.port}"
    data = json.loads(ok(invoke(["stats", "--json"], env={"BEANSTALKD_URL": url})).stdout)
    assert data["pid"] == server.pid
    unix = fresh_server(unix=True)
    assert unix.unix_path is not None
    for text in (f"unix://{unix.unix_path}", f"unix:{unix.unix_path}"):
        data = json.loads(ok(invoke(["stats", "--json"], env={"BEANSTALKD_URL": text})).stdout)
        assert data["pid"] == unix.pid
    # --address wins over the environment
    result = invoke(
        ["--address", f"unix:{unix.unix_path}", "stats", "--json"], env={"BEANSTALKD_URL": url}
    )
    assert json.loads(ok(result).stdout)["pid"] == unix.pid


@pytest.mark.parametrize(
    "url", ["http://localhost:11300", "beanstalk://host:port", "beanstalk://", "unix://"]
)
def test_bad_beanstalkd_url(url: str) -> None:
    result = invoke(["stats"], env={"BEANSTALKD_URL": url})
    assert result.exit_code == 2
    assert "invalid BEANSTALKD_URL" in result.stderr
    result = invoke(["--address", url, "stats"])
    assert result.exit_code == 2
    assert "invalid --address" in result.stderr


def test_broken_connection_is_reported(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    address = f"{srv.host}:{srv.port}"
    srv.stop()
    result = invoke(["--address", address, "tubes"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot connect to {address}")


def test_connection_closed_mid_command() -> None:
    # A "server" that accepts, then closes at once: a clear message, exit status 2.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        result = invoke(["--address", f"127.0.0.1:{port}", "stats"])
    finally:
        thread.join(10)
        listener.close()
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: connection to 127.0.0.1:{port} failed:")


def test_peek_raw_and_json_conflict(run: Run) -> None:
    result = run("peek", "1", "--raw", "--json")
    assert result.exit_code == 2
    assert "--raw and --json cannot be used together" in result.stderr


def test_entry_points_as_subprocesses(server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BEANSTALKD_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "beanproto_sync", "--help"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Usage: beanproto" in proc.stdout and "tubes" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "beanproto_cli", "--address", "127.0.0.1:1", "stats"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "Error: cannot connect to 127.0.0.1:1: Connection refused\n"
    script = shutil.which("beanproto", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the beanproto console script is not installed (pip install -e .)")
    proc = subprocess.run(
        [script, "--address", f"{server.host}:{server.port}", "stats", "--json"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pid"] == server.pid
