"""Joining the shards of a mining run (``di mine --shard I/N`` on N machines, then ``di mine merge``).

Each shard mines items I, I+N, I+2N, ... of the same dataset with the same
config; the merge checks exactly that (same stage, dataset fingerprint and
config but for ``shard``, and shards 0..N-1 each present once), joins their
items in the dataset's order, and computes what needs the whole catalogue:
users' interests and the report. The merged folder's manifest is the one an
unsharded run with that config would write, so a later ``di run`` with the
config finds it up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import (
    Stage,
    StageResult,
    artifact_fingerprint,
    check_output,
    read_manifest,
    run_stage,
)
from ..data.model import load_dataset
from ..errors import DeepInterestError
from .base import MineResult
from .schema import Interests
from ..schemas.interests import MINE_STAGE, read_items
from .stage import selected_items, write_artifact


def _shard_config(folder: Path) -> dict[str, Any]:
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        raise DeepInterestError(f"{folder}: no manifest.json; is it a finished `di mine` "
                                "shard?") from None
    if manifest.get("stage") != MINE_STAGE or not manifest["config"].get("shard"):
        raise DeepInterestError(f"{folder}: not a `di mine --shard` artifact")
    return manifest


def _checked_config(folders: list[Path], dataset_fp: str) -> dict[str, Any]:
    manifests = [_shard_config(f) for f in folders]
    base = {**manifests[0]["config"], "shard": None}
    seen: dict[int, Path] = {}
    count = int(manifests[0]["config"]["shard"].split("/")[1])
    for folder, manifest in zip(folders, manifests):
        if manifest["inputs"].get("dataset") != dataset_fp:
            raise DeepInterestError(f"{folder}: mined from another dataset artifact")
        if {**manifest["config"], "shard": None} != base:
            raise DeepInterestError(f"{folder}: mined with another config than {folders[0]}")
        index, n = map(int, manifest["config"]["shard"].split("/"))
        if n != count or index in seen:
            raise DeepInterestError(f"{folder}: shard {index}/{n} repeats or does not fit "
                                    f"{count} shards")
        seen[index] = folder
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise DeepInterestError(f"shards {missing} of {count} are missing")
    return base


def _result(item: str, record: dict[str, Any]) -> MineResult:
    fields = {k: v for k, v in record.items() if k not in ("answer", "options")}
    answer = Interests.model_validate(record["answer"]) if record.get("answer") else None
    return MineResult(key=item, task="item", answer=answer, **fields)


def merge_shards(shard_dirs: list[str | Path], dataset_dir: str | Path, out: str | Path, *,
                 force: bool = False) -> StageResult:
    """One ``interests`` artifact from the shards of one run (module docstring)."""
    from ..config import MineConfig

    folders, dataset_dir = [Path(d) for d in shard_dirs], Path(dataset_dir)
    dataset_fp = artifact_fingerprint(dataset_dir)
    config = _checked_config(folders, dataset_fp)
    cfg = MineConfig.model_validate(config)

    def build(folder: Path) -> dict[str, Any]:
        dataset = load_dataset(dataset_dir)
        rows = {}
        for shard in folders:
            rows.update({row["item"]: row for row in read_items(shard)})
        ordered = [rows[item.id] for item in selected_items(dataset, cfg)]
        answers = {name: [_result(r["item"], r["answers"][name]) for r in ordered]
                   for name in (spec.name for spec in cfg.miners)}
        return write_artifact(folder, dataset, ordered, answers, cfg,
                              users=cfg.users != "none", complete=True)

    out = check_output(out, MINE_STAGE, force=force)
    return run_stage(Stage(MINE_STAGE, out, config, {"dataset": dataset_fp}, force), build)
