"""``python -m beanproto_sync``: the ``beanproto`` command-line tool (needs the ``[cli]`` extra)."""

from beanproto_cli._entry import main

if __name__ == "__main__":
    main()
