"""Components by name, through Python entry points.

Built-in backends register in this package's ``pyproject.toml`` under the
same entry-point groups a plugin package would use, e.g.::

    [project.entry-points."deepinterest.quantizers"]
    my-pq = "my_package.pq:ProductQuantizer"

so a plugin adds a quantizer (or reader, miner, ...) without touching this
repository. ``create("quantizers", "rkmeans", levels=3)`` builds one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .errors import DeepInterestError

GROUP_PREFIX = "deepinterest."


def available(kind: str) -> dict[str, Any]:
    """Entry points of one kind (``quantizers``, ``readers``, ...) by name, not yet loaded."""
    return {ep.name: ep for ep in entry_points(group=GROUP_PREFIX + kind)}


def get(kind: str, name: str) -> Any:
    """The registered object (usually a class) called ``name``."""
    found = available(kind)
    if name not in found:
        names = ", ".join(sorted(found)) or "none (is the package installed with pip?)"
        raise DeepInterestError(f"no {kind[:-1]} named {name!r}; available: {names}")
    return found[name].load()


def create(kind: str, name: str, **options: Any) -> Any:
    """Instantiate the component ``name`` with keyword options."""
    factory = get(kind, name)
    try:
        return factory(**options)
    except TypeError as exc:  # an unknown option: say which component rejected it
        raise DeepInterestError(f"{kind[:-1]} {name!r} rejected its options {options}: {exc}") from exc
