"""Command-line flags taken from the library's own settings, for the benchmark scripts.

A benchmark that restates a config's fields as argparse flags drifts from it:
another default, a field the flags forget. :func:`add_model_flags` (pydantic
models such as ``SFTConfig``) and :func:`add_signature_flags` (keyword
parameters, such as ``T5Backbone.__init__``'s) derive name, type, default and
help from the source; :func:`model_values` and :func:`signature_values` read
the parsed values back out.

Flag names are the field names with ``-`` for ``_`` (``--encoder-layers``);
a bool is ``--name`` / ``--no-name``; an optional field (``int | None``)
takes ``none`` for None.
"""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

Flags = argparse.ArgumentParser | argparse._ArgumentGroup


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(``int``, True) for ``int | None``; (annotation, False) otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), len(rest) < len(args)
    return annotation, False


def _parser_of(kind: Any, optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if optional and text.lower() == "none" else kind(text)
    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names it in errors
    return parse


def add_flag(flags: Flags, name: str, annotation: Any, default: Any, help: str | None) -> None:
    """One ``--name`` flag for a setting of type ``annotation`` with ``default``."""
    kind, optional = _unwrap(annotation)
    flag = "--" + name.replace("_", "-")
    # argparse %-formats help texts, so a literal % must be doubled.
    text = f"{help + ' ' if help else ''}(default: {default})".replace("%", "%%")
    if kind is bool:
        flags.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=text)
    elif typing.get_origin(kind) is typing.Literal:
        flags.add_argument(flag, choices=typing.get_args(kind), default=default, help=text)
    else:
        flags.add_argument(flag, type=_parser_of(kind, optional), default=default, help=text)


def add_model_flags(flags: Flags, model: type[BaseModel], *, skip: Iterable[str] = ()) -> None:
    """A flag per field of ``model`` that has a plain default (not a factory)."""
    for name, field in model.model_fields.items():
        if name not in skip and field.default is not PydanticUndefined:
            add_flag(flags, name, field.annotation, field.default, field.description)


def _keyword_defaults(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(func).parameters.values()
    return {p.name: p for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def add_signature_flags(flags: Flags, func: Callable[..., Any], *,
                        skip: Iterable[str] = ()) -> None:
    """A flag per keyword parameter of ``func`` that has a default."""
    try:
        hints = typing.get_type_hints(func)  # resolves `from __future__` string annotations
    except (NameError, TypeError):
        hints = {}
    for name, param in _keyword_defaults(func).items():
        if name not in skip:
            add_flag(flags, name, hints.get(name, type(param.default)), param.default, None)


def model_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The parsed values of ``model``'s fields that have flags."""
    return {k: getattr(args, k) for k in model.model_fields if hasattr(args, k)}


def signature_values(args: argparse.Namespace, func: Callable[..., Any]) -> dict[str, Any]:
    """The parsed values of ``func``'s keyword parameters that have flags."""
    return {k: getattr(args, k) for k in _keyword_defaults(func) if hasattr(args, k)}
