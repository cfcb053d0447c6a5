#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: sets everything up
# (beanstalkd, .venv, the project), then runs the quality gates and pytest.
# pytest starts and stops its own private beanstalkd servers on free loopback ports.
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
    # The whole suite: the core's coverage must stay (near) complete.
    .venv/bin/python -m pytest --cov --cov-report=term --cov-fail-under=99 -p no:cacheprovider
else
    .venv/bin/python -m pytest -p no:cacheprovider "$@"
fi
