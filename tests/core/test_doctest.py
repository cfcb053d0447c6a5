"""The examples in the core's docstrings run as written."""

from __future__ import annotations

import doctest

import beanproto


def test_package_docstring_examples() -> None:
    result = doctest.testmod(beanproto, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
