#!/usr/bin/env bash
# The behaviour suite (all three clients) and the core's live tests against every
# beanstalkd release whose sources are in ../shared/beanstalkd/ (beanstalkd-1.10.tar.gz
# ... beanstalkd-1.13.tar.gz, beside the project's folder). scripts/test.sh runs it after
# the whole suite, which runs against the system's beanstalkd.
#
#     bash scripts/version-matrix.sh [PYTEST ARGS...]
#
# Each release is built once into .build/beanstalkd-<version>/beanstalkd (ignored by git;
# built in a temporary folder and moved into place, so a folder that exists is complete)
# and the tests run with BEANSTALKD pointing at it (tests/conftest.py starts that binary
# and skips what the version cannot do). Where the sources are absent, as in a fresh
# clone, it says so in one line and succeeds. Needs make and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCES=../shared/beanstalkd
TESTS=(tests/behaviour tests/core/test_live.py)

py=.venv/bin/python
[ -x "$py" ] || { echo "version-matrix: no .venv: run bash scripts/setup.sh first" >&2; exit 1; }

tarballs=()
if [ -d "$SOURCES" ]; then
    while IFS= read -r f; do tarballs+=("$f"); done < <(
        find "$SOURCES" -maxdepth 1 -name 'beanstalkd-*.tar.gz' | sort -V
    )
fi
if [ "${#tarballs[@]}" -eq 0 ]; then
    echo "== version matrix: skipped (no beanstalkd sources in ../shared/beanstalkd/)"
    exit 0
fi

build() {
    # build VERSION TARBALL: make .build/beanstalkd-VERSION/beanstalkd unless it exists.
    local version=$1 tarball=$2 out=.build/beanstalkd-$1 tmp
    [ -x "$out/beanstalkd" ] && return 0
    echo "version-matrix: building beanstalkd $version into $out" >&2
    mkdir -p .build
    tmp=$(mktemp -d ".build/tmp-beanstalkd-$version.XXXXXX")
    if ! {
        tar -xzf "$tarball" -C "$tmp" --strip-components=1 \
            && make -C "$tmp" -j2 beanstalkd
    } >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        rm -rf "$tmp" "$tmp.log"
        echo "version-matrix: building beanstalkd $version failed (output above)" >&2
        return 1
    fi
    rm -f "$tmp.log"
    local got
    got=$("$tmp/beanstalkd" -v)
    if [ "$got" != "beanstalkd $version" ]; then
        rm -rf "$tmp"
        echo "version-matrix: $tarball built '$got', not beanstalkd $version" >&2
        return 1
    fi
    # Keep the binary and the licence; a concurrent build may have finished first.
    mkdir "$tmp.out"
    mv "$tmp/beanstalkd" "$tmp/LICENSE" "$tmp.out/"
    rm -rf "$tmp"
    mv -T "$tmp.out" "$out" 2>/dev/null || rm -rf "$tmp.out"
}

summary=()
failed=0
for tarball in "${tarballs[@]}"; do
    name=$(basename "$tarball" .tar.gz)
    version=${name#beanstalkd-}
    if ! build "$version" "$tarball"; then
        summary+=("beanstalkd $version: build failed")
        failed=1
        continue
    fi
    echo "== pytest (beanstalkd $version)"
    log=$(mktemp)
    status=0
    BEANSTALKD=$PWD/.build/beanstalkd-$version/beanstalkd \
        "$py" -m pytest -p no:cacheprovider "${TESTS[@]}" "$@" 2>&1 | tee "$log" \
        || status=$?
    # pytest's last line: "==== 61 passed, 4 skipped in 30.1s ====".
    counts=$(grep -E '^(=+ )?([0-9]+ [a-z]+.*|no tests ran) in [0-9.]+s' "$log" \
        | tail -n 1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*$//' || true)
    rm -f "$log"
    summary+=("beanstalkd $version: ${counts:-no summary} (exit status $status)")
    [ "$status" = 0 ] || failed=1
done

echo "== version matrix"
printf '   %s\n' "${summary[@]}"
[ "$failed" = 0 ] || { echo "== version matrix: failures (above)"; exit 1; }
