"""``python -m beanproto_cli``: the ``beanproto`` command."""

from beanproto_cli._entry import main

if __name__ == "__main__":
    main()
