"""The chain of stages behind ``di run``.

    dataset -> interests -> sids -> sft checkpoint -> rl checkpoint -> eval
    (+ a most-popular baseline scored by the same evaluation code)

Each stage reads the artifact folder of the stage before it and writes its
own under ``workdir``; a stage whose config and inputs are unchanged is
skipped, so an interrupted run resumes where it stopped. Stages that are not
part of this release are listed in :data:`PLANNED_STAGES` and reported as
missing rather than faked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import (
    StageResult,
    artifact_fingerprint,
    atomic_dir,
    is_up_to_date,
    write_manifest,
)
from .config import RunConfig, save_config
from .data.model import load_dataset
from .data.prepare import prepare_dataset
from .data.splits import leave_one_out
from .evaluate import evaluate_rankings, write_metrics
from .tokenizers.stage import tokenize_items
from .train.stage import eval_stage, train_stage

# Stages of the method that this release does not run yet, in chain order.
PLANNED_STAGES = ("mine", "train-rl")


@dataclass
class RunResult:
    workdir: Path
    stages: list[StageResult] = field(default_factory=list)
    missing: tuple[str, ...] = PLANNED_STAGES


def evaluate_popularity(cfg: RunConfig, dataset_dir: Path, out: Path) -> StageResult:
    """The most-popular baseline on validation and test, written as ``metrics.json``."""
    from .baselines import MostPopular

    config = {"split": cfg.split.model_dump(), "eval": cfg.eval.model_dump(), "model": "pop"}
    inputs = {"dataset": artifact_fingerprint(dataset_dir)}
    if is_up_to_date(out, config=config, inputs=inputs):
        return StageResult("baseline", out, True, 0.0, {})
    start = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    splits = leave_one_out(dataset, max_history=cfg.split.max_history)
    model = MostPopular().fit(dataset)
    k = max(cfg.eval.ks)
    metrics = {
        name: evaluate_rankings(model.rank(len(part), k), [e.target for e in part], cfg.eval.ks)
        for name, part in (("valid", splits.valid), ("test", splits.test))
    }
    with atomic_dir(out) as tmp:
        write_metrics(tmp / "metrics.json", metrics, model=model.name)
        seconds = time.perf_counter() - start
        counts = {"valid_users": metrics["valid"].users, "test_users": metrics["test"].users}
        write_manifest(tmp, stage="baseline", config=config, inputs=inputs, counts=counts,
                       seconds=seconds)
    return StageResult("baseline", out, False, seconds, counts)


def run(cfg: RunConfig, *, on_stage: Callable[[StageResult], None] | None = None,
        progress: bool = True) -> RunResult:
    """Run every available stage of the chain for ``cfg`` under ``cfg.workdir``."""
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, workdir / "config.yaml")
    result = RunResult(workdir)
    steps = (
        lambda: prepare_dataset(cfg.data, workdir / "dataset"),
        lambda: tokenize_items(cfg.tokenize, workdir / "dataset", workdir / "sids",
                               progress=progress),
        lambda: train_stage(cfg.train, cfg.split, workdir / "dataset", workdir / "sids",
                            workdir / "sft", progress=progress),
        lambda: eval_stage(cfg.eval, cfg.split, workdir / "dataset", workdir / "sids",
                           workdir / "sft" / "best", workdir / "eval"),
        lambda: evaluate_popularity(cfg, workdir / "dataset", workdir / "baseline"),
    )
    for step in steps:
        stage = step()
        result.stages.append(stage)
        if on_stage is not None:
            on_stage(stage)
    summary = {"stages": [s.stage for s in result.stages], "missing": list(result.missing)}
    (workdir / "run.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result
