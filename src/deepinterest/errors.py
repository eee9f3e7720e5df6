"""Errors that tell the user what went wrong, where, and what to do.

Every error raised for bad user input derives from :class:`DeepInterestError`;
the CLI prints its message without a traceback and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class DeepInterestError(Exception):
    """Base class of errors caused by input or configuration, not by a bug."""


class DataError(DeepInterestError):
    """Bad input data: names the file, the line (1-based) and a hint."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, hint: str = ""):
        self.path = Path(path)
        self.line = line
        self.message = message
        self.hint = hint
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        text = f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class ConfigError(DeepInterestError):
    """A configuration file or value that does not validate."""


class MissingDependencyError(DeepInterestError, ImportError):
    """An optional dependency is not installed; names the pip extra to install."""

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'deepinterest[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra, purpose) from exc
