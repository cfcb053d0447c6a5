#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: sets everything up
# (beanstalkd, .venv, the project), then runs the quality gates and pytest.
# pytest starts and stops its own private beanstalkd servers on free loopback ports.
# The whole-suite run ends with two matrices: beanstalkd 1.10 to 1.13
# (scripts/version-matrix.sh) and the other installed CPythons (scripts/python-matrix.sh).
# Extra arguments go to pytest (e.g. scripts/test.sh -k stats -x), without the
# coverage gate, which only makes sense for the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== mypy --strict src"
.venv/bin/mypy --strict src
echo "== mkdocs build --strict"
docs_site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$docs_site"
rm -rf "$docs_site"
echo "== pytest"
if [ "$#" -eq 0 ]; then
    # The whole suite, measuring the branch coverage of the core and both clients
    # ([tool.coverage.run] in pyproject.toml).
    .venv/bin/python -m pytest --cov --cov-report= -p no:cacheprovider
    # Each package has its own gate: the core's coverage must stay (near) complete.
    gates_failed=0
    for gate in beanproto:99 beanproto_sync:97 beanproto_anyio:97; do
        package=${gate%:*} minimum=${gate#*:}
        echo "== coverage: $package (at least $minimum%)"
        .venv/bin/python -m coverage report --include="src/$package/*" --fail-under="$minimum" \
            || gates_failed=1
    done
    [ "$gates_failed" = 0 ] || { echo "== coverage below a package's gate (above)"; exit 1; }

    # The same tests again over the mypyc-compiled core (scripts/compiled-core.sh), which
    # must behave as the pure-Python one does. No coverage here: compiled code has none.
    compiled=$(bash scripts/compiled-core.sh)
    PYTHONPATH=$compiled .venv/bin/python -c '
import sys
import beanproto._connection as core
if not core.__file__.endswith((".so", ".pyd")):
    sys.exit(f"the compiled core was not imported: beanproto._connection is {core.__file__}")
'
    echo "== pytest (mypyc-compiled core)"
    PYTHONPATH=$compiled .venv/bin/python -m pytest -p no:cacheprovider \
        tests/core tests/behaviour tests/sync

    # The behaviour suite and the core's live tests against beanstalkd 1.10 to 1.13 (built
    # from ../shared/beanstalkd/ where it exists), then the core's tests and the behaviour
    # suite on the other installed CPythons (3.10 to 3.13). Both run to the end.
    matrix_failed=0
    bash scripts/version-matrix.sh || matrix_failed=1
    bash scripts/python-matrix.sh || matrix_failed=1
    [ "$matrix_failed" = 0 ] || { echo "== a matrix run failed (above)"; exit 1; }
else
    .venv/bin/python -m pytest -p no:cacheprovider "$@"
fi
