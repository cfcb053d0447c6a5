"""The fuzz target (fuzz/fuzz_receive.py) in the normal test run: a bounded
atheris run as a subprocess (where atheris is installed), a bounded hypothesis
run in-process, and a check that the invariant does catch a planted bug."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import beanproto as bp

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "fuzz" / "fuzz_receive.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_receive", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load()


def test_seeds_pass_and_parse() -> None:
    for seed in fuzz.seeds():
        fuzz.check(seed)
        events, outcome = fuzz.run(fuzz.Input(seed), iter([fuzz.Input(seed).stream]))
        assert outcome != "RemoteProtocolError", seed
        assert events, seed


def test_hypothesis_fuzz_bounded() -> None:
    fuzz.hypothesis_fuzz(1500)


def test_the_invariant_catches_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that mishandled one byte-at-a-time case would be caught."""
    seed = fuzz.Input.encode([bp.Put(b"x")], b"INSERTED 12\r\n")
    original = bp.Connection.receive_data

    def buggy(self: bp.Connection, data: bytes) -> None:
        original(self, b"" if data == b"2" else data)  # drops a byte, as EOF

    monkeypatch.setattr(bp.Connection, "receive_data", buggy)
    with pytest.raises((AssertionError, bp.LocalProtocolError)):
        fuzz.check(seed)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_bounded_run(tmp_path: Path) -> None:
    """Coverage-guided, bounded by time (the longer run: see the target's docstring)."""
    (tmp_path / "corpus").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-dict={ROOT / 'fuzz' / 'replies.dict'}",
            "-max_total_time=10",
            "-max_len=512",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done is not None, proc.stderr[-2000:]
    assert int(done.group(1)) > 1000
    print(f"atheris: {done.group(1)} runs in 10 s")
