#!/usr/bin/env bash
# Shared set-up for the README's commands: beanstalkd, a Python >= 3.10 virtual
# environment in .venv, and the project installed into it (editable, with the
# development tools: the dev dependency group of pyproject.toml). Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        return 1
    fi
}

apt_install() {
    # apt_install PACKAGE...: install Debian packages, or explain what to do.
    if ! command -v apt-get >/dev/null 2>&1; then
        say "apt-get is not available: install $* with your system's package manager."
        exit 1
    fi
    say "installing $* (apt-get)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2; then
        say "could not install $*: this needs root. Run, as root:"
        say "    apt-get update && apt-get install -y $*"
        say "then run this command again (or set BEANSTALKD=/path/to/beanstalkd)."
        exit 1
    fi
}

# 1. beanstalkd (the tests and the demo start private instances of it).
if [ -n "${BEANSTALKD:-}" ]; then
    [ -x "$BEANSTALKD" ] || { say "BEANSTALKD=$BEANSTALKD is not an executable"; exit 1; }
elif ! command -v beanstalkd >/dev/null 2>&1 && [ ! -x /usr/bin/beanstalkd ]; then
    apt_install beanstalkd
fi

# 2. A Python >= 3.10 to build the virtual environment from.
pick_python() {
    for cand in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$cand" >/dev/null 2>&1 \
            && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$cand"
            return 0
        fi
    done
    return 1
}
PY=$(pick_python) || {
    apt_install python3 python3-venv
    PY=$(pick_python) || { say "no Python 3.10 or newer found"; exit 1; }
}

# 3. The virtual environment, with the project and its development tools.
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PY" --version)"
    if ! "$PY" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        # Debian ships venv's ensurepip separately.
        ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${ver}-venv" || apt_install python3-venv
        "$PY" -m venv .venv
    fi
fi
stamp=.venv/.beanproto-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing the project and its development tools into .venv"
    # pip >= 25.1 reads the dependency groups of pyproject.toml (--group, PEP 735).
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade 'pip>=25.1' >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e . --group dev >&2
    echo "$want" > "$stamp"
fi
