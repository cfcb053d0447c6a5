"""A private beanstalkd for the benchmarks: a free loopback port, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time


def start_server() -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    """Start beanstalkd on a free port of 127.0.0.1; return the process and its address."""
    binary = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port)])
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
