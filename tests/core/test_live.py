"""The sans-IO core against a real beanstalkd: every command, every reply the server can
be made to send, pipelining, and the connection's view of its tubes."""

from __future__ import annotations

import random
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import beanproto as bp
from conftest import Server, new_tube_name, server_version

U32 = 2**32 - 1
U64 = 2**64 - 1

Peer = tuple[socket.socket, bp.Connection]


def read_events(sock: socket.socket, conn: bp.Connection, count: int) -> list[Any]:
    """Read until `count` events have come (a close counts as one)."""
    events: list[Any] = []
    while len(events) < count:
        event = conn.next_event()
        if event is bp.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        else:
            events.append(event)
    return events


def run(sock: socket.socket, conn: bp.Connection, *commands: bp.Command) -> list[Any]:
    """Write the commands in one go and read one event per command (quit has none)."""
    sock.sendall(b"".join(conn.send(c) for c in commands))
    return read_events(sock, conn, sum(type(c) is not bp.Quit for c in commands))


@pytest.fixture
def connect() -> Iterator[Callable[[Server], Peer]]:
    socks: list[socket.socket] = []

    def make(server: Server) -> Peer:
        sock = socket.create_connection(server.address, timeout=10)
        sock.settimeout(10)
        socks.append(sock)
        return sock, bp.Connection()

    yield make
    for sock in socks:
        sock.close()


@pytest.fixture
def peer(server: Server, connect: Callable[[Server], Peer]) -> Peer:
    return connect(server)


def own_tube(peer: Peer, tube: str) -> None:
    """Use and watch only `tube`, so no other test's jobs can get in the way."""
    events = run(*peer, bp.Use(tube), bp.Watch(tube), bp.Ignore("default"))
    assert events == [bp.Using(tube), bp.Watching(2), bp.Watching(1)]


def test_use_watch_ignore_and_lists(peer: Peer, tube: str) -> None:
    sock, conn = peer
    assert run(sock, conn, bp.Use(tube)) == [bp.Using(tube)]
    assert conn.used_tube == tube
    assert run(
        sock,
        conn,
        bp.Watch(tube),
        bp.Watch(tube),
        bp.Ignore("default"),
        bp.Ignore(tube),
        bp.Ignore(new_tube_name()),
    ) == [bp.Watching(2), bp.Watching(2), bp.Watching(1), bp.NotIgnored(), bp.Watching(1)]
    assert conn.watched_tubes == (tube,)
    used, watched, tubes = run(sock, conn, bp.ListTubeUsed(), bp.ListTubesWatched(), bp.ListTubes())
    assert used == bp.Using(tube)
    assert watched == bp.TubeList((tube,))
    assert isinstance(tubes, bp.TubeList)
    assert {tube, "default"} <= set(tubes.tubes)


def test_put_bodies_and_peek(peer: Peer, tube: str) -> None:
    sock, conn = peer
    run(sock, conn, bp.Use(tube))
    bodies = [b"a\r\nb\x00c\r\n", b"", bytes(range(256)), b"\r\n", b"put 0 0 60 1\r\nx\r\n"]
    events = run(sock, conn, *(bp.Put(b) for b in bodies))
    ids = [e.id for e in events]
    assert events == [bp.Inserted(i) for i in ids]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert run(sock, conn, *(bp.Peek(i) for i in ids)) == [
        bp.Found(i, b) for i, b in zip(ids, bodies, strict=True)
    ]
    [edge] = run(sock, conn, bp.Put(b"edge", priority=U32, delay=U32, ttr=U32))
    assert isinstance(edge, bp.Inserted)
    [stats] = run(sock, conn, bp.StatsJob(edge.id))
    assert isinstance(stats, bp.JobStats)
    assert (stats.id, stats.tube, stats.state) == (edge.id, tube, "delayed")
    assert (stats.pri, stats.delay, stats.ttr) == (U32, U32, U32)
    assert run(sock, conn, bp.Peek(edge.id), bp.Peek(U64)) == [
        bp.Found(edge.id, b"edge"),
        bp.NotFound(),
    ]
    assert run(sock, conn, *(bp.Delete(i) for i in [*ids, edge.id])) == [bp.Deleted()] * 6


def test_reserve_family(peer: Peer, tube: str) -> None:
    sock, conn = peer
    own_tube(peer, tube)
    assert run(sock, conn, bp.ReserveWithTimeout(0)) == [bp.TimedOut()]
    [ready, delayed] = run(sock, conn, bp.Put(b"ready"), bp.Put(b"later", delay=100))
    sock.sendall(conn.send(bp.Reserve()))  # a job is ready, so this returns at once
    assert conn.reserve_waiting
    assert read_events(sock, conn, 1) == [bp.Reserved(ready.id, b"ready")]
    assert not conn.reserve_waiting
    if server_version() >= (1, 12):
        assert run(sock, conn, bp.ReserveJob(delayed.id), bp.ReserveJob(delayed.id)) == [
            bp.Reserved(delayed.id, b"later"),
            bp.NotFound(),
        ]
    else:
        # reserve-job is new in 1.12: older servers read it as a malformed `reserve`.
        assert run(sock, conn, bp.ReserveJob(delayed.id)) == [bp.BadFormat()]
        assert run(sock, conn, bp.KickJob(delayed.id), bp.ReserveWithTimeout(0)) == [
            bp.Kicked(),
            bp.Reserved(delayed.id, b"later"),
        ]
    assert run(
        sock,
        conn,
        bp.Touch(ready.id),
        bp.Delete(ready.id),
        bp.Delete(ready.id),
        bp.Touch(ready.id),
        bp.Delete(delayed.id),
        bp.ReserveWithTimeout(0),
    ) == [bp.Touched(), bp.Deleted(), bp.NotFound(), bp.NotFound(), bp.Deleted(), bp.TimedOut()]


def test_peek_ready_delayed_buried(peer: Peer, tube: str) -> None:
    sock, conn = peer
    own_tube(peer, tube)
    assert run(sock, conn, bp.PeekReady(), bp.PeekDelayed(), bp.PeekBuried()) == [bp.NotFound()] * 3
    ready, delayed, urgent = run(
        sock, conn, bp.Put(b"r"), bp.Put(b"d", delay=100), bp.Put(b"b", priority=0)
    )
    assert run(sock, conn, bp.ReserveWithTimeout(0), bp.Bury(urgent.id, 7)) == [
        bp.Reserved(urgent.id, b"b"),
        bp.Buried(),
    ]
    assert run(sock, conn, bp.PeekReady(), bp.PeekDelayed(), bp.PeekBuried()) == [
        bp.Found(ready.id, b"r"),
        bp.Found(delayed.id, b"d"),
        bp.Found(urgent.id, b"b"),
    ]
    run(sock, conn, *(bp.Delete(e.id) for e in (ready, delayed, urgent)))


def test_release_bury_kick(peer: Peer, tube: str) -> None:
    sock, conn = peer
    own_tube(peer, tube)
    [job] = run(sock, conn, bp.Put(b"x"))
    id = job.id
    assert run(sock, conn, bp.ReserveWithTimeout(0), bp.Release(id, priority=5, delay=100)) == [
        bp.Reserved(id, b"x"),
        bp.Released(),
    ]
    [stats] = run(sock, conn, bp.StatsJob(id))
    assert (stats.state, stats.pri, stats.delay) == ("delayed", 5, 100)
    assert run(sock, conn, bp.KickJob(id), bp.KickJob(id), bp.KickJob(U64)) == [
        bp.Kicked(),
        bp.NotFound(),  # a ready job cannot be kicked
        bp.NotFound(),
    ]
    assert run(sock, conn, bp.ReserveWithTimeout(0), bp.Bury(id)) == [
        bp.Reserved(id, b"x"),
        bp.Buried(),
    ]
    # none of these hold: the job is buried, not reserved by this connection
    assert run(sock, conn, bp.Touch(id), bp.Release(id), bp.Bury(id)) == [bp.NotFound()] * 3
    assert run(sock, conn, bp.Kick(10), bp.Kick(10)) == [bp.Kicked(1), bp.Kicked(0)]
    assert run(sock, conn, bp.Delete(id), bp.Delete(id)) == [bp.Deleted(), bp.NotFound()]


def test_stats(server: Server, peer: Peer, tube: str) -> None:
    sock, conn = peer
    [stats] = run(sock, conn, bp.Stats())
    assert isinstance(stats, bp.ServerStats)
    assert stats.pid == server.pid
    assert stats.current_connections >= 1
    assert stats.draining in (False, None)
    assert run(sock, conn, bp.StatsTube(tube)) == [bp.NotFound()]
    [_, job] = run(sock, conn, bp.Use(tube), bp.Put(b"x", priority=3, ttr=9))
    [tube_stats, job_stats] = run(sock, conn, bp.StatsTube(tube), bp.StatsJob(job.id))
    assert isinstance(tube_stats, bp.TubeStats)
    assert (tube_stats.name, tube_stats.current_jobs_ready, tube_stats.total_jobs) == (tube, 1, 1)
    assert (tube_stats.current_using, tube_stats.pause) == (1, 0)
    assert isinstance(job_stats, bp.JobStats)
    assert (job_stats.id, job_stats.tube, job_stats.state) == (job.id, tube, "ready")
    assert (job_stats.pri, job_stats.ttr, job_stats.reserves) == (3, 9, 0)
    assert run(sock, conn, bp.StatsJob(U64), bp.Delete(job.id)) == [bp.NotFound(), bp.Deleted()]


def test_pause_tube(peer: Peer, tube: str) -> None:
    sock, conn = peer
    run(sock, conn, bp.Use(tube))
    assert run(sock, conn, bp.PauseTube(tube, 100)) == [bp.Paused()]
    [stats] = run(sock, conn, bp.StatsTube(tube))
    assert stats.pause == 100
    assert run(sock, conn, bp.PauseTube(tube, 0), bp.PauseTube(new_tube_name(), 1)) == [
        bp.Paused(),
        bp.NotFound(),
    ]


def test_quit(peer: Peer) -> None:
    sock, conn = peer
    assert run(sock, conn, bp.ListTubeUsed(), bp.Quit()) == [bp.Using("default")]
    assert conn.state is bp.State.QUIT_SENT
    assert read_events(sock, conn, 1) == [bp.ConnectionClosed()]
    assert conn.state is bp.State.CLOSED
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Stats())


def test_deadline_soon(peer: Peer, tube: str) -> None:
    sock, conn = peer
    own_tube(peer, tube)
    [job] = run(sock, conn, bp.Put(b"x", ttr=2))
    assert run(sock, conn, bp.ReserveWithTimeout(0)) == [bp.Reserved(job.id, b"x")]
    start = time.monotonic()
    sock.sendall(conn.send(bp.ReserveWithTimeout(5)))
    assert conn.reserve_waiting
    assert read_events(sock, conn, 1) == [bp.DeadlineSoon()]
    assert time.monotonic() - start < 1.5
    assert not conn.reserve_waiting
    assert run(sock, conn, bp.Delete(job.id)) == [bp.Deleted()]


def test_job_too_big(
    fresh_server: Callable[..., Server], connect: Callable[[Server], Peer]
) -> None:
    sock, conn = connect(fresh_server("-z", "10"))
    assert run(sock, conn, bp.Put(b"x" * 11), bp.Put(b"y" * 10), bp.Peek(1)) == [
        bp.JobTooBig(),
        bp.Inserted(1),
        bp.Found(1, b"y" * 10),
    ]


def test_draining(fresh_server: Callable[..., Server], connect: Callable[[Server], Peer]) -> None:
    srv = fresh_server()
    sock, conn = connect(srv)
    srv.signal(signal.SIGUSR1)
    # Wait for the signal to land. `stats` says `draining` only from 1.12 on, so ask a
    # put instead: deleted while it is taken, refused once the server drains.
    deadline = time.monotonic() + 5
    while isinstance(put := run(sock, conn, bp.Put(b"probe"))[0], bp.Inserted):
        assert run(sock, conn, bp.Delete(put.id)) == [bp.Deleted()]
        assert time.monotonic() < deadline, "the server did not start draining"
        time.sleep(0.01)
    assert put == bp.Draining()
    assert run(sock, conn, bp.Stats())[0].draining is (
        True if server_version() >= (1, 12) else None
    )
    assert run(sock, conn, bp.Put(b"x"), bp.ReserveWithTimeout(0), bp.ListTubeUsed()) == [
        bp.Draining(),
        bp.TimedOut(),
        bp.Using("default"),
    ]


def test_pipelined_batch(
    fresh_server: Callable[..., Server], connect: Callable[[Server], Peer]
) -> None:
    # A private server, so the ids are 1..n and the deletes can go in the same write.
    sock, conn = connect(fresh_server())
    n = 500
    bodies = [b"job %d\r\n\x00%b" % (i, b"." * (i % 50)) for i in range(n)]
    commands: list[bp.Command] = [bp.Use("batch"), bp.Watch("batch"), bp.Ignore("default")]
    commands += [bp.Put(body, priority=n - i) for i, body in enumerate(bodies)]
    commands += [bp.ReserveWithTimeout(0)] * (n + 1)
    commands += [bp.Delete(id) for id in range(1, n + 1)]
    commands += [bp.Delete(1), bp.ListTubeUsed()]
    events = run(sock, conn, *commands)
    assert len(events) == len(commands)
    assert events[:3] == [bp.Using("batch"), bp.Watching(2), bp.Watching(1)]
    assert events[3 : 3 + n] == [bp.Inserted(i + 1) for i in range(n)]
    # lowest priority value first: the last job put comes out first
    reserved = events[3 + n : 3 + 2 * n]
    assert reserved == [bp.Reserved(i + 1, bodies[i]) for i in reversed(range(n))]
    assert events[3 + 2 * n] == bp.TimedOut()
    assert events[4 + 2 * n : 4 + 3 * n] == [bp.Deleted()] * n
    assert events[-2:] == [bp.NotFound(), bp.Using("batch")]
    assert conn.pending == ()


def test_connection_view_matches_server(peer: Peer, tube: str) -> None:
    sock, conn = peer
    names = [tube, f"{tube}-a", f"{tube}-b", "default"]
    rng = random.Random(20240601)
    for _ in range(4):
        batch = [
            rng.choice([bp.Use, bp.Watch, bp.Ignore, bp.Ignore])(rng.choice(names))
            for _ in range(25)
        ]
        events = run(sock, conn, *batch)
        assert all(type(e) in (bp.Using, bp.Watching, bp.NotIgnored) for e in events)
        for cmd, event in zip(batch, events, strict=True):
            if type(cmd) is bp.Use:
                assert event == bp.Using(cmd.tube)
        used, watched = conn.used_tube, conn.watched_tubes
        assert len(events) == 25
        last = [e for e in events if type(e) is bp.Watching]
        if last:
            assert last[-1].count == len(watched)
        server_used, server_watched = run(sock, conn, bp.ListTubeUsed(), bp.ListTubesWatched())
        assert server_used == bp.Using(used)
        assert sorted(server_watched.tubes) == sorted(watched)
        assert conn.watched_tubes == server_watched.tubes
