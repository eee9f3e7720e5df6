"""Artifact folders, manifests, fingerprints and atomic writes.

Each stage writes one folder holding its outputs and a ``manifest.json`` with
the stage name, the resolved config, the fingerprints of its inputs, the
package version, counts and timings. A stage whose manifest shows the same
config and input fingerprints, and whose files still match the fingerprint it
recorded of them, is skipped (:func:`is_up_to_date`), so an interrupted
``di run`` resumes where it stopped and a damaged artifact is rebuilt.

Writes are atomic: a stage fills a temporary sibling folder and renames it
into place only when everything (manifest last) is written. A failed stage
leaves the previous artifact untouched and no half-written folder behind;
the temporary folder of a process that was killed carries its pid in its
name and is swept by the next write to the same place.

Nothing is lost or mixed up (:func:`claim_output`): a stage replaces only an
empty folder or an artifact of its own kind (unless forced), never the
current folder or a file, and holds an OS file lock on its output while it
writes it, so two processes cannot write one folder at once. The lock is
released by the OS when its holder dies, so it never goes stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeepInterestError
from .secrets import redact

MANIFEST = "manifest.json"
# Written first into a stage folder that fills in place (training), so that an
# unfinished folder is still recognised as that stage's own.
STAGE_MARKER = "stage.json"
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


@dataclass
class RunResult:
    """What a run of the chain did: its ``workdir``, each stage's result in order, and the
    method's stages this release does not run (``missing``, empty when the chain is whole)."""

    workdir: Path
    stages: list[StageResult] = field(default_factory=list)
    missing: tuple[str, ...] = ()


def _temp_sibling(final: Path, make: Callable[[Path], Any]) -> tuple[Path, Any]:
    """A new ``.NAME.tmp-PID-RANDOM`` beside ``final``, created by ``make`` (which fails if
    it exists). The pid lets :func:`sweep_stale` tell a dead writer's leftovers; creating
    with the usual modes (0666/0777 less the umask) rather than tempfile's 0600/0700 keeps
    artifacts readable like the user's other files, without touching the process umask."""
    while True:
        path = final.with_name(f".{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            return path, make(path)
        except FileExistsError:
            continue


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    tmp, fd = _temp_sibling(path, lambda p: os.open(p, flags, 0o666))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def sweep_stale(final: Path) -> list[Path]:
    """Remove temporary siblings of ``final`` left by processes that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)(-.*)?$")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for sibling in final.parent.iterdir():
            match = pattern.match(sibling.name)
            if match and int(match.group(2)) != os.getpid() and not _pid_alive(int(match.group(2))):
                if sibling.is_dir():
                    shutil.rmtree(sibling, ignore_errors=True)
                else:
                    sibling.unlink(missing_ok=True)
                removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final)
    tmp, _ = _temp_sibling(final, lambda p: os.mkdir(p, 0o777))
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


# -- output folders: what a stage may replace, and one writer at a time ---------

LOCK_SUFFIX = ".lock"


def _stage_of(folder: Path) -> str | None:
    """The stage named by ``folder``'s manifest or in-progress marker, if any."""
    for name in (MANIFEST, STAGE_MARKER):
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, AttributeError):
            return json.loads((folder / name).read_text(encoding="utf-8")).get("stage")
    return None


def check_output(out: str | Path, stage: str, *, force: bool = False) -> Path:
    """Refuse an output path whose replacement would lose something the user made.

    ``out`` may be missing, an empty folder, or a folder holding an artifact
    (or unfinished work) of the same ``stage``; anything else needs ``force``.
    The current folder, one of its parents and an existing file are refused
    even then: replacing them would delete the user's work.
    """
    out = Path(out)
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise DeepInterestError(f"output folder {str(out)!r} is the current folder or holds it; "
                                "name a new folder for the artifact, e.g. runs/NAME")
    if out.exists() and not out.is_dir():
        raise DeepInterestError(f"{out} is a file, not a folder; name a folder for the artifact")
    if out.is_dir() and any(out.iterdir()) and not force:
        found = _stage_of(out)
        if found != stage:
            what = f"a {found!r} artifact" if found else "files that no `di` stage wrote"
            raise DeepInterestError(
                f"{out} already holds {what}; writing the {stage!r} artifact there would "
                "replace them. Choose another folder, or pass --force to replace it")
    return out


@contextlib.contextmanager
def stage_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``out`` (file ``.NAME.lock`` beside it) while writing.

    A second process fails at once with the holder's pid and command, instead
    of writing into the same folder. The OS drops the lock when its holder
    exits or dies, so a killed run never leaves a stale lock; the file itself
    is removed on a normal exit and reused after a kill.
    """
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): run unlocked
        yield
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}{LOCK_SUFFIX}")
    handle = _acquire(path, out, fcntl)
    try:
        handle.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]}) since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: nobody can lock this inode after
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _acquire(path: Path, out: Path, fcntl):
    """Lock ``path``; retry when it was removed and made anew between open and lock."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DeepInterestError(f"{out} is being written by {holder}; wait for it to "
                                    "finish or use another folder") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                handle.seek(0)
                handle.truncate()
                return handle
        handle.close()  # we locked a file its holder had just removed: try the new one


@contextlib.contextmanager
def claim_output(out: str | Path, stage: str, *, force: bool = False) -> Iterator[Path]:
    """:func:`check_output`, then :func:`stage_lock` for the block (checked again once locked)."""
    out = check_output(out, stage, force=force)
    with stage_lock(out):
        check_output(out, stage, force=force)
        yield out


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


def _files_in_order(paths: list[Path]) -> list[Path]:
    """The files of a set of files or folders, in the order their fingerprint reads them."""
    out: list[Path] = []
    for path in sorted(Path(p) for p in paths):
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return out


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.name).encode())
        digest.update(fingerprint_file(file).encode())
    return digest.hexdigest()


def fingerprint_paths(paths: list[Path]) -> str:
    """One fingerprint for a set of files or folders (names and contents)."""
    return _digest(_files_in_order(paths))


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
    from .version import __version__

    outputs = [p for p in folder.iterdir() if p.name != MANIFEST]
    config = redact(config)  # a key typed into an option is never written (secrets.py)
    manifest = {
        "stage": stage,
        "version": __version__,
        "config": config,
        "config_fingerprint": fingerprint_value(config),
        "inputs": inputs,
        "fingerprint": fingerprint_paths(outputs),
        "files": [f.relative_to(folder).as_posix() for f in _files_in_order(outputs)],
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
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False
    same_config = manifest.get("config_fingerprint") == fingerprint_value(redact(config))
    return same_config and manifest.get("inputs") == inputs and intact(folder, manifest)


def intact(folder: str | Path, manifest: dict[str, Any]) -> bool:
    """Whether the files the manifest lists are those it fingerprinted: a truncated
    ``items.jsonl`` or damaged weights make the stage run again instead of being used.

    Only the listed files count, so a file a user adds to the folder never makes the
    stage rebuild (and replace it). A manifest from before the list is taken as it is.
    """
    listed = manifest.get("files")
    if listed is None:
        return True
    files = [Path(folder) / name for name in listed]
    return all(f.is_file() for f in files) and manifest.get("fingerprint") == _digest(files)


# -- the stage runner: one home for the sequence every stage follows ----------

@dataclass(frozen=True)
class Stage:
    """What identifies one run of a stage: its name, folder, settings and inputs."""

    name: str  # the manifest's ``stage``
    out: Path
    config: dict[str, Any]
    inputs: dict[str, str]  # fingerprints of what it reads
    force: bool = False  # rebuild when up to date; replace a folder of another kind
    # Rebuild an up-to-date artifact when this says so of its manifest (the mine stage:
    # items that failed are asked again by a plain rerun).
    retry: Callable[[dict[str, Any]], bool] | None = None


def run_stage(stage: Stage, build: Callable[[Path], dict[str, Any]]) -> StageResult:
    """Check and lock ``stage.out``, skip it when up to date, else build it atomically.

    ``build(folder)`` writes the stage's files into ``folder`` (a temporary
    sibling, renamed into place when the manifest is written) and returns the
    counts for the manifest. A failure leaves the previous artifact as it was.
    """
    with claim_output(stage.out, stage.name, force=stage.force) as out:
        if not stage.force and is_up_to_date(out, config=stage.config, inputs=stage.inputs) \
                and not (stage.retry and stage.retry(read_manifest(out))):
            return StageResult(stage.name, out, True, 0.0, {})
        start = time.perf_counter()
        with atomic_dir(out) as tmp:
            counts = build(tmp)
            seconds = time.perf_counter() - start
            write_manifest(tmp, stage=stage.name, config=stage.config, inputs=stage.inputs,
                           counts=counts, seconds=seconds)
    return StageResult(stage.name, out, False, seconds, counts)
