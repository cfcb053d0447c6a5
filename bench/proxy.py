"""A latency-injecting TCP proxy, for benchmarks: a network's delay on loopback.

Every chunk read from one side is written to the other ``delay`` seconds after it
was read, in order, per direction. Delays never add up: each direction keeps a queue
of ``(due time, bytes)`` and one timer for its head, so pipelined data keeps flowing
(a thousand chunks read within a millisecond leave within a millisecond,
``delay`` later), and a round trip through the proxy costs ``2 * delay`` more than
without it. A chunk due when the timer fires goes out with the others due then, in
one write. Reading from a side pauses while the other side's write buffer is full.

asyncio protocols, no streams: the proxy of one server runs in its own process,
so it shares no GIL with the client being measured.

As a module::

    proc, address = start_proxy(("127.0.0.1", 11300), delay=0.002)
    ...  # connect to `address` instead
    stop_proxy(proc)

As a command (prints ``listening HOST PORT`` once it accepts connections)::

    python bench/proxy.py 127.0.0.1:11300 [--listen 127.0.0.1:0] [--delay 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import subprocess
import sys
from pathlib import Path

Address = tuple[str, int]

#: Stop reading from a side while the other side's transport holds this much unsent.
_HIGH_WATER = 1 << 20


class _Half(asyncio.Protocol):
    """One side's socket: what it reads goes, delayed, to its peer's transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None  # None until the upstream connection is made
        #: Chunks read here and not yet written to the peer: (due, bytes); b"" is the end.
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False

    # -- reading this side -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self._push(data)

    def eof_received(self) -> bool:
        self._end()
        return False  # close this side; the peer is closed once the data before is out

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._push(b"")

    def _push(self, data: bytes) -> None:
        due = self.loop.time() + self.delay
        self.queue.append((due, data))
        self.schedule()

    # -- writing to the peer ---------------------------------------------------------

    def schedule(self) -> None:
        """Arm the timer for the head of the queue, once there is a peer to write to."""
        if self.timer is None and self.queue and self.peer is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        """Write every chunk that is due to the peer, in one write; re-arm for the next."""
        self.timer = None
        assert self.peer is not None and self.peer.transport is not None
        target = self.peer.transport
        now = self.loop.time()
        out: list[bytes] = []
        end = False
        queue = self.queue
        while queue and queue[0][0] <= now:
            data = queue.popleft()[1]
            if not data:
                end = True
                queue.clear()
                break
            out.append(data)
        if target.is_closing():
            queue.clear()
            return
        if out:
            target.write(b"".join(out))
        if end:
            target.close()  # after what it holds is written
        self.schedule()

    def pause_writing(self) -> None:  # this side's socket is full: stop reading the peer
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def serve(target: Address, listen: Address, delay: float) -> asyncio.Server:
    """Accept connections on ``listen`` and relay each to ``target``, ``delay`` each way."""
    loop = asyncio.get_running_loop()

    async def upstream(client: _Half) -> None:
        try:
            _, server = await loop.create_connection(lambda: _Half(loop, delay), *target)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        assert isinstance(server, _Half)
        client.peer, server.peer = server, client
        client.schedule()  # what the client sent while the upstream connection was made
        server.schedule()

    def accept() -> _Half:
        half = _Half(loop, delay)
        # Connecting upstream while the client's first bytes are queued already.
        task = loop.create_task(upstream(half))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return half

    return await loop.create_server(accept, *listen)


_tasks: set[asyncio.Task[None]] = set()


async def _main(target: Address, listen: Address, delay: float) -> None:
    server = await serve(target, listen, delay)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host} {port}", flush=True)
    async with server:
        await server.serve_forever()


def start_proxy(
    target: Address, delay: float = 0.002, listen: Address = ("127.0.0.1", 0)
) -> tuple[subprocess.Popen[bytes], Address]:
    """Run a proxy to ``target`` in a new process; return it and the address it listens on.

    The process runs on every CPU this one may use, whatever this process is pinned to.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    allowed = set(range(os.cpu_count() or 1))

    def unpin() -> None:
        if cpus:
            os.sched_setaffinity(0, allowed)

    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            f"{target[0]}:{target[1]}",
            "--listen",
            f"{listen[0]}:{listen[1]}",
            "--delay",
            str(delay),
        ],
        stdout=subprocess.PIPE,
        preexec_fn=unpin,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if len(line) != 3 or line[0] != "listening":
        proc.kill()
        raise RuntimeError(f"the proxy did not start: {line!r}")
    return proc, (line[1], int(line[2]))


def stop_proxy(proc: subprocess.Popen[bytes]) -> None:
    """Stop a proxy that :func:`start_proxy` started."""
    proc.terminate()
    proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", type=_address, help="HOST:PORT to relay to")
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0))
    parser.add_argument("--delay", type=float, default=0.002, help="seconds, each way")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.target, args.listen, args.delay))


if __name__ == "__main__":
    main()
