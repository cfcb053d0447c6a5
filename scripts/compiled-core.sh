#!/usr/bin/env bash
# Build the mypyc-compiled core for the venv's Python and print the folder that holds it.
#
#     PYTHONPATH=$(bash scripts/compiled-core.sh) .venv/bin/python -m pytest tests/core
#
# The folder, .build/mypyc-<hash>/ (ignored by git), holds a copy of src/beanproto whose
# hot modules (the MODULES below, the same as the mypyc hook's list in pyproject.toml) are
# compiled extension modules, the rest pure Python. Put it first on PYTHONPATH and
# `import beanproto` takes it instead of the editable install's src/beanproto; the clients
# still come from src/. The hash covers every source file of src/beanproto (the compiled
# modules are type-checked against the pure ones), this script, pyproject.toml (mypy's
# settings), the mypy version and the Python build, so a folder that exists is up to date
# and is reused as it is.
# Needs a C compiler (gcc). Build output goes to stderr; stdout is only the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

MODULES=(_buffer _readers _replies _connection _events)

py=.venv/bin/python
[ -x "$py" ] || { echo "compiled-core: no .venv: run bash scripts/setup.sh first" >&2; exit 1; }

mkdir -p .build
# The copy is taken first and the key computed from it, so that the folder always holds
# the sources its name stands for, even while src/ is being edited.
tmp=$(mktemp -d .build/tmp-mypyc.XXXXXX)
trap 'rm -rf "$tmp" "$tmp.log"' EXIT
tar -C src --exclude=__pycache__ --exclude='*.so' --exclude='*.pyd' -cf - beanproto \
    | tar -C "$tmp" -xf -

key=$(
    {
        (cd "$tmp" && find beanproto -type f | LC_ALL=C sort) | while IFS= read -r f; do
            printf '== %s\n' "$f"
            cat "$tmp/$f"
        done
        # How it is built: this script, mypy's settings and version, the Python build.
        cat scripts/compiled-core.sh pyproject.toml
        .venv/bin/mypy --version
        "$py" -c 'import sys, sysconfig; print(sys.version, sysconfig.get_config_var("SOABI"))'
    } | sha256sum | cut -c1-16
)
out=.build/mypyc-$key

if [ -d "$out" ]; then
    rm -rf "$tmp"
else
    files=()
    for m in "${MODULES[@]}"; do files+=("beanproto/$m.py"); done
    echo "compiled-core: compiling ${MODULES[*]} with mypyc into $out" >&2
    if ! (cd "$tmp" && ../../.venv/bin/mypyc --config-file ../../pyproject.toml "${files[@]}") \
        >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        echo "compiled-core: mypyc failed (output above)" >&2
        exit 1
    fi
    rm -f "$tmp.log"
    # Keep the extension modules and the sources; drop the C files, objects and mypy cache.
    rm -rf "$tmp/build" "$tmp/.mypy_cache"
    for m in "${MODULES[@]}"; do
        compgen -G "$tmp/beanproto/$m.*.so" >/dev/null \
            || { echo "compiled-core: mypyc made no extension for $m" >&2; exit 1; }
    done
    # A concurrent build of the same sources may have finished first: either copy will do.
    mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
fi
trap - EXIT
touch "$out"
# Forget builds of older sources (and interrupted builds) that nobody has used for a day.
find .build -maxdepth 1 \( -name 'mypyc-*' -o -name 'tmp-mypyc.*' \) ! -path "$out" -mmin +1440 \
    -exec rm -rf {} + 2>/dev/null || true
echo "$PWD/$out"
