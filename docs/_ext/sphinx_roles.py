"""A griffe extension: render the Sphinx roles of beanproto's docstrings as links.

The docstrings use reStructuredText roles (``:class:`Client```,
``:meth:`put```, ``:class:`beanproto.CommandError```), which mkdocstrings would
show verbatim. This rewrites each into inline code wrapped in an *optional*
mkdocs-autorefs cross-reference: a link where the target is documented, plain
code where it is not (private helpers, the standard library), never a warning.
Names are resolved in the docstring owner's scope, as Python would.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_OURS = ("beanproto", "beanproto_sync", "beanproto_anyio", "beanproto_cli")


def _identifier(obj: griffe.Object, target: str) -> str | None:
    head, _, rest = target.partition(".")
    if head in _OURS:
        return target
    try:
        resolved = obj.resolve(head)
    except griffe.NameResolutionError:
        return None
    return f"{resolved}.{rest}" if rest else resolved


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2).strip()
        target = target.removesuffix("()")
        title = target.rsplit(".", 1)[-1] if short else target
        code = f"<code>{html.escape(title)}</code>"
        identifier = _identifier(obj, target)
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return _ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """griffe 2: a package was loaded. (Rewriting twice changes nothing.)"""
        self._rewrite_all(pkg)

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """griffe 1: a package was loaded."""
        self._rewrite_all(pkg)

    @staticmethod
    def _rewrite_all(pkg: griffe.Module) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
