"""The data stage: find the source's format, read it, write the dataset artifact.

``di data prepare SOURCE`` accepts the embedded default dataset (``default``),
a folder (P5 ``user_sequence.txt`` + ``.item``, RecBole ``.inter`` (+ ``.item``),
or raw Amazon review and meta files) or a single file, and guesses the format
from file names and, for Amazon 2014 against 2018 reviews, from the keys of
the first line. ``format=`` skips the guess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ..config import DataConfig
from ..artifacts import (
    MANIFEST,
    Stage,
    StageResult,
    check_output,
    fingerprint_paths,
    is_up_to_date,
    run_stage,
)
from ..errors import DataError, DeepInterestError
from .io import iter_json_records
from .model import Dataset, save_dataset


class _ReaderKcore(Mapping[str, int]):
    """Format -> the k-core its registered reader applies when none is given: the
    reader's own ``kcore`` default, so a plugin reader declares its own."""

    def __getitem__(self, fmt: str) -> int:
        if fmt not in registry.available("readers"):
            raise KeyError(fmt)
        return _default_kcore(registry.get("readers", fmt))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(registry.available("readers")))

    def __len__(self) -> int:
        return len(registry.available("readers"))


# Raw Amazon dumps are not k-core filtered (5); P5/RecBole copies usually already are (0).
DEFAULT_KCORE: Mapping[str, int] = _ReaderKcore()


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
    formats = ", ".join(sorted(registry.available("readers")))
    raise DataError(path, "cannot tell the data format from the file name",
                    hint=f"pass --format ({formats})")


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
    """Read a resolved source with the reader registered under its format.

    Every reader shares one call shape, ``reader(main, side, *, kcore)``;
    ``kcore=None`` takes the reader's own default (5 for raw Amazon dumps,
    0 for P5/RecBole copies, which are usually already filtered).
    """
    if src.format == "default":
        from .synthetic import generate

        return generate(synthetic)
    reader = registry.get("readers", src.format)
    k = _default_kcore(reader) if kcore is None else kcore
    return reader(src.main, src.side, kcore=k)


def _default_kcore(reader) -> int:
    param = registry.parameter(reader, "kcore")
    return 0 if param is None or param.default is param.empty else param.default


def prepare_dataset(cfg: DataConfig, out: str | Path, *, force: bool = False,
                    keep_other: bool = False) -> StageResult:
    """Write the dataset artifact for a :class:`~deepinterest.config.DataConfig`.

    ``force`` rebuilds an up-to-date artifact and lets ``out`` replace a folder
    that is not a dataset artifact (see :func:`~deepinterest.artifacts.check_output`).
    """
    src = resolve_source(cfg.source, format=cfg.format, side=cfg.items or cfg.meta)
    files = [p for p in (src.main, src.side) if p is not None]
    inputs = {"source": fingerprint_paths(files) if files else "embedded"}
    config = {**cfg.model_dump(mode="json"), "resolved_format": src.format}
    if keep_other and (Path(out) / MANIFEST).is_file() and not force \
            and not is_up_to_date(out, config=config, inputs=inputs):
        raise DeepInterestError(f"{out} holds a dataset prepared from other data or settings "
                                f"than {cfg.source!r}; pass that dataset folder itself, or "
                                "choose another --out")

    def build(folder: Path) -> dict:
        dataset = read_source(src, kcore=cfg.kcore, synthetic=cfg.synthetic)
        stats = dataset.stats()
        _check_not_empty(src, stats, cfg.kcore)
        save_dataset(dataset, folder)
        return {"users": stats.users, "items": stats.items, "interactions": stats.interactions}

    return run_stage(Stage("data", check_output(out, "data", force=force), config, inputs,
                           force), build)


def _check_not_empty(src: Source, stats, kcore: int | None) -> None:
    """An empty dataset is an error here, not a puzzle for the tokenize stage."""
    if stats.users and stats.items:
        return
    k = DEFAULT_KCORE.get(src.format, 0) if kcore is None else kcore
    cause = f"the {k}-core filter removed every user" if k else "no user has an interaction"
    raise DataError(src.main or "default", f"{cause}: the dataset would be empty",
                    hint="lower --kcore (0 turns the filter off)" if k else "check the source")
