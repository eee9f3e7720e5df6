"""The public Python API: one call per stage, the whole chain, and serving.

Every ``di`` command is one of these calls, so a pipeline of your own can run
any stage exactly as the command line does:

    import deepinterest as di

    cfg = di.load_config("examples/default.toml")  # or di.RunConfig(workdir="runs/x")
    result = di.run(cfg)                             # data, mine, tokenize, SFT, [RL], eval
    model = di.load_recommender(cfg)
    for rec in model.recommend("U0001", k=5):
        print(rec.rank, rec.item, rec.title, rec.score)

Stages meet only through artifact folders (``docs/pipeline.md``): each call
reads the folders of the stages before it and writes its own, skips itself
when its config and inputs are unchanged, and returns a
``StageResult``. Calls that take a ``config``
accept a ``RunConfig``, a path to a TOML or YAML
config, or ``None`` for the defaults (the embedded dataset under
``runs/default``).

Heavy dependencies (torch, sentence-transformers) are imported inside the
calls, so ``import deepinterest`` stays cheap.
"""
from __future__ import annotations

from collections.abc import Callable

from .artifacts import RunResult, StageResult
from .pipeline import run as _run_chain
from .serving import (
    EnsembleRecommender,
    Recommendation,
    Recommender,
    load_ensemble,
    load_recommender,
    recommend,
)
from .stages import (
    ConfigLike,
    as_config,
    evaluate_run,
    merge_shards,
    mine_interests,
    mining_report,
    prepare_data,
    read_dataset,
    read_metrics,
    tokenize_items,
    train_rl,
    train_sasrec,
    train_sft,
)

__all__ = [
    "ConfigLike", "as_config", "run", "read_dataset", "prepare_data", "mine_interests",
    "mining_report", "merge_shards", "tokenize_items", "train_sft", "train_rl",
    "train_sasrec", "evaluate_run", "read_metrics", "Recommendation", "Recommender", "load_recommender",
    "recommend", "EnsembleRecommender", "load_ensemble",
]


def run(config: ConfigLike = None, *, on_stage: Callable[[StageResult], None] | None = None,
        progress: bool = True) -> RunResult:
    """Run the whole chain for ``config`` under its ``workdir`` (``di run``).

    Data, mining (when ``[mine]`` has miners), tokenization, SFT, GRPO (when
    ``[train.rl] enabled``), SASRec (when ``[hybrid] enabled``), evaluation and the
    most-popular baseline, in that order; ``on_stage`` is called with each stage's result as it finishes.
    Up-to-date stages are skipped, so an interrupted run resumes.
    """
    return _run_chain(as_config(config), on_stage=on_stage, progress=progress)
