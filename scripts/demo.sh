#!/usr/bin/env bash
# The main job, from a fresh Debian machine: sets everything up, starts a
# private beanstalkd on a free loopback port, runs the demo against it, and
# stops that server again (only the one it started).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

BIN=${BEANSTALKD:-$(command -v beanstalkd || echo /usr/bin/beanstalkd)}
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" -l 127.0.0.1 -p "$PORT" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
.venv/bin/python examples/demo.py --address "127.0.0.1:$PORT" "$@"
