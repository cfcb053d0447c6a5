"""A private beanstalkd for the benchmarks: a free loopback port, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from functools import partial


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def start_server() -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    """Start beanstalkd on a free port of 127.0.0.1; return the process and its address.

    With two CPUs or more (and unless ``BENCH_NO_PIN`` is set), the server runs on
    the last CPU and this process moves to the first: left to the scheduler, the
    pair sometimes shares a core and sometimes not, which moves a round trip's
    cost by a factor of up to two between runs, and within one.
    """
    binary = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = len(cpus) >= 2 and not os.environ.get("BENCH_NO_PIN")
    proc = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port)],
        preexec_fn=partial(_pin, cpus[-1]) if pin else None,
    )
    if pin:
        _pin(cpus[0])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, ("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("beanstalkd did not start") from None
            time.sleep(0.02)
