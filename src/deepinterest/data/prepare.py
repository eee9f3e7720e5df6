"""The data stage: find the source's format, read it, write the dataset artifact.

``di data prepare SOURCE`` accepts the embedded default dataset (``default``),
a folder (P5 ``user_sequence.txt`` + ``.item``, RecBole ``.inter`` (+ ``.item``),
or raw Amazon review and meta files) or a single file, and guesses the format
from file names and, for Amazon 2014 against 2018 reviews, from the keys of
the first line. ``format=`` skips the guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import (
    StageResult,
    atomic_dir,
    fingerprint_paths,
    is_up_to_date,
    write_manifest,
)
from ..errors import DataError
from .io import iter_json_records
from .model import Dataset, save_dataset

# Raw Amazon dumps are not k-core filtered; P5/RecBole copies usually already are.
DEFAULT_KCORE = {"amazon2014": 5, "amazon2018": 5, "amazon2023": 5, "recbole": 0}


@dataclass(frozen=True)
class Source:
    format: str
    main: Path | None  # sequences / interactions / reviews file (None for "default")
    side: Path | None  # item / meta file


def _one(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        raise DataError(folder, f"several files match {pattern}: {[p.name for p in found]}",
                        hint="point to the file you mean or pass --items/--meta")
    return found[0] if found else None


def _meta_for(reviews: Path) -> Path | None:
    """``reviews_Beauty_5.json.gz`` / ``Beauty_5.json.gz`` / ``All_Beauty.jsonl`` -> meta file."""
    stem = reviews.name.split(".")[0].removeprefix("reviews_").removesuffix("_5")
    candidates = sorted(reviews.parent.glob(f"meta_{stem}.*"))
    return candidates[0] if candidates else None


def _amazon_json_kind(path: Path) -> str:
    _, first = next(iter_json_records(path))
    if "user_id" in first and "timestamp" in first:
        return "amazon2023"
    return "amazon2018" if {"verified", "vote", "style"} & first.keys() else "amazon2014"


def _detect_file(path: Path) -> str:
    name = path.name
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "amazon2023"
    if name.endswith((".json", ".json.gz")):
        return _amazon_json_kind(path)
    if name.endswith(".txt"):
        return "p5"
    raise DataError(path, "cannot tell the data format from the file name",
                    hint="pass --format (p5, recbole, amazon2014, amazon2018, amazon2023)")


def _detect_folder(folder: Path) -> Path:
    for pattern in ("user_sequence*.txt", "*.inter", "reviews_*.json*", "*.jsonl*", "*_5.json*"):
        main = [p for p in sorted(folder.glob(pattern)) if not p.name.startswith("meta_")]
        if main:
            if len(main) > 1:
                raise DataError(folder, f"several data files: {[p.name for p in main]}",
                                hint="point to one of them")
            return main[0]
    raise DataError(folder, "no known data files in this folder",
                    hint="expected user_sequence.txt, *.inter or Amazon review files")


def resolve_source(source: str, *, format: str = "auto", side: Path | None = None) -> Source:
    """Which reader to use, on which files."""
    if source == "default" or format == "default":
        return Source("default", None, None)
    path = Path(source)
    if not path.exists():
        raise DataError(path, "no such file or folder", hint="check the data source path")
    main = _detect_folder(path) if path.is_dir() else path
    kind = _detect_file(main) if format == "auto" else format
    if side is None:
        side = _one(main.parent, "*.item") if kind in ("p5", "recbole") else _meta_for(main)
    return Source(kind, main, side)


def read_source(src: Source, *, kcore: int | None = None, synthetic=None) -> Dataset:
    """Read a resolved source into the in-memory dataset model."""
    if src.format == "default":
        from .synthetic import generate

        return generate(synthetic)
    k = DEFAULT_KCORE.get(src.format, 0) if kcore is None else kcore
    if src.format == "p5":
        from .readers import read_p5

        if k:
            raise DataError(src.main, "k-core filtering needs timestamps; P5 files are "
                            "already filtered", hint="drop --kcore for P5 sources")
        return read_p5(src.main, src.side, name=src.main.parent.name)
    if src.format == "recbole":
        from .readers import read_recbole

        return read_recbole(src.main, src.side, kcore=k)
    from . import amazon

    reader = getattr(amazon, f"read_{src.format}")
    return reader(src.main, src.side, kcore=k)


def prepare_dataset(cfg, out: str | Path, *, force: bool = False) -> StageResult:
    """Write the dataset artifact for a :class:`~deepinterest.config.DataConfig`."""
    out = Path(out)
    src = resolve_source(cfg.source, format=cfg.format, side=cfg.items or cfg.meta)
    files = [p for p in (src.main, src.side) if p is not None]
    inputs = {"source": fingerprint_paths(files) if files else "embedded"}
    config = {**cfg.model_dump(mode="json"), "resolved_format": src.format}
    if not force and is_up_to_date(out, config=config, inputs=inputs):
        return StageResult("data", out, True, 0.0, {})
    start = time.perf_counter()
    dataset = read_source(src, kcore=cfg.kcore, synthetic=cfg.synthetic)
    stats = dataset.stats()
    counts = {"users": stats.users, "items": stats.items, "interactions": stats.interactions}
    with atomic_dir(out) as tmp:
        save_dataset(dataset, tmp)
        seconds = time.perf_counter() - start
        write_manifest(tmp, stage="data", config=config, inputs=inputs, counts=counts,
                       seconds=seconds)
    return StageResult("data", out, False, seconds, counts)
