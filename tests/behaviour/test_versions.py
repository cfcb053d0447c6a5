"""What changes between beanstalkd 1.10 and 1.13, as the clients see it (docs/versions.md).

Each test runs on the versions it concerns (the ``beanstalkd`` marker of conftest.py) and
is skipped on the others; ``scripts/version-matrix.sh`` runs this file against each
version, the whole suite against the system's beanstalkd.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

import pytest
from behaviour_facade import OpenClient, anyio_backend, flavour, open_client_fixture  # noqa: F401

import beanproto as bp
import beanproto_sync
from conftest import beanstalkd_binary, launch, server_version_text

if TYPE_CHECKING:
    from tests.conftest import Server

anyio_mark = pytest.mark.anyio


@anyio_mark
async def test_stats_version_is_the_server_s(open_client: OpenClient) -> None:
    async with open_client() as c:
        assert (await c.stats()).version == server_version_text()


# -- reserve-job: new in 1.12 --------------------------------------------------------------


@anyio_mark
@pytest.mark.beanstalkd(before="1.12", reason="reserve-job is new in 1.12")
async def test_reserve_job_before_1_12_is_bad_format(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube, watch=tube) as c:
        job_id = await c.put(b"x")
        # `reserve-job 5` is read as `reserve` with something after it: BAD_FORMAT.
        with pytest.raises(bp.BadFormatError) as info:
            await c.reserve_job(job_id)
        assert info.value.reply == "BAD_FORMAT"
        # A refusal like any other: the connection is in step and the job untouched.
        assert await c.using() == tube
        assert (await c.stats_job(job_id)).state == "ready"
        assert (await c.reserve(timeout=0)).id == job_id
        await c.delete(job_id)


@anyio_mark
@pytest.mark.beanstalkd(since="1.12", reason="reserve-job is new in 1.12")
async def test_reserve_job_since_1_12(open_client: OpenClient, tube: str) -> None:
    async with open_client(use=tube) as c:  # watching `default` only
        job_id = await c.put(b"x", delay=100)
        assert (await c.reserve_job(job_id)) == bp.Job(job_id, b"x")
        await c.delete(job_id)


# -- stats: draining, os and platform are new in 1.12 ----------------------------------------


@anyio_mark
@pytest.mark.beanstalkd(before="1.12", reason="the draining, os and platform stats are new in 1.12")
async def test_stats_before_1_12_lack_draining_os_platform(open_client: OpenClient) -> None:
    async with open_client() as c:
        stats = await c.stats()
        assert (stats.draining, stats.os, stats.platform) == (None, None, None)
        assert stats.extra == {}


@anyio_mark
@pytest.mark.beanstalkd(since="1.12", reason="the draining, os and platform stats are new in 1.12")
async def test_stats_since_1_12_have_draining_os_platform(open_client: OpenClient) -> None:
    async with open_client() as c:
        stats = await c.stats()
        assert stats.draining is False
        assert (stats.os, stats.platform) == (os.uname().version, os.uname().machine)
        assert stats.extra == {}


# -- Unix sockets: new in 1.12 --------------------------------------------------------------


@pytest.mark.beanstalkd(before="1.12", reason="-l unix: is new in 1.12")
def test_unix_socket_before_1_12_the_server_exits() -> None:
    """Older servers take `unix:PATH` for a host name and exit (start_server skips a
    test that asks for one), and a failed start leaves no pipe open behind it. From 1.12
    on, test_behaviour.py's test_unix_socket runs each client over a Unix socket."""
    folder = tempfile.mkdtemp(prefix="bp-")
    path = os.path.join(folder, "beanstalkd.sock")
    try:
        with pytest.raises(RuntimeError, match="beanstalkd exited"):
            launch([beanstalkd_binary(), "-l", f"unix:{path}"], path)
        gc.collect()  # an unclosed pipe would warn here, and the warning fail the test
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- 1.10: command lines of at most 208 bytes -------------------------------------------------
# beanstalkd 1.10 reads a command line of at most 208 bytes (CRLF included), later versions
# 224, and its reply buffer is as small. beanproto checks lines against 224 only (it does
# not know the server's version), so on 1.10 tube names near the 200-character maximum
# make lines the server cannot read. Up to 184 characters every command fits.

LONGEST_ON_1_10 = 184


def long_name(tube: str, length: int) -> str:
    """A tube name of ``length`` characters that no other test uses."""
    return (tube + "-" * length)[:length]


def test_longest_names_of_every_command_fit_in_1_10_s_lines() -> None:
    """The arithmetic behind LONGEST_ON_1_10: the longest line a tube command makes with
    such a name (pause-tube with the largest delay), and the one reply that echoes a name
    (`USING <name>`, which 1.10's buffer must hold with a NUL after it)."""
    name = "t" * LONGEST_ON_1_10
    commands = [
        bp.Use(name),
        bp.Watch(name),
        bp.Ignore(name),
        bp.StatsTube(name),
        bp.PauseTube(name, 2**32 - 1),
    ]
    assert max(len(c._encode()) for c in commands) == 208
    assert len(b"USING %s\r\n" % name.encode()) < 208


@pytest.mark.beanstalkd(before="1.11", reason="1.10 reads lines of at most 208 bytes")
def test_1_10_takes_tube_names_up_to_184_characters(server: Server, tube: str) -> None:
    name = long_name(tube, LONGEST_ON_1_10)
    with beanproto_sync.Client(server.address, timeout=5, use=name, watch=[name, tube]) as c:
        assert c.using() == name
        job_id = c.put(b"x")
        assert c.stats_tube(name).current_jobs_ready == 1
        c.pause_tube(name, 2**32 - 1)
        c.pause_tube(name, 0)
        assert c.ignore(name) == 1
        assert c.watch(name) == 2
        assert c.reserve(timeout=0).id == job_id
        c.delete(job_id)
        assert sorted(c.watching()) == sorted([name, tube])  # in step all along


@pytest.mark.timeout(60)
@pytest.mark.beanstalkd(before="1.11", reason="1.10 reads lines of at most 208 bytes")
@pytest.mark.parametrize("command", ["use", "ignore", "stats_tube", "pause_tube"])
def test_1_10_over_long_tube_names(server: Server, tube: str, command: str) -> None:
    """What a 200-character name does on 1.10, through the blocking client: nothing
    hangs, but the connection does not stay trustworthy (docs/versions.md). The server
    refuses the command, and then either acts on it all the same (`use`), eats the next
    command (`ignore`), or sends a reply no call asked for (`stats-tube`, `pause-tube`).
    This records the behaviour, so that a change to it shows."""
    name = long_name(tube, 200)
    started = time.monotonic()
    with beanproto_sync.Client(server.address, timeout=5, watch=[name, "default"]) as c:
        if command == "use":
            # `use <200>` fits the line, but `USING <200>` does not fit 1.10's reply
            # buffer: INTERNAL_ERROR, after the server switched to the tube all the same.
            with pytest.raises(bp.InternalServerError):
                c.use(name)
            job_id = c.put(b"lands in the long tube")
            with beanproto_sync.Client(server.address, timeout=5) as other:
                assert other.stats_job(job_id).tube == name
                other.delete(job_id)
            assert sorted(c.watching()) == sorted([name, "default"])  # still in step
        elif command == "ignore":
            # 209 bytes: the server refuses the first 208 and keeps the LF left over as
            # the start of the next line, so the next command is lost; the
            # UNKNOWN_COMMAND it gets is the server's answer to the mangled line.
            with pytest.raises(bp.BadFormatError):
                c.ignore(name)
            with pytest.raises(bp.UnknownCommandError):
                c.using()
            assert sorted(c.watching()) == sorted([name, "default"])  # not ignored
        else:
            # 213 and 215 bytes: BAD_FORMAT for the first 208, then UNKNOWN_COMMAND for
            # the rest of the line, a reply nobody asked for. If it comes with the first,
            # the client closes the connection at once; if it comes later, the next call
            # takes it for its reply and the client finds out on the call after.
            with pytest.raises(bp.BadFormatError):
                if command == "stats_tube":
                    c.stats_tube(name)
                else:
                    c.pause_tube(name, 1)
            outcomes: list[str] = []
            for follow_up in (c.using, c.watching):
                try:
                    follow_up()
                    outcomes.append("answered")
                except bp.Error as exc:
                    outcomes.append(type(exc).__name__)
                if c.closed:
                    break
            assert outcomes in (
                ["BrokenConnectionError"],
                ["UnknownCommandError"],
                ["UnknownCommandError", "RemoteProtocolError"],
            ), outcomes
            assert c.closed
    assert time.monotonic() - started < 10


@anyio_mark
@pytest.mark.beanstalkd(since="1.11", reason="1.10 reads lines of at most 208 bytes")
async def test_200_character_tube_names_since_1_11(open_client: OpenClient, tube: str) -> None:
    name = long_name(tube, 200)
    async with open_client(use=name, watch=[name, "default"]) as c:
        assert await c.using() == name
        job_id = await c.put(b"x")
        assert (await c.stats_tube(name)).current_jobs_ready == 1
        await c.pause_tube(name, 2**32 - 1)
        await c.pause_tube(name, 0)
        assert await c.ignore(name) == 1
        assert await c.watch(name) == 2
        await c.delete(job_id)


@anyio_mark
@pytest.mark.parametrize("command", ["use", "ignore", "stats_tube", "pause_tube"])
async def test_max_command_size_of_1_10_refuses_what_it_cannot_read(
    open_client: OpenClient, tube: str, command: str
) -> None:
    """With ``max_command_size=MAX_LINE_SIZE_1_10`` the clients refuse, before sending
    anything, the commands 1.10 would mangle (test_1_10_over_long_tube_names shows what
    they do), on every version; the connection stays in step."""
    name = long_name(tube, 200)
    async with open_client(
        use=tube, watch=[name, tube], max_command_size=bp.MAX_LINE_SIZE_1_10
    ) as c:
        call = {
            "use": lambda: c.use(name),
            "ignore": lambda: c.ignore(name),
            "stats_tube": lambda: c.stats_tube(name),
            "pause_tube": lambda: c.pause_tube(name, 0),
        }[command]
        with pytest.raises(bp.InvalidArgument, match="max_command_size=208"):
            await call()
        job_id = await c.put(b"still in step")
        assert await c.using() == tube
        assert sorted(await c.watching()) == sorted([name, tube])
        assert (await c.reserve(timeout=0)).id == job_id
        await c.delete(job_id)
