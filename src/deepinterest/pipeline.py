"""The chain of stages behind ``di run``.

    dataset -> interests -> sids -> sft checkpoint -> rl checkpoint -> [sasrec] -> eval
    (+ a most-popular baseline scored by the same evaluation code)

Each stage reads the artifact folder of the stage before it and writes its
own under ``workdir``; a stage whose config and inputs are unchanged is
skipped, so an interrupted run resumes where it stopped. Mining runs when
``[mine]`` has miners, RL (GRPO) when ``[train.rl] enabled = true``; eval
then scores the RL checkpoint instead of the SFT one. With ``[hybrid] enabled``
a SASRec is trained on the dataset and eval merges its lists in. Stages that are not
part of this release would be listed in :data:`PLANNED_STAGES` and reported
as missing rather than faked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .artifacts import (
    RunResult,
    Stage,
    StageResult,
    artifact_fingerprint,
    atomic_write_text,
    read_manifest,
    run_stage,
    stage_lock,
)
from . import stages
from .config import RunConfig, save_config
from .errors import DeepInterestError
from .data.model import load_dataset
from .eval.metrics import write_metrics
from .layout import RunLayout

# Stages of the method that this release does not run yet, in chain order.
PLANNED_STAGES: tuple[str, ...] = ()


def evaluate_popularity(cfg: RunConfig, dataset_dir: Path, out: Path) -> StageResult:
    """The most-popular baseline on validation and test, written as ``metrics.json``."""
    from .eval.baselines import MostPopular, popularity_metrics

    config = {"split": cfg.split.model_dump(), "eval": cfg.eval.model_dump(), "model": "pop"}
    inputs = {"dataset": artifact_fingerprint(dataset_dir)}

    def build(folder: Path) -> dict:
        metrics = popularity_metrics(load_dataset(dataset_dir),
                                     max_history=cfg.split.max_history, ks=cfg.eval.ks)
        write_metrics(folder / "metrics.json", metrics, model=MostPopular.name)
        return {"valid_users": metrics["valid"].users, "test_users": metrics["test"].users}

    return run_stage(Stage("baseline", Path(out), config, inputs), build)


# Marks the run folder's config.yaml as ours, so a rerun may replace it and a
# user's own config.yaml in a folder named as workdir is never overwritten.
_CONFIG_HEADER = "# Resolved config of the run in this folder, written by `di run`.\n"


def saved_config(workdir: str | Path) -> Path | None:
    """The config `di run` saved in ``workdir`` (``config.yaml`` with its header), if any."""
    path = RunLayout(Path(workdir)).config
    if path.is_file() and path.read_text(encoding="utf-8").startswith(_CONFIG_HEADER):
        return path
    return None


def _check_workdir(run: RunLayout) -> None:
    if run.root.exists() and not run.root.is_dir():
        raise DeepInterestError(f"workdir {run.root} is a file; name a folder for the run")
    if run.config.is_file() and not run.summary.is_file() and \
            not run.config.read_text(encoding="utf-8").startswith(_CONFIG_HEADER):
        raise DeepInterestError(f"{run.config} was not written by `di run`; a run in "
                                f"{run.root} would overwrite it. Use another workdir")


def run(cfg: RunConfig, *, on_stage: Callable[[StageResult], None] | None = None,
        progress: bool = True) -> RunResult:
    """Run every available stage of the chain for ``cfg`` under ``cfg.workdir``.

    The whole run holds a lock on ``workdir`` (and each stage on its own
    folder), so a second run on the same folder fails at once instead of
    mixing its files with this one's.
    """
    from .train.stage import check_views

    layout = RunLayout(cfg.workdir)
    _check_workdir(layout)
    check_views(cfg.train, cfg.tokenize.second is not None)  # before hours of earlier stages
    with stage_lock(layout.root):
        layout.root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, layout.config, header=_CONFIG_HEADER)
        result = RunResult(layout.root, missing=PLANNED_STAGES)
        for step in STEPS:
            stage = step(cfg, layout, progress)
            if stage is None:  # a stage the config turned off
                continue
            result.stages.append(stage)
            if on_stage is not None:
                on_stage(stage)
        summary = {"stages": [s.stage for s in result.stages], "missing": list(result.missing)}
        atomic_write_text(layout.summary, json.dumps(summary, indent=2) + "\n")
    return result


# Each step is the public call of its stage on this run's folders (deepinterest.stages), so
# `di run` and a stage run alone cannot drift apart.

def _data(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult:
    result = stages.prepare_data(cfg.data, run.dataset)
    # The artifact's own count (its manifest), not a read of the whole dataset.
    items = read_manifest(result.path)["counts"]["items"]
    if items < max(cfg.eval.ks):  # found now, not after training, when the metrics fail
        raise DeepInterestError(f"the catalogue has {items} items, fewer than the largest K "
                                f"in eval.ks ({max(cfg.eval.ks)}): set [eval] ks to values "
                                f"of at most {items}")
    return result


def _mine(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult | None:
    if not cfg.mine.miners:  # mining turned off: the chain goes on without interests
        return None
    return stages.mine_interests(run.dataset, run.interests, cfg.mine, progress=progress)


def _tokenize(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult:
    """Plain SIDs unless ``[tokenize] interests`` is set: ``"mine"`` takes this run's
    ``interests/`` (so mining must be on), a path takes that artifact."""
    from .tokenizers.interests import RUN_INTERESTS

    second = cfg.tokenize.second_view()
    for name, view in (("tokenize", cfg.tokenize), ("tokenize.second", second)):
        if view is not None and view.interests == RUN_INTERESTS and not cfg.mine.miners:
            raise DeepInterestError(f"{name}.interests = {RUN_INTERESTS!r} uses the interests "
                                    "this run mines, but [mine] has no miners; add a miner, "
                                    f"or name an interests folder, or unset {name}.interests")
    return stages.tokenize_items(run.dataset, run.sids, cfg.tokenize, progress=progress)


def _tokenize_second(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult | None:
    """``[tokenize.second]``'s view of the items (checked with the first, above)."""
    second = cfg.tokenize.second_view()
    if second is None:
        return None
    return stages.tokenize_items(run.dataset, run.second_sids, second, progress=progress)


def _train_sft(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult:
    return stages.train_sft(cfg, progress=progress)


def _train_rl(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult | None:
    if not cfg.train.rl.enabled:
        return None
    return stages.train_rl(cfg, progress=progress)


def _train_sasrec(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult | None:
    if not cfg.hybrid.enabled:
        return None
    return stages.train_sasrec(cfg, progress=progress)


def _eval(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult:
    return stages.evaluate_run(cfg)


def _baseline(cfg: RunConfig, run: RunLayout, progress: bool) -> StageResult:
    return evaluate_popularity(cfg, run.dataset, run.baseline)


# The chain, in order: one entry per stage (a stage that is not shipped yet is
# listed in PLANNED_STAGES instead).
STEPS: tuple[Callable[[RunConfig, RunLayout, bool], StageResult | None], ...] = (
    _data, _mine, _tokenize, _tokenize_second, _train_sft, _train_rl, _train_sasrec, _eval,
    _baseline,
)
