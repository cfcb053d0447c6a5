#!/usr/bin/env bash
# The core's tests and the behaviour suite on every supported CPython (3.10 to 3.13) that
# is installed, besides the one of .venv, which the whole suite already runs on.
# scripts/test.sh runs it after the whole suite.
#
#     bash scripts/python-matrix.sh [PYTEST ARGS...]
#
# An interpreter is looked for under pyenv (`pyenv root`/versions/3.X.*, or $PYENV_ROOT
# or ~/.pyenv when pyenv is not on PATH), then as python3.X on PATH; one that is absent
# is skipped with a line saying so. Each gets a virtual environment .build/venv-3.X
# (ignored by git) with the project (editable) and only what these tests need: the anyio
# and trio extras, pytest, pytest-timeout and hypothesis, at the bounds the dev dependency
# group of pyproject.toml sets. It is made again only when pyproject.toml, this script or the
# interpreter changes (the stamp of scripts/setup.sh). No coverage here.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=(3.10 3.11 3.12 3.13)
TESTS=(tests/core tests/behaviour)
# What the tests need beyond the project's trio extra (anyio + trio), by name; the
# version bounds come from the dev dependency group.
NEEDS=(pytest pytest-timeout hypothesis)

[ -x .venv/bin/python ] || { echo "python-matrix: no .venv: run bash scripts/setup.sh first" >&2; exit 1; }
own=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

pyenv_root=""
if command -v pyenv >/dev/null 2>&1; then
    pyenv_root=$(pyenv root 2>/dev/null) || pyenv_root=""
elif [ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]; then
    pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}  # pyenv installed, but not on this PATH
fi

find_python() {
    # find_python 3.X: the newest 3.X.* of pyenv, else python3.X on PATH.
    local minor=$1 candidate found=""
    if [ -n "$pyenv_root" ]; then
        for candidate in "$pyenv_root"/versions/"$minor".*/bin/python; do
            # Only final releases (3.12.1, not 3.12.0rc1 or 3.12-dev).
            [[ $candidate =~ /versions/$minor\.[0-9]+/bin/python$ ]] || continue
            [ -x "$candidate" ] && found=$(printf '%s\n%s\n' "$found" "$candidate" | sort -V | tail -n 1)
        done
    fi
    [ -n "$found" ] || found=$(command -v "python$minor" 2>/dev/null) || true
    [ -n "$found" ] && printf '%s\n' "$found"
}

requirements=$(.venv/bin/python - "${NEEDS[@]}" <<'EOF'
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    # Strings only: {include-group = ...} entries hold none of these.
    dev = [r for r in tomllib.load(f)["dependency-groups"]["dev"] if isinstance(r, str)]
for need in sys.argv[1:]:
    [spec] = [r for r in dev if re.match(rf"{re.escape(need)}\s*([<>=!~;\[]|$)", r)]
    print(spec)
EOF
)

prepare() {
    # prepare 3.X PYTHON: make .build/venv-3.X unless it is up to date.
    local minor=$1 python=$2 venv=.build/venv-$1
    local stamp=$venv/.beanproto-installed want
    want=$(
        {
            cat pyproject.toml scripts/python-matrix.sh
            echo "$python"
            "$python" -c 'import sys; print(sys.version)'
        } | sha256sum | cut -c1-16
    )
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] && return 0
    echo "python-matrix: installing the project and its test tools into $venv" >&2
    rm -rf "$venv"
    mkdir -p .build
    "$python" -m venv "$venv" || return 1
    local requirement_args=()
    while IFS= read -r r; do requirement_args+=("$r"); done <<<"$requirements"
    {
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
            && "$venv/bin/python" -m pip install -q --disable-pip-version-check \
                -e '.[trio]' "${requirement_args[@]}"
    } >&2 || return 1
    echo "$want" >"$stamp"
}

summary=()
failed=0
for minor in "${VERSIONS[@]}"; do
    if [ "$minor" = "$own" ]; then
        summary+=("Python $minor: the whole suite's interpreter (.venv)")
        continue
    fi
    python=$(find_python "$minor") || true
    if [ -z "$python" ]; then
        echo "== python $minor: not installed, skipped"
        summary+=("Python $minor: not installed, skipped")
        continue
    fi
    if ! prepare "$minor" "$python"; then
        echo "python-matrix: could not set up .build/venv-$minor (output above)" >&2
        summary+=("Python $minor: set-up failed")
        failed=1
        continue
    fi
    full=$(".build/venv-$minor/bin/python" -c 'import platform; print(platform.python_version())')
    echo "== pytest (Python $full)"
    log=$(mktemp)
    status=0
    ".build/venv-$minor/bin/python" -m pytest -p no:cacheprovider "${TESTS[@]}" "$@" 2>&1 \
        | tee "$log" || status=$?
    counts=$(grep -E '^(=+ )?([0-9]+ [a-z]+.*|no tests ran) in [0-9.]+s' "$log" \
        | tail -n 1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*$//' || true)
    rm -f "$log"
    summary+=("Python $full: ${counts:-no summary} (exit status $status)")
    [ "$status" = 0 ] || failed=1
done

echo "== python matrix"
printf '   %s\n' "${summary[@]}"
[ "$failed" = 0 ] || { echo "== python matrix: failures (above)"; exit 1; }
