"""The operator commands ``bury``, ``flush --state``, ``kick --all-tubes``, ``dump`` and
``restore`` against real servers; effects checked with a :class:`beanproto_sync.Client`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import beanproto as bp
import beanproto_cli._cli
from beanproto_cli import cli
from beanproto_sync import Client
from beanproto_sync._transport import Transport
from conftest import Server, new_tube_name

Run = Callable[..., Result]


def invoke(address: tuple[str, int], *args: str, input: Any = None) -> Result:
    host, port = address
    result = CliRunner().invoke(
        cli, ["--address", f"{host}:{port}", *args], input=input, env={"BEANSTALKD_URL": None}
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def run(server: Server) -> Run:
    return lambda *args, input=None: invoke(server.address, *args, input=input)


@pytest.fixture
def client(server: Server, tube: str) -> Iterator[Client[bytes]]:
    with Client(server.address, use=tube, watch=tube, timeout=10) as c:
        yield c


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result: Result, status: int) -> str:
    assert result.exit_code == status, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# -- bury --------------------------------------------------------------------------------------


def test_bury_keeps_priorities(run: Run, client: Client[bytes], server: Server, tube: str) -> None:
    ids = [client.put(b"job %d" % i, priority=pri) for i, pri in enumerate([9, 2**31, 0, 500])]
    delayed = client.put(b"later", delay=3600)
    with Client(server.address, watch=tube, timeout=10) as worker:
        held = worker.reserve(timeout=0)  # priority 0: ids[2]
        assert held.id == ids[2]
        result = ok(run("bury", "--tube", tube, "--count", "2"))
        assert result.stdout == f"buried 2 job(s) in tube {tube!r}\n"
        st = client.stats_tube(tube)
        assert (st.current_jobs_buried, st.current_jobs_ready) == (2, 1)
        assert ok(run("bury", "-t", tube)).stdout == f"buried 1 job(s) in tube {tube!r}\n"
        for job_id, pri in zip(ids, [9, 2**31, 0, 500], strict=True):
            stats = client.stats_job(job_id)
            assert stats.pri == pri
            assert stats.state == ("reserved" if job_id == held.id else "buried")
        assert client.stats_job(delayed).state == "delayed"
    # The worker's job came back when it closed; then nothing is ready.
    assert ok(run("bury", "-t", tube)).stdout == f"buried 1 job(s) in tube {tube!r}\n"
    assert client.stats_job(held.id).pri == 0
    assert ok(run("bury", "-t", tube)).stdout == f"buried 0 job(s) in tube {tube!r}\n"
    missing = new_tube_name()
    assert ok(run("bury", "-t", missing)).stdout == f"buried 0 job(s) in tube {missing!r}\n"


def test_bury_count_beyond_the_ready_jobs_and_many_batches(
    run: Run, client: Client[bytes], tube: str
) -> None:
    client.put_many([b"x"] * 2500)
    result = ok(run("bury", "-t", tube, "--count", "5000"))
    assert result.stdout == f"buried 2500 job(s) in tube {tube!r}\n"
    assert client.stats_tube(tube).current_jobs_buried == 2500


def test_bury_in_the_default_tube_ignores_nothing(
    fresh_server: Callable[..., Server],
) -> None:
    srv = fresh_server()
    with Client(srv.address, timeout=10) as c:
        c.put(b"d", priority=3)
        result = ok(invoke(srv.address, "bury", "-t", "default"))
        assert result.stdout == "buried 1 job(s) in tube 'default'\n"
        assert c.stats_job(1).state == "buried" and c.stats_job(1).pri == 3


def test_bury_interrupted_loses_no_job(
    run: Run, client: Client[bytes], tube: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = client.put_many([b"a", b"b", b"c"])
    real = Transport._run

    interrupted: list[bool] = []

    def interrupt_before_burying(self: Any, commands: Sequence[bp.Command], wait: Any) -> Any:
        # Once, in the command's pipeline of stats-job: its jobs are reserved now.
        if not interrupted and len(commands) == 3 and isinstance(commands[0], bp.StatsJob):
            interrupted.append(True)
            raise KeyboardInterrupt
        return real(self, commands, wait)

    monkeypatch.setattr(Transport, "_run", interrupt_before_burying)
    result = run("bury", "-t", tube)
    assert result.exit_code == 130
    assert "interrupted: 0 job(s) buried" in result.stderr
    deadline = time.monotonic() + 5  # the server notices the closed connection
    while client.stats_tube(tube).current_jobs_ready != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [client.stats_job(i).state for i in ids] == ["ready"] * 3


def test_bury_usage_errors(run: Run) -> None:
    assert run("bury").exit_code == 2
    assert run("bury", "-t", "x", "--count", "0").exit_code == 2
    one_line_error(run("bury", "-t", "bad name"), 2)


# -- flush --state, kick --all-tubes ------------------------------------------------------------


def _states(client: Client[bytes], tube: str) -> tuple[int, int, int, int]:
    st = client.stats_tube(tube)
    return (
        st.current_jobs_ready,
        st.current_jobs_delayed,
        st.current_jobs_buried,
        st.current_jobs_reserved,
    )


def test_flush_by_state(run: Run, client: Client[bytes], server: Server, tube: str) -> None:
    client.put_many([b"r1", b"r2"])
    client.put_many([b"d1", b"d2", b"d3"], delay=3600)
    client.put_many([b"b1"])
    client.bury(client.reserve(timeout=0))
    with Client(server.address, watch=tube, timeout=10) as worker:
        worker.reserve(timeout=0)
        assert _states(client, tube) == (1, 3, 1, 1)
        client.put(b"r3")
        result = ok(run("flush", "-t", tube, "--state", "buried", "--yes"))
        assert result.stdout.splitlines() == [
            f"deleted 1 job(s) from tube {tube!r}: 1 buried",
            "1 reserved job(s) left alone",
        ]
        assert _states(client, tube) == (2, 3, 0, 1)
        result = run("flush", "-t", tube, "--state", "delayed", "--state", "buried", input="y\n")
        assert "Delete 3 job(s)" in result.output and "(3 delayed, 0 buried)" in result.output
        assert "deleted 3 job(s)" in ok(result).stdout
        assert "1 reserved job(s) left alone" in result.stdout
        assert _states(client, tube) == (2, 0, 0, 1)
        result = ok(run("flush", "-t", tube, "--state", "delayed", "--yes"))
        assert result.stdout == f"tube {tube!r} has no delayed jobs\n"
    assert run("flush", "-t", tube, "--state", "reserved", "--yes").exit_code == 2


def test_kick_all_tubes(run: Run, server: Server) -> None:
    a, b, c = sorted(new_tube_name() for _ in range(3))
    with Client(server.address, timeout=10) as cl:
        for name, n in ((a, 2), (b, 1)):
            cl.use(name)
            cl.watch(name)
            for _ in range(n):
                cl.put(b"x", priority=5)
                cl.bury(cl.reserve(timeout=0), priority=5)
            cl.ignore(name)
        cl.use(c)
        delayed = cl.put(b"later", delay=3600)
        result = ok(run("kick", "--all-tubes"))
        lines = result.stdout.splitlines()
        assert f"kicked 2 job(s) in tube {a!r}" in lines
        assert f"kicked 1 job(s) in tube {b!r}" in lines
        assert f"kicked 1 job(s) in tube {c!r}" in lines  # no buried job: the delayed one
        assert lines[-1].startswith("kicked ") and lines[-1].endswith(" job(s) in all tubes")
        assert int(lines[-1].split()[1]) >= 4
        assert cl.stats_job(delayed).state == "ready"
        for name in (a, b):
            st = cl.stats_tube(name)
            assert (st.current_jobs_ready, st.current_jobs_buried) == (st.total_jobs, 0)
        assert ok(run("kick", "--all-tubes", "0")).stdout.endswith("kicked 0 job(s) in all tubes\n")
    result = run("kick", "--all-tubes", "--tube", a)
    assert (
        result.exit_code == 2 and "--tube and --all-tubes cannot be used together" in result.stderr
    )
    result = run("kick")
    assert result.exit_code == 2 and "missing argument BOUND" in result.stderr


# -- dump and restore ---------------------------------------------------------------------------


def _cmd_counts(c: Client[bytes]) -> dict[str, int]:
    st = c.stats()
    return {
        f.name: getattr(st, f.name)
        for f in dataclasses.fields(st)
        if f.name.startswith("cmd_") and f.name not in ("cmd_peek", "cmd_stats_job", "cmd_stats")
    }


def _jobs(c: Client[bytes]) -> dict[int, bp.JobStats]:
    out: dict[int, bp.JobStats] = {}
    for job_id in range(1, c.stats().total_jobs + 1):
        with contextlib.suppress(bp.NotFoundError):
            out[job_id] = c.stats_job(job_id)
    return out


BINARY = bytes(range(256)) + b"\xff\xfe\r\n"


def _fill(c: Client[bytes], a: str, b: str) -> None:
    """Jobs 1..8 in tubes a and b, in every state; job 6 is deleted; job 7 is reserved
    by the caller's other client."""
    c.use(a)
    c.put(b"ready text \xc3\xa9", priority=10, ttr=30)  # 1
    c.put(BINARY, priority=2**32 - 1, ttr=5)  # 2
    c.put(b"later", priority=7, delay=100, ttr=120)  # 3
    c.put(b"", priority=4)  # 4: empty body, buried below
    c.use(b)
    c.put(b"buried binary \x80", priority=3, ttr=9)  # 5: buried below
    c.put(b"gone")  # 6: deleted
    c.put(b"held", priority=1, ttr=300)  # 7: reserved
    c.put(b"b ready\nsecond line", priority=2000)  # 8
    for tube_, job_id in ((a, 4), (b, 5)):
        c.watch(tube_)
        job = c.reserve_job(job_id)
        c.bury(job, priority=c.stats_job(job).pri)
    c.delete(6)


@pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12")
def test_dump_changes_nothing_and_restore_reproduces_every_job(
    fresh_server: Callable[..., Server], tmp_path: Path
) -> None:
    source, target = fresh_server(), fresh_server()
    a, b = "alpha", "beta/2"
    with Client(source.address, timeout=10) as c, Client(source.address, timeout=10) as w:
        _fill(c, a, b)
        w.watch(b)
        assert w.reserve_job(7).body == b"held"
        before_jobs, before_cmds = _jobs(c), _cmd_counts(c)
        assert {s.state for s in before_jobs.values()} == {"ready", "delayed", "buried", "reserved"}

        result = ok(invoke(source.address, "dump"))
        assert result.stderr == "dumped 7 job(s)\n"
        records = [json.loads(line) for line in result.stdout.splitlines()]

        # Nothing changed: no reserve, release, bury, delete, put...; same states.
        assert _cmd_counts(c) == before_cmds
        after_jobs = _jobs(c)
        assert {i: s.state for i, s in after_jobs.items()} == {
            i: s.state for i, s in before_jobs.items()
        }
        assert [s.reserves for s in after_jobs.values()] == [
            s.reserves for s in before_jobs.values()
        ]
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5, 7, 8]
    by_id = {r["id"]: r for r in records}
    assert by_id[1] == {
        "id": 1, "tube": a, "state": "ready", "priority": 10, "delay": 0, "ttr": 30,
        "body": "ready text \u00e9",
    }  # fmt: skip
    assert base64.b64decode(by_id[2]["body_base64"]) == BINARY and "body" not in by_id[2]
    assert by_id[3]["state"] == "delayed" and 98 <= by_id[3]["delay"] <= 100
    assert (by_id[4]["state"], by_id[4]["body"], by_id[4]["priority"]) == ("buried", "", 4)
    assert by_id[7]["state"] == "reserved" and by_id[7]["delay"] == 0
    assert by_id[8]["body"] == "b ready\nsecond line"

    dumped_at = time.monotonic()
    dump_file = tmp_path / "jobs.jsonl"
    dump_file.write_text(result.stdout, encoding="utf-8")
    result = ok(invoke(target.address, "restore", "--input", str(dump_file)))
    assert result.stdout.splitlines() == [
        "restored 7 job(s)",
        f"  tube {a!r}: 2 ready, 1 delayed, 1 buried",
        f"  tube {b!r}: 2 ready, 0 delayed, 1 buried",
    ]
    with Client(target.address, timeout=10) as t:
        restored = _jobs(t)
        assert len(restored) == 7
        for new, record in zip(sorted(restored), records, strict=True):  # same order
            st = restored[new]
            body = t.peek(new).body
            expected_body = (
                record["body"].encode()
                if "body" in record
                else base64.b64decode(record["body_base64"])
            )
            assert body == expected_body
            assert (st.tube, st.pri, st.ttr) == (record["tube"], record["priority"], record["ttr"])
            want = "ready" if record["state"] == "reserved" else record["state"]
            assert st.state == want, record
            if want == "delayed":
                elapsed = time.monotonic() - dumped_at
                assert abs(st.time_left - (record["delay"] - elapsed)) <= 1.5
        assert t.stats().current_jobs_reserved == 0


def test_dump_filters_output_file_and_progress(
    fresh_server: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = fresh_server()
    with Client(srv.address, timeout=10) as c:
        _fill(c, "one", "two")
        out = tmp_path / "dump.jsonl"
        monkeypatch.setattr(beanproto_cli._cli, "_progress_wanted", lambda: True)
        result = ok(invoke(srv.address, "dump", "-t", "two", "--output", str(out)))
        assert result.stdout == ""
        ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
        assert ids == [5, 7, 8]  # 7 is ready: nobody holds it here
        result = ok(invoke(srv.address, "dump", "--state", "buried", "--state", "delayed"))
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [3, 4, 5]
        result = ok(invoke(srv.address, "dump", "-t", "nothing-here"))
        assert (result.stdout, result.stderr.strip()) == ("", "dumped 0 job(s)")
    assert invoke(srv.address, "dump", "--state", "kicked").exit_code == 2


def test_dump_of_many_jobs_in_batches(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    with Client(srv.address, timeout=10) as c:
        ids = c.put_many([b"%d" % i for i in range(2500)])
        c.delete_many(ids[::2])
    result = ok(invoke(srv.address, "dump"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ids[1::2]
    assert all(r["body"] == str(r["id"] - 1) for r in records)


def test_restore_into_one_tube_from_stdin(run: Run, client: Client[bytes], tube: str) -> None:
    lines = [
        {"tube": "elsewhere", "state": "ready", "priority": 5, "delay": 0, "ttr": 7, "body": "a"},
        {"tube": "x", "state": "delayed", "priority": 6, "delay": 50, "ttr": 8, "body": "b"},
        {"tube": "y", "state": "reserved", "priority": 7, "ttr": 9, "body_base64": "AAE="},
    ]
    data = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    result = ok(run("restore", "--tube", tube, input=data))
    assert result.stdout.splitlines() == [
        "restored 3 job(s)",
        f"  tube {tube!r}: 2 ready, 1 delayed, 0 buried",
    ]
    st = client.stats_tube(tube)
    assert (st.current_jobs_ready, st.current_jobs_delayed) == (2, 1)
    job = client.reserve(timeout=0)
    assert job.body == b"a" and client.stats_job(job).ttr == 7
    assert client.reserve(timeout=0).body == b"\x00\x01"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "line 2: not JSON"),
        ("[1]", "line 2: not a JSON object"),
        ('{"tube": "t", "priority": 1, "ttr": 1}', "no 'body'"),
        ('{"tube": "t", "priority": -1, "ttr": 1, "body": ""}', "'priority' must be"),
        ('{"tube": "t", "priority": 1, "ttr": 1, "body_base64": "%%"}', "not base64"),
        ('{"tube": "t", "state": "odd", "priority": 1, "ttr": 1, "body": ""}', "'state'"),
        ('{"tube": "bad name", "priority": 1, "ttr": 1, "body": ""}', "invalid tube name"),
    ],
)
def test_restore_bad_input_is_one_line(
    run: Run, client: Client[bytes], line: str, reason: str
) -> None:
    total = client.stats().current_jobs_ready
    good = json.dumps({"tube": new_tube_name(), "priority": 1, "ttr": 1, "body": "x"})
    error = one_line_error(run("restore", input=f"{good}\n{line}\n"), 2)
    assert reason in error and "0 job(s) were restored before it" in error
    assert client.stats().current_jobs_ready == total  # nothing of the batch was put


def test_restore_refused_by_the_server(run: Run, tube: str) -> None:
    big = json.dumps({"tube": tube, "priority": 1, "ttr": 1, "body": "x" * 70000})
    small = json.dumps({"tube": tube, "priority": 1, "ttr": 1, "body": "x"})
    error = one_line_error(run("restore", input=f"{small}\n{big}\n"), 1)
    assert "the server refused 1 job(s) (JobTooBig); 1 job(s) were restored" in error


def test_operator_commands_unreachable_server() -> None:
    for args in (["dump"], ["restore"], ["bury", "-t", "x"]):
        error = one_line_error(invoke(("127.0.0.1", 1), *args, input=""), 2)
        assert error == "Error: cannot connect to 127.0.0.1:1: Connection refused"


def test_dump_server_gone_mid_way(fresh_server: Callable[..., Server]) -> None:
    srv = fresh_server()
    with Client(srv.address, timeout=10) as c:
        c.put_many([b"x"] * 1500)
    real = Transport._run
    calls: list[int] = []

    def stop_the_server(self: Any, commands: Sequence[bp.Command], wait: Any) -> Any:
        calls.append(len(commands))
        if len(calls) == 4:  # stats, one batch (stats-job, peek), then the next one
            srv.stop()
        return real(self, commands, wait)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Transport, "_run", stop_the_server)
        result = invoke(srv.address, "dump")
    error = one_line_error(result, 2)
    assert error.startswith(f"Error: connection to 127.0.0.1:{srv.address[1]} failed")
