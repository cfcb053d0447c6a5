"""Parser benchmark: beanproto's receive path against a minimal hand-written parser.

Feeds 100,000 pipelined ``RESERVED <id> 100`` replies (bodies containing CRLF)
and 100,000 ``INSERTED <id>`` replies in 64 KiB chunks, and reports events per
second for beanproto (typed, validated events matched to pending commands) and
for the baseline (bytes + offset + ``find`` + ``int()``, one tuple per reply,
no validation), with their ratio. Median of ``--reps`` runs, interleaved.

A third row, ``typed floor``, is the baseline's own loop building beanproto's
frozen event classes (through their constructors) and handing them
out one call at a time, as ``next_event`` does. It checks nothing either, so it
shows what typed events and the pull API cost by themselves; the gap between it
and beanproto is the price of validating and matching every reply.

    python bench/parser.py [--frames 100000] [--body 100] [--chunk 65536] [--reps 5]

The commands are queued with ``send`` before the clock starts: this measures
the receive path only. Both sides consume each reply as it comes (count it, add
up the ids) rather than keep 100,000 objects alive, as a client does; keeping
them would mostly measure the cyclic GC walking the survivors.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial

import beanproto as bp


class BaselineParser:
    """The fastest simple parser: bytes, offset, find, int(), one tuple per reply.

    No validation, no matching to commands, no limits: the floor to compare with.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        buf = self.buf[self.pos :] + data if self.pos < len(self.buf) else data
        pos, n = 0, len(buf)
        out: list[tuple[bytes, int, bytes]] = []
        append, find, startswith = out.append, buf.find, buf.startswith
        while True:
            i = find(b"\r\n", pos)
            if i < 0:
                break
            if startswith(b"RESERVED ", pos):
                _, jid, nb = buf[pos:i].split()
                start = i + 2
                end = start + int(nb)
                if end + 2 > n:
                    break
                append((b"RESERVED", int(jid), buf[start:end]))
                pos = end + 2
            else:
                word, _, rest = buf[pos:i].partition(b" ")
                append((word, int(rest), b""))
                pos = i + 2
        self.buf, self.pos = buf, pos
        return out


class TypedFloorParser:
    """The baseline's loop, producing beanproto's events through a pull method."""

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0
        self.ready: deque[bp.Event] = deque()

    def receive_data(self, data: bytes) -> None:
        buf = self.buf[self.pos :] + data if self.pos < len(self.buf) else data
        pos, n = 0, len(buf)
        append, find, startswith = self.ready.append, buf.find, buf.startswith
        event: bp.Event
        while True:
            i = find(b"\r\n", pos)
            if i < 0:
                break
            if startswith(b"RESERVED ", pos):
                _, jid, nb = buf[pos:i].split()
                start = i + 2
                end = start + int(nb)
                if end + 2 > n:
                    break
                event = bp.Reserved(int(jid), buf[start:end])
                pos = end + 2
            else:
                rest = buf[pos:i].partition(b" ")[2]
                event = bp.Inserted(int(rest))
                pos = i + 2
            append(event)
        self.buf, self.pos = buf, pos

    def next_event(self) -> bp.Event | bp.NeedData:
        ready = self.ready
        if ready:
            return ready.popleft()
        return bp.NEED_DATA


def baseline_parse(chunks: Iterable[bytes]) -> tuple[int, int]:
    """Parse and consume every reply as a client would: (replies, sum of ids)."""
    parser = BaselineParser()
    count = total = 0
    for data in chunks:
        for reply in parser.feed(data):
            count += 1
            total += reply[1]
    return count, total


def beanproto_parse(
    conn: bp.Connection | TypedFloorParser, chunks: Iterable[bytes]
) -> tuple[int, int]:
    """Feed and consume every event as an adapter would: (events, sum of ids)."""
    count = total = 0
    receive_data, next_event, need_data = conn.receive_data, conn.next_event, bp.NEED_DATA
    for data in chunks:
        receive_data(data)
        while (event := next_event()) is not need_data:
            count += 1
            total += event.id  # type: ignore[union-attr]
    return count, total


def core_kind() -> str:
    """Whether the core measured is the mypyc-compiled build or pure Python."""
    from beanproto import _connection

    compiled = _connection.__file__.endswith((".so", ".pyd"))
    return "mypyc-compiled" if compiled else "pure Python"


def chunked(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def timed(fn: Callable[[], tuple[int, int]], expect: tuple[int, int]) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    assert result == expect, f"parsed {result}, expected {expect}"
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--body", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=65536)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()

    body = (b"payload\r\n" * (a.body // 9 + 1))[: a.body]
    streams: dict[str, tuple[bytes, Callable[[], bp.Command]]] = {
        f"RESERVED {a.body}B": (
            b"".join(
                b"RESERVED %d %d\r\n%b\r\n" % (i + 1, len(body), body) for i in range(a.frames)
            ),
            bp.Reserve,
        ),
        "INSERTED line": (
            b"".join(b"INSERTED %d\r\n" % (i + 1) for i in range(a.frames)),
            lambda: bp.Put(b"x"),
        ),
    }
    print(f"## Parser: {a.frames} frames per stream, {a.chunk} B chunks, median of {a.reps}\n")
    print(f"core: {core_kind()}\n")
    print("| stream | parser | events/s | ns/event | x baseline |")
    print("|---|---|--:|--:|--:|")
    for name, (stream, make) in streams.items():
        chunks = chunked(stream, a.chunk)
        command = make()
        walls: dict[str, list[float]] = {"baseline": [], "typed floor": [], "beanproto": []}
        expect = (a.frames, a.frames * (a.frames + 1) // 2)
        for _ in range(a.reps):
            walls["baseline"].append(timed(partial(baseline_parse, chunks), expect))
            floor = TypedFloorParser()
            walls["typed floor"].append(timed(partial(beanproto_parse, floor, chunks), expect))
            conn = bp.Connection()
            for _ in range(a.frames):
                conn.send(command)
            walls["beanproto"].append(timed(partial(beanproto_parse, conn, chunks), expect))
            assert not conn.pending and conn.next_event() is bp.NEED_DATA
        base = statistics.median(walls["baseline"])
        for parser, ws in walls.items():
            wall = statistics.median(ws)
            print(
                f"| {name} | {parser} | {a.frames / wall:,.0f} | {wall / a.frames * 1e9:,.0f} "
                f"| {base / wall:.2f} |"
            )


if __name__ == "__main__":
    main()
