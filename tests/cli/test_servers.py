"""``tubes``, ``stats`` and ``top`` over several servers (``--address h1,h2``), against
two private beanstalkd; every other command refuses a list."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import beanproto_cli._cli
from beanproto_cli import cli
from beanproto_cli._render import (
    servers_stats_table,
    servers_top_frame,
    servers_tubes_table,
)
from beanproto_sync import Client
from conftest import Server


def invoke(
    args: list[str], *, input: str | None = None, env: dict[str, str | None] | None = None
) -> Result:
    """Run the command in-process; BEANSTALKD_URL is unset unless ``env`` sets it."""
    environment: dict[str, str | None] = {"BEANSTALKD_URL": None, **(env or {})}
    result = CliRunner().invoke(cli, args, input=input, env=environment)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    return result


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


HEADER = "server\ttube\turgent\tready\treserved\tdelayed\tburied\twaiting\tpaused"


def shown(srv: Server) -> str:
    return f"{srv.host}:{srv.port}"


@pytest.fixture
def two(fresh_server: Callable[..., Server]) -> Iterator[tuple[Server, Server]]:
    """Two fresh servers: 2 ready jobs in 'a' and 1 buried in 'b' on the first, 3 ready
    in 'a' on the second."""
    first, second = fresh_server(), fresh_server()
    with Client(first.address, use="a") as c:
        c.put_many([b"1", b"2"])
        c.use("b")
        c.put(b"3")
        c.watch("b")
        c.bury(c.reserve(timeout=1))
    with Client(second.address, use="a") as c:
        c.put_many([b"4", b"5", b"6"])
    yield first, second


def lines(result: Result) -> list[list[str]]:
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_tubes_text_has_a_server_column_and_totals(two: tuple[Server, Server]) -> None:
    first, second = two
    one, other = shown(first), shown(second)
    result = ok(invoke(["--address", f"{one},beanstalk://{other}", "tubes"]))
    assert result.stdout.splitlines()[0] == HEADER
    assert lines(result)[1:] == [
        [one, "a", "0", "2", "0", "0", "0", "0", ""],
        [one, "b", "0", "0", "0", "0", "1", "0", ""],
        [one, "default", "0", "0", "0", "0", "0", "0", ""],
        [one, "*", "0", "2", "0", "0", "1", "0", ""],
        [other, "a", "0", "3", "0", "0", "0", "0", ""],
        [other, "default", "0", "0", "0", "0", "0", "0", ""],
        [other, "*", "0", "3", "0", "0", "0", "0", ""],
        ["total", "a", "0", "5", "0", "0", "0", "0", ""],
        ["total", "b", "0", "0", "0", "0", "1", "0", ""],
        ["total", "default", "0", "0", "0", "0", "0", "0", ""],
        ["total", "*", "0", "5", "0", "0", "1", "0", ""],
    ]
    assert result.stderr == ""


def test_tubes_json_is_a_list_per_server(two: tuple[Server, Server]) -> None:
    first, second = two
    # BEANSTALKD_URL takes a list too, spaces around the commas allowed.
    env: dict[str, str | None] = {"BEANSTALKD_URL": f"{shown(first)} , {shown(second)}"}
    data = json.loads(ok(invoke(["tubes", "--json"], env=env)).stdout)
    assert [(d["server"], d["error"]) for d in data] == [
        (shown(first), None),
        (shown(second), None),
    ]
    assert [t["name"] for t in data[0]["tubes"]] == ["a", "b", "default"]
    assert data[1]["tubes"][0]["current-jobs-ready"] == 3
    assert set(data[0]) == {"server", "error", "tubes"}


def test_stats_over_two_servers(two: tuple[Server, Server]) -> None:
    first, second = two
    address = f"{shown(first)},{shown(second)}"
    result = ok(invoke(["stats", "--address", address]))
    rows = {row[0]: row[1:] for row in lines(result)}
    assert rows["key"] == [shown(first), shown(second), "total"]
    assert rows["current-jobs-ready"] == ["2", "3", "5"]
    assert rows["current-jobs-buried"] == ["1", "0", "1"]
    assert rows["total-jobs"] == ["3", "3", "6"]
    assert rows["pid"] == [str(first.pid), str(second.pid), ""]  # not summed
    assert rows["version"][2] == ""
    data = json.loads(ok(invoke(["stats", "--json", "--address", address])).stdout)
    assert [(d["server"], d["error"], d["stats"]["pid"]) for d in data] == [
        (shown(first), None, first.pid),
        (shown(second), None, second.pid),
    ]


def test_top_over_two_servers(two: tuple[Server, Server]) -> None:
    first, second = two
    address = f"{shown(first)},{shown(second)}"
    result = ok(invoke(["top", "--iterations", "2", "--interval", "0", "-a", address]))
    out = result.stdout
    assert out.count("beanstalkd ") == 4
    assert out.count(f" at {shown(first)} ") == 2 and out.count(f" at {shown(second)} ") == 2
    assert out.count(HEADER) == 2
    assert out.count("total\ta\t0\t5\t") == 2
    assert "put 0.0/s" in out.split(HEADER)[1]  # the second frame has rates


def test_a_server_down_is_shown_and_the_status_is_2(two: tuple[Server, Server]) -> None:
    first, second = two
    dead = shown(second)
    second.stop()
    address = f"{shown(first)},{dead}"
    refused = f"Error: cannot connect to {dead}: Connection refused"

    result = invoke(["tubes", "-a", address])
    assert result.exit_code == 2
    assert result.stderr.strip() == refused
    assert [dead, "*", "-", "-", "-", "-", "-", "-", "-"] in lines(result)
    assert ["total", "*", "0", "2", "0", "0", "1", "0", ""] in lines(result)

    result = invoke(["tubes", "--json", "-a", address])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data[1] == {"server": dead, "error": refused[7:], "tubes": None}

    result = invoke(["stats", "-a", address])
    assert result.exit_code == 2 and result.stderr.strip() == refused
    rows = {row[0]: row[1:] for row in lines(result)}
    assert rows["current-jobs-ready"] == ["2", "-", "2"]

    result = invoke(["stats", "--json", "-a", address])
    assert result.exit_code == 2
    assert json.loads(result.stdout)[1] == {"server": dead, "error": refused[7:], "stats": None}

    result = invoke(["top", "-n", "2", "--interval", "0", "-a", address])
    assert result.exit_code == 2
    assert result.stdout.count(f"down: {refused[7:]}") == 2
    assert result.stderr.strip() == refused


def test_a_connection_that_breaks_marks_the_server_down(
    two: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two
    real = beanproto_cli._cli._tube_stats

    def breaks_on_the_second(client: Client[bytes]) -> Any:
        if client.stats().pid == second.pid:
            raise ConnectionResetError(104, "Connection reset by peer")
        return real(client)

    monkeypatch.setattr(beanproto_cli._cli, "_tube_stats", breaks_on_the_second)
    result = invoke(["tubes", "-a", f"{shown(first)},{shown(second)}"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: connection to {shown(second)} failed: Connection reset by peer"
    )


def test_top_reconnects_to_a_server_that_comes_back(
    two: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two
    real = beanproto_cli._cli._tube_stats
    calls = {"n": 0}

    def breaks_once(client: Client[bytes]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second server, first frame
            raise BrokenPipeError(32, "Broken pipe")
        return real(client)

    monkeypatch.setattr(beanproto_cli._cli, "_tube_stats", breaks_once)
    result = invoke(["top", "-n", "2", "--interval", "0", "-a", f"{shown(first)},{shown(second)}"])
    assert result.exit_code == 2  # it was down
    frames = result.stdout.split(HEADER)
    assert f"down: connection to {shown(second)} failed: Broken pipe" in frames[0]
    assert f" at {shown(second)} " in frames[1]  # back in the second frame


@pytest.mark.parametrize(
    "args",
    [
        ["put", "x"],
        ["peek", "1"],
        ["delete", "1"],
        ["kick", "1"],
        ["stats-job", "1"],
        ["stats-tube", "default"],
        ["bury", "-t", "a"],
        ["dump"],
        ["restore"],
        ["tail", "--count", "1"],
        ["move", "--from-tube", "a", "--to-tube", "b"],
    ],
)
def test_other_commands_take_one_server(args: list[str]) -> None:
    result = invoke(["--address", "h1:1,h2:2", *args], input="")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {args[0]} takes one server; got 2 addresses\n"
    assert result.stdout == ""


def test_a_bad_list_is_a_usage_error() -> None:
    result = invoke(["tubes", "--address", "h1:1,,h2:2"])
    assert result.exit_code == 2
    assert "invalid --address: 'h1:1,,h2:2': an empty item in the list" in result.stderr
    result = invoke(["stats"], env={"BEANSTALKD_URL": "h1:1,h1:1"})
    assert result.exit_code == 2
    assert "invalid BEANSTALKD_URL: 'h1:1,h1:1': h1:1 is given twice" in result.stderr


def test_one_server_output_is_unchanged(server: Server) -> None:
    result = ok(invoke(["tubes", "--address", shown(server)]))
    assert result.stdout.splitlines()[0].startswith("tube\turgent\t")
    data = json.loads(ok(invoke(["stats", "--json", "--address", shown(server)])).stdout)
    assert data["pid"] == server.pid


def render(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_the_tables_for_a_terminal(two: tuple[Server, Server]) -> None:
    first = two[0]
    with Client(first.address) as c:
        stats, tubes = c.stats(), beanproto_cli._cli._tube_stats(c)
    servers = [("one:1", tubes), ("two:2", None)]
    table = render(servers_tubes_table(servers))
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in table.splitlines() if "│" in ln]
    assert ["one:1", "a", "0", "2", "0", "0", "0", "0", ""] in cells
    assert ["two:2", "*", "-", "-", "-", "-", "-", "-", "-"] in cells
    assert cells[-1] == ["total", "*", "0", "2", "0", "0", "1", "0", ""]
    table = render(servers_stats_table([("one:1", stats), ("two:2", None)], "2 servers"))
    assert "2 servers" in table
    (row,) = [ln for ln in table.splitlines() if "current-jobs-ready" in ln]
    assert [c.strip() for c in row.split("│")[1:-1]] == ["current-jobs-ready", "2", "-", "2"]
    frame = render(servers_top_frame(["line one", "down: two:2"], servers))
    assert frame.startswith("line one\ndown: two:2\n")
