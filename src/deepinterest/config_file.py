"""Reading a config file, and naming the line of each validation error in it.

:func:`read_mapping` parses TOML or YAML into a mapping; :func:`format_errors`
turns pydantic's errors into one line per problem with the file's line, the
key path and what was expected, never echoing a secret's value.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError


def read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: unknown config type; use .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping of keys")
    return data


def _key_line(text: str, key: str) -> int | None:
    """First line defining ``key`` (TOML ``key =`` / YAML ``key:``), or a [table] header."""
    pattern = re.compile(rf"^\s*(\[\s*)?([\w.-]*\.)?{re.escape(key)}\s*(=|:|\])")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _entry_line(text: str, loc: tuple) -> int | None:
    """The line of an error inside a list entry (``rewards[1].weight``): the key's line
    searched from the N-th entry of the list (a YAML ``- `` item or a TOML ``[[table]]``),
    so the error names that entry, not the list's first line. None without a list index."""
    if not any(isinstance(k, int) for k in loc):
        return None
    lines, start, found = text.splitlines(), 0, None
    for n, key in enumerate(loc):
        if isinstance(key, int):
            name = str(loc[n - 1]) if n else ""
            table = re.compile(rf"^\s*\[\[\s*([\w.-]*\.)?{re.escape(name)}\s*\]\]")
            entries = [i for i in range(start, len(lines))
                       if re.match(r"^\s*-\s", lines[i]) or table.match(lines[i])]
            if key >= len(entries):
                return None  # an inline TOML array: no line of its own per entry
            start = found = entries[key]
            continue
        pattern = re.compile(rf"^\s*(-\s*)?{re.escape(str(key))}\s*(=|:)")
        hit = next((i for i in range(start, len(lines)) if pattern.match(lines[i])), None)
        if hit is not None:
            start = found = hit
    return None if found is None else found + 1


def _echoable(item: dict[str, Any], keys: list[str]) -> bool:
    """Whether an error may show the value it got: never a secret's (secrets.py)."""
    from .secrets import redact

    if item["type"] == "missing" or isinstance(item["input"], dict):
        return False  # a whole table: the key path says where, and it may hold a secret
    return redact(item["input"], keys[-1] if keys else "") == item["input"]


def format_errors(path: Path, error: ValidationError) -> str:
    text = path.read_text(encoding="utf-8")
    lines = [f"{path}: invalid config ({error.error_count()} problem(s))"]
    for item in error.errors():
        keys = [str(k) for k in item["loc"]]
        line = _entry_line(text, item["loc"]) or next(
            (n for k in reversed(keys) if (n := _key_line(text, k))), None)
        where = f"line {line}, " if line else ""
        got = f" (got {item['input']!r})" if _echoable(item, keys) else ""
        lines.append(f"  {where}key '{'.'.join(keys)}': {item['msg']}{got}")
    return "\n".join(lines)


__all__ = ["format_errors", "read_mapping"]
