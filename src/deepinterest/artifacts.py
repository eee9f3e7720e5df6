"""Artifact folders, manifests, fingerprints and atomic writes.

Each stage writes one folder holding its outputs and a ``manifest.json`` with
the stage name, the resolved config, the fingerprints of its inputs, the
package version, counts and timings. A stage whose manifest shows the same
config and input fingerprints is skipped (:func:`is_up_to_date`), so an
interrupted ``di run`` resumes where it stopped.

Writes are atomic: a stage fills a temporary sibling folder and renames it
into place only when everything (manifest last) is written. A failed stage
leaves the previous artifact untouched and no half-written folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeepInterestError

MANIFEST = "manifest.json"
# Files above this size are fingerprinted by size and mtime instead of content:
# hashing a multi-GB raw review dump on every run would dominate start-up.
_HASH_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True)
class StageResult:
    """What a stage did: where its artifact is and whether it was already up to date."""

    stage: str
    path: Path
    skipped: bool
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def fingerprint_file(path: str | Path) -> str:
    """sha256 of a file's bytes (size and mtime for very large files)."""
    path = Path(path)
    stat = path.stat()
    if stat.st_size > _HASH_LIMIT:
        return f"size:{stat.st_size}:mtime:{stat.st_mtime_ns}"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_paths(paths: list[Path]) -> str:
    """One fingerprint for a set of files or folders (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.name).encode())
            digest.update(fingerprint_file(file).encode())
    return digest.hexdigest()


def fingerprint_value(value: Any) -> str:
    """sha256 of a JSON-serialisable value (configs), independent of key order."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_fingerprint(folder: str | Path) -> str:
    """Fingerprint of a stage's outputs as recorded in its manifest."""
    try:
        return read_manifest(folder)["fingerprint"]
    except FileNotFoundError:
        raise DeepInterestError(f"{folder}: no {MANIFEST}; is it the finished output of a "
                                "`di` stage?") from None


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an artifact folder; raises FileNotFoundError if absent."""
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))


def write_manifest(
    folder: Path,
    *,
    stage: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    counts: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """Write ``manifest.json`` last, with a fingerprint of every other file in ``folder``."""
    from . import __version__

    outputs = [p for p in folder.iterdir() if p.name != MANIFEST]
    manifest = {
        "stage": stage,
        "version": __version__,
        "config": config,
        "config_fingerprint": fingerprint_value(config),
        "inputs": inputs,
        "fingerprint": fingerprint_paths(outputs),
        "counts": counts,
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def is_up_to_date(folder: str | Path, *, config: dict[str, Any], inputs: dict[str, str]) -> bool:
    """True when ``folder`` holds a complete artifact built from this config and these inputs."""
    try:
        manifest = read_manifest(folder)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return manifest.get("config_fingerprint") == fingerprint_value(config) and manifest.get(
        "inputs"
    ) == inputs
