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
    atomic_write_text,
    claim_output,
    stage_lock,
    is_up_to_date,
    write_manifest,
)
from .config import RunConfig, save_config
from .errors import DeepInterestError
from .data.model import load_dataset
from .data.prepare import prepare_dataset
from .evaluate import write_metrics
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
    from .baselines import MostPopular, popularity_metrics

    config = {"split": cfg.split.model_dump(), "eval": cfg.eval.model_dump(), "model": "pop"}
    inputs = {"dataset": artifact_fingerprint(dataset_dir)}
    with claim_output(out, "baseline"):
        if is_up_to_date(out, config=config, inputs=inputs):
            return StageResult("baseline", out, True, 0.0, {})
        start = time.perf_counter()
        metrics = popularity_metrics(load_dataset(dataset_dir),
                                     max_history=cfg.split.max_history, ks=cfg.eval.ks)
        with atomic_dir(out) as tmp:
            write_metrics(tmp / "metrics.json", metrics, model=MostPopular.name)
            seconds = time.perf_counter() - start
            counts = {"valid_users": metrics["valid"].users, "test_users": metrics["test"].users}
            write_manifest(tmp, stage="baseline", config=config, inputs=inputs, counts=counts,
                           seconds=seconds)
    return StageResult("baseline", out, False, seconds, counts)


RUN_CONFIG = "config.yaml"
# Marks the run folder's config.yaml as ours, so a rerun may replace it and a
# user's own config.yaml in a folder named as workdir is never overwritten.
_CONFIG_HEADER = "# Resolved config of the run in this folder, written by `di run`.\n"


def _check_workdir(workdir: Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise DeepInterestError(f"workdir {workdir} is a file; name a folder for the run")
    saved = workdir / RUN_CONFIG
    if saved.is_file() and not (workdir / "run.json").is_file() and \
            not saved.read_text(encoding="utf-8").startswith(_CONFIG_HEADER):
        raise DeepInterestError(f"{saved} was not written by `di run`; a run in {workdir} "
                                "would overwrite it. Use another workdir")


def run(cfg: RunConfig, *, on_stage: Callable[[StageResult], None] | None = None,
        progress: bool = True) -> RunResult:
    """Run every available stage of the chain for ``cfg`` under ``cfg.workdir``.

    The whole run holds a lock on ``workdir`` (and each stage on its own
    folder), so a second run on the same folder fails at once instead of
    mixing its files with this one's.
    """
    workdir = Path(cfg.workdir)
    _check_workdir(workdir)
    with stage_lock(workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, workdir / RUN_CONFIG, header=_CONFIG_HEADER)
        result = RunResult(workdir)
        for step in _steps(cfg, workdir, progress):
            stage = step()
            result.stages.append(stage)
            if on_stage is not None:
                on_stage(stage)
        summary = {"stages": [s.stage for s in result.stages], "missing": list(result.missing)}
        atomic_write_text(workdir / "run.json", json.dumps(summary, indent=2) + "\n")
    return result


def _steps(cfg: RunConfig, workdir: Path, progress: bool) -> tuple[Callable[[], StageResult], ...]:
    return (
        lambda: prepare_dataset(cfg.data, workdir / "dataset"),
        lambda: tokenize_items(cfg.tokenize, workdir / "dataset", workdir / "sids",
                               progress=progress),
        lambda: train_stage(cfg.train, cfg.split, workdir / "dataset", workdir / "sids",
                            workdir / "sft", evaluation=cfg.eval, progress=progress),
        lambda: eval_stage(cfg.eval, cfg.split, workdir / "dataset", workdir / "sids",
                           workdir / "sft" / "best", workdir / "eval"),
        lambda: evaluate_popularity(cfg, workdir / "dataset", workdir / "baseline"),
    )
