"""A griffe extension for the docs site: our docstrings are written for ``help()`` and
Sphinx-style readers (``:func:`name```, ``::`` before a literal block); in Markdown those
render literally, so the site shows each role as inline code and ``::`` as ``:``."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"::$", re.MULTILINE)


def markdown_of(text: str) -> str:
    """``:func:`~pkg.mod.name``` -> ```name```, ``:class:`Name``` -> ```Name```, and a
    line-ending ``::`` -> ``:`` (the indented block after it is already Markdown code)."""
    text = ROLE.sub(lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`",
                    text)
    return LITERAL_BLOCK.sub(":", text)


class RstRoles(griffe.Extension):
    """Rewrites every docstring with :func:`markdown_of` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
