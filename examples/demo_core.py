"""Drive the sans-IO core over a plain socket: put, reserve, delete, stats.

This is the whole I/O loop an embedder writes: ``send`` a command and write its
bytes; then call ``next_event`` and, on ``NEED_DATA``, read and ``receive_data``.

    python examples/demo_core.py --address 127.0.0.1:11300
"""

from __future__ import annotations

import argparse
import socket
import time

import beanproto as bp


def exchange(sock: socket.socket, conn: bp.Connection, *commands: bp.Command) -> list[bp.Event]:
    """Write the commands in one go (pipelined) and read one reply per command."""
    sock.sendall(b"".join(conn.send(command) for command in commands))
    events: list[bp.Event] = []
    while len(events) < len(commands):
        event = conn.next_event()
        if event is bp.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        else:
            events.append(event)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:11300", help="host:port of beanstalkd")
    parser.add_argument("--jobs", type=int, default=1000, help="how many jobs to move")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    tube = f"demo-{int(time.time())}"

    with socket.create_connection((host, int(port))) as sock:
        conn = bp.Connection()
        print(f"connected to {args.address}; tube {tube!r}")
        print(
            "use/watch/ignore ->",
            exchange(sock, conn, bp.Use(tube), bp.Watch(tube), bp.Ignore("default")),
        )

        start = time.perf_counter()
        inserted = exchange(
            sock, conn, *(bp.Put(b"job %d" % i, priority=i % 10) for i in range(args.jobs))
        )
        put_s = time.perf_counter() - start
        ids = [e.id for e in inserted if isinstance(e, bp.Inserted)]
        print(
            f"put {len(ids)} jobs pipelined in {put_s * 1000:.1f} ms "
            f"({len(ids) / put_s:,.0f} jobs/s)"
        )

        start = time.perf_counter()
        reserved = exchange(sock, conn, *(bp.ReserveWithTimeout(0) for _ in ids))
        jobs = [e for e in reserved if isinstance(e, bp.Reserved)]
        deleted = exchange(sock, conn, *(bp.Delete(job.id) for job in jobs))
        took = time.perf_counter() - start
        print(
            f"reserved {len(jobs)} (first: id {jobs[0].id} body {jobs[0].body!r}, "
            f"lowest priority first) and deleted {sum(isinstance(e, bp.Deleted) for e in deleted)} "
            f"in {took * 1000:.1f} ms"
        )
        print("reserve on the empty tube ->", exchange(sock, conn, bp.ReserveWithTimeout(0))[0])
        print("delete of a deleted job ->", exchange(sock, conn, bp.Delete(ids[0]))[0])

        (stats,) = exchange(sock, conn, bp.Stats())
        assert isinstance(stats, bp.ServerStats)
        print(
            f"server {stats.version} pid {stats.pid}: cmd_put={stats.cmd_put} "
            f"cmd_delete={stats.cmd_delete} current_jobs_ready={stats.current_jobs_ready}"
        )
        try:
            bp.Use("no spaces allowed")
        except bp.InvalidArgument as exc:
            print("refused before the wire:", exc)
        sock.sendall(conn.send(bp.Quit()))
        conn.receive_data(sock.recv(65536))
        print("after quit ->", conn.next_event())


if __name__ == "__main__":
    main()
