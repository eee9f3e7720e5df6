"""Components by name, through Python entry points.

Built-in backends register in this package's ``pyproject.toml`` under the
same entry-point groups a plugin package would use, e.g.::

    [project.entry-points."deepinterest.quantizers"]
    my-pq = "my_package.pq:ProductQuantizer"

so a plugin adds a quantizer (or reader, encoder, miner, ...) without touching
this repository. ``create("quantizers", "rkmeans", levels=3)`` builds one.

A component declares its options as its constructor's keyword parameters
(a miner may also give an ``Options`` model). What the run supplies rather
than the user (a catalogue, interests, a group size) reaches a component
only if it asks for it by name: :func:`create_with` passes each context
value to a factory that has a parameter of that name, and :func:`parameter`
is the one place a signature is read.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import DeepInterestError

GROUP_PREFIX = "deepinterest."

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def kinds() -> list[str]:
    """Every kind (``quantizers``, ``readers``, ...) that has at least one entry point."""
    groups = entry_points().groups
    return sorted(g.removeprefix(GROUP_PREFIX) for g in groups if g.startswith(GROUP_PREFIX))


def available(kind: str) -> dict[str, Any]:
    """Entry points of one kind (``quantizers``, ``readers``, ...) by name, not yet loaded."""
    return {ep.name: ep for ep in entry_points(group=GROUP_PREFIX + kind)}


def get(kind: str, name: str) -> Any:
    """The registered object (usually a class) called ``name``."""
    found = available(kind)
    if name not in found:
        names = ", ".join(sorted(found)) or "none (is the package installed with pip?)"
        raise DeepInterestError(f"no {kind[:-1]} named {name!r}; available: {names}")
    entry = found[name]
    try:
        return entry.load()
    except Exception as exc:  # noqa: BLE001 - any failure inside a plugin's import
        package = entry.dist.name if entry.dist is not None else "its package"
        raise DeepInterestError(
            f"the {kind[:-1]} {name!r} (entry point {entry.value!r} of the package "
            f"{package!r}) failed to import: {type(exc).__name__}: {exc}; reinstall or fix "
            f"{package}, or uninstall it") from exc


def check_options(factory: Callable[..., Any], options: dict[str, Any], *, what: str) -> None:
    """Raise a :class:`DeepInterestError` naming unknown or missing keyword options.

    Checked against the signature before the call, so a ``TypeError`` raised
    by a bug inside the constructor is never mistaken for a bad option.
    """
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature (a C builtin): let it decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in _KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    missing = [p.name for p in params if p.kind in _KEYWORD and p.default is p.empty
               and p.name not in options]
    if unknown or missing:
        problem = (f"unknown option(s) {', '.join(unknown)}" if unknown
                   else f"missing required option(s) {', '.join(missing)}")
        raise DeepInterestError(f"{what}: {problem}; it accepts: {', '.join(accepted) or 'none'}")


def parameter(factory: Callable[..., Any], name: str) -> inspect.Parameter | None:
    """``factory``'s parameter called ``name``; None when it has none or no readable
    signature (a C builtin)."""
    try:
        return inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):
        return None


def declared_options(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """What ``factory`` declares it accepts: its ``Options`` model's fields (name ->
    pydantic field), else its signature's named parameters (name -> None); a ``**options``
    catch-all declares nothing. None when neither can be read."""
    fields = getattr(getattr(factory, "Options", None), "model_fields", None)
    if fields is not None:
        return dict(fields)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name: None for p in params if p.kind is not p.VAR_KEYWORD}


def requires(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` has a parameter ``name`` without a default."""
    param = parameter(factory, name)
    return param is not None and param.default is inspect.Parameter.empty


def create_with(kind: str, name: str, /, context: dict[str, Any], **options: Any) -> Any:
    """:func:`create`, with each non-None ``context`` value the user did not set passed to
    a component that names it among its parameters."""
    factory = get(kind, name)
    extra = {key: value for key, value in context.items()
             if value is not None and key not in options and parameter(factory, key) is not None}
    return _build(factory, {**options, **extra}, what=f"{kind[:-1]} {name!r}")


def create(kind: str, name: str, /, **options: Any) -> Any:
    """Instantiate the component ``name`` with keyword options.

    ``kind`` and ``name`` are positional-only, so a component may itself take
    options called ``name`` or ``kind`` (an encoder's model name, for one).
    """
    return _build(get(kind, name), options, what=f"{kind[:-1]} {name!r}")


def _build(factory: Callable[..., Any], options: dict[str, Any], *, what: str) -> Any:
    check_options(factory, options, what=what)
    return factory(**options)
