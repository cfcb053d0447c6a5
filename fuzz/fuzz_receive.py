"""Coverage-guided fuzz target over the core's receive path.

Each input picks a mix of pending commands, the connection's limits and whether
the stream ends in EOF, and the rest of it is what the server sends. Invariant:

* the bytes either parse (into events, one per owed reply at most) or raise
  :class:`beanproto.RemoteProtocolError`; any other exception is a bug;
* feeding them whole, one byte at a time, or in chunks cut where the input says,
  gives the same events and the same outcome.

Run with atheris (``pip install atheris``; Linux x86-64 wheels for CPython 3.10+):

    .venv/bin/python fuzz/fuzz_receive.py -dict=fuzz/replies.dict -max_total_time=600

Any libFuzzer flag works (``-runs=N``, ``-max_len=N``, ``-jobs=N``); a corpus
directory may be given last (it starts from built-in seeds either way). Without
atheris the same target runs under hypothesis, a randomized but not
coverage-guided fuzzer:

    .venv/bin/python fuzz/fuzz_receive.py --hypothesis 100000

The normal test run runs a bounded amount of both (tests/robust/test_fuzz.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the platform
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports():
        import beanproto as bp
else:
    import beanproto as bp

COMMANDS: list[bp.Command] = [
    bp.Put(b"x"),
    bp.Use("default"),
    bp.Use("t"),
    bp.Reserve(),
    bp.ReserveWithTimeout(0),
    bp.ReserveWithTimeout(5),
    bp.ReserveJob(1),
    bp.Delete(1),
    bp.Release(1),
    bp.Bury(1),
    bp.Touch(1),
    bp.Watch("t"),
    bp.Ignore("t"),
    bp.Peek(1),
    bp.PeekReady(),
    bp.PeekDelayed(),
    bp.PeekBuried(),
    bp.Kick(5),
    bp.KickJob(1),
    bp.StatsJob(1),
    bp.StatsTube("t"),
    bp.Stats(),
    bp.ListTubes(),
    bp.ListTubeUsed(),
    bp.ListTubesWatched(),
    bp.PauseTube("t", 1),
    bp.Quit(),
]
LINE_SIZES = [bp.MAX_LINE_SIZE, 300, 4096]
BODY_SIZES = [2**30, 0, 16, 4096]


class Input:
    """The header of a fuzz input: decoded from its first bytes, whatever they are."""

    def __init__(self, data: bytes) -> None:
        head = data[:12].ljust(12, b"\0")
        n = head[0] % 6
        self.commands = [COMMANDS[b % len(COMMANDS)] for b in head[1 : 1 + n]]
        if bp.Quit() in self.commands:  # nothing can be sent after quit
            del self.commands[self.commands.index(bp.Quit()) + 1 :]
        self.max_line_size = LINE_SIZES[head[7] % len(LINE_SIZES)]
        self.max_body_size = BODY_SIZES[head[8] % len(BODY_SIZES)]
        self.eof = bool(head[9] & 1)
        self.cut = max(1, head[10] * 256 + head[11])  # chunk size of the third run
        self.stream = data[12:]

    @staticmethod
    def encode(commands: list[bp.Command], stream: bytes, *, eof: bool = True) -> bytes:
        """An input that replays ``stream`` after ``commands`` (for seeds)."""
        codes = [COMMANDS.index(c) for c in commands][:5]
        head = bytes([len(codes), *codes]).ljust(7, b"\0") + bytes([0, 0, int(eof), 0, 7])
        return head + stream


Outcome = tuple[list[bp.Event], str]


def run(inp: Input, chunks: Iterator[bytes]) -> Outcome:
    """Send the commands, feed ``chunks`` (then EOF if asked); collect events
    until ``RemoteProtocolError``, ``ConnectionClosed`` or the end of the data."""
    conn = bp.Connection(max_line_size=inp.max_line_size, max_body_size=inp.max_body_size)
    for command in inp.commands:
        conn.send(command)
    events: list[bp.Event] = []

    def drain() -> bool:
        while (event := conn.next_event()) is not bp.NEED_DATA:
            events.append(event)
            if type(event) is bp.ConnectionClosed:
                return True
        return False

    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            if drain():
                return events, "closed"
        if inp.eof:
            conn.receive_data(b"")
            if drain():
                return events, "closed"
            raise AssertionError("EOF was fed and neither an error nor ConnectionClosed came")
    except bp.RemoteProtocolError:
        assert conn.state is bp.State.BROKEN
        return events, "RemoteProtocolError"
    return events, "need data"


def check(data: bytes) -> None:
    """The invariant; raises AssertionError (or the unexpected exception) on a bug."""
    inp = Input(data)
    stream = inp.stream
    whole = run(inp, iter([stream] if stream else []))
    bytewise = run(inp, (stream[i : i + 1] for i in range(len(stream))))
    cut = inp.cut
    chunked = run(inp, (stream[i : i + cut] for i in range(0, len(stream), cut)))
    assert whole == bytewise, (whole, bytewise)
    assert whole == chunked, (whole, chunked)
    events, outcome = whole
    replies = [e for e in events if type(e) is not bp.ConnectionClosed]
    owed = len([c for c in inp.commands if type(c) is not bp.Quit])
    assert len(replies) <= owed, (inp.commands, events)
    if outcome == "closed":
        assert inp.eof and len(replies) == owed


def _payload(cls: type, **values: str) -> bytes:
    """A stats payload with every key of ``cls``, as beanstalkd writes it."""
    lines = [b"---"]
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        kind = str(f.type)
        default = "false" if "bool" in kind else "0.5" if "float" in kind else "1"
        if "str" in kind:
            default = "t"
        lines.append(
            b"%s: %s" % (f.name.replace("_", "-").encode(), values.get(f.name, default).encode())
        )
    return b"\n".join(lines) + b"\n"


def seeds() -> Iterator[bytes]:
    """Valid exchanges, for the fuzzer to start from."""
    job = _payload(bp.JobStats)
    tube = _payload(bp.TubeStats)
    server = _payload(bp.ServerStats, id="5f")
    tubes = b"---\n- default\n- t\n"
    ok = b"OK %d\r\n%b\r\n"
    pairs: list[tuple[bp.Command, bytes]] = [
        (bp.Put(b"x"), b"INSERTED 1\r\n"),
        (bp.Put(b"x"), b"BURIED 1\r\n"),
        (bp.Put(b"x"), b"JOB_TOO_BIG\r\n"),
        (bp.Use("t"), b"USING t\r\n"),
        (bp.Reserve(), b"RESERVED 1 3\r\na\r\n\r\n"),
        (bp.ReserveWithTimeout(0), b"TIMED_OUT\r\n"),
        (bp.ReserveWithTimeout(5), b"DEADLINE_SOON\r\n"),
        (bp.ReserveJob(1), b"RESERVED 1 0\r\n\r\n"),
        (bp.Delete(1), b"DELETED\r\n"),
        (bp.Release(1), b"RELEASED\r\n"),
        (bp.Bury(1), b"BURIED\r\n"),
        (bp.Touch(1), b"NOT_FOUND\r\n"),
        (bp.Watch("t"), b"WATCHING 2\r\n"),
        (bp.Ignore("t"), b"NOT_IGNORED\r\n"),
        (bp.Peek(1), b"FOUND 1 1\r\nx\r\n"),
        (bp.Kick(5), b"KICKED 3\r\n"),
        (bp.KickJob(1), b"KICKED\r\n"),
        (bp.StatsJob(1), ok % (len(job), job)),
        (bp.StatsTube("t"), ok % (len(tube), tube)),
        (bp.Stats(), ok % (len(server), server)),
        (bp.ListTubes(), ok % (len(tubes), tubes)),
        (bp.ListTubeUsed(), b"USING default\r\n"),
        (bp.PauseTube("t", 1), b"PAUSED\r\n"),
        (bp.Stats(), b"BAD_FORMAT\r\n"),
    ]
    for command, reply in pairs:
        yield Input.encode([command], reply)
    for i in range(0, len(pairs) - 4, 4):
        group = pairs[i : i + 4]
        yield Input.encode([c for c, _ in group], b"".join(r for _, r in group), eof=i % 8 == 0)
    yield Input.encode([bp.ListTubeUsed(), bp.Quit()], b"USING default\r\n")


def write_seeds(directory: str) -> None:
    for i, seed in enumerate(seeds()):
        with open(os.path.join(directory, f"seed-{i:03}"), "wb") as f:
            f.write(seed)


def hypothesis_fuzz(examples: int) -> None:
    """The fallback: hypothesis builds inputs from seed pieces and random bytes."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(list(seeds())).map(lambda s: s[12:])
    stream = st.lists(st.one_of(pieces, st.binary(max_size=40)), max_size=6).map(b"".join)
    header = st.binary(min_size=12, max_size=12)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(header, stream)
    def fuzz(head: bytes, body: bytes) -> None:
        check(head + body)

    fuzz()


def main(argv: list[str]) -> None:
    if argv[1:2] == ["--hypothesis"] or atheris is None:
        examples = int(argv[2]) if len(argv) > 2 else 10_000
        hypothesis_fuzz(examples)
        print(f"hypothesis: {examples} examples, no failure")
        return
    seed_dir = tempfile.mkdtemp(prefix="bp-fuzz-seeds-")
    write_seeds(seed_dir)
    target: Callable[[bytes], None] = check
    atheris.Setup([*argv, seed_dir], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
