"""``python -m beanproto_sync``: the ``beanproto`` command-line tool (needs the ``[cli]`` extra)."""

import sys

try:
    from beanproto_cli import main
except ImportError as exc:  # pragma: no cover - click or rich missing
    sys.exit(f"the beanproto command needs the [cli] extra (pip install 'beanproto[cli]'): {exc}")

if __name__ == "__main__":
    main()
