"""The eval stage (``di eval``): HR@K and NDCG@K of a checkpoint on validation and test.

Ranks with trie-constrained beam search (:mod:`.generative`) under the run's
``[eval]`` settings and scores with :mod:`.metrics`, after checking that the
checkpoint was trained on the run's dataset and SIDs
(:func:`~deepinterest.train.checkpoints.check_provenance`). Writes
``eval/metrics.json``; the stage is skipped while its inputs (dataset, SIDs,
the checkpoint's files) and settings are unchanged.

With ``[hybrid] rule = "learned"`` the stage also fits the merge on validation
(:mod:`.rerank`; ``reranker.safetensors`` and ``reranker.json`` beside the metrics,
which ``di recommend`` then ranks with): test users are ranked by the reranker fitted on
every validation user, and each validation user by one fitted on the other half, so
neither split's figures come from a fit that saw its target.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..artifacts import Stage, StageResult, fingerprint_paths, run_stage
from ..config import EvalConfig, SplitConfig
from ..data.splits import Example, leave_one_out
from ..errors import DeepInterestError
from ..train.checkpoints import check_provenance, open_trained, run_fingerprints
from ..train.sasrec import load_companion, sasrec_fingerprint
from ..train.sasrec_config import HybridConfig
from .generative import evaluate_generative, hybrid_candidates, ranks_in
from .lists import Companion
from .metrics import Metrics, metrics_from_ranks, write_metrics
from .rerank import crossfit_scores, fit_reranker, save_reranker, top_candidates


def eval_stage(eval_cfg: EvalConfig, split_cfg: SplitConfig, dataset_dir: str | Path,
               sids_dir: str | Path, checkpoint: str | Path, out: str | Path, *,
               hybrid: tuple[HybridConfig, Path] | None = None,
               force: bool = False) -> StageResult:
    """HR@K / NDCG@K of a checkpoint on validation and test with constrained beam search;
    ``hybrid`` (``[hybrid]`` and its SASRec stage folder) merges SASRec's lists in."""
    dataset_dir, sids_dir, checkpoint, out = map(Path, (dataset_dir, sids_dir, checkpoint, out))
    if not checkpoint.is_dir():
        raise DeepInterestError(f"{checkpoint}: checkpoint folder not found")
    run = run_fingerprints(dataset_dir, sids_dir)
    # Checked before the up-to-date test too: whether the checkpoint's training finished
    # (its folder's manifest) is not among the stage's inputs.
    check_provenance(checkpoint, dataset_dir, sids_dir, run)
    config: dict = {"eval": eval_cfg.model_dump(), "split": split_cfg.model_dump()}
    # The checkpoint's own files: best/ and last/ of one run are different inputs.
    inputs = {**run, "checkpoint": fingerprint_paths([checkpoint])}
    if hybrid is not None:  # runs without [hybrid] keep the fingerprints they had
        # the learned merge fits its own weighing: a new weight leaves its eval up to date
        kept = {"rule", "candidates"} | ({"weight"} if hybrid[0].rule != "learned" else set())
        config["hybrid"] = hybrid[0].model_dump(include=kept)
        inputs["sasrec"] = sasrec_fingerprint(hybrid[1])

    def build(folder: Path) -> dict:
        trained = open_trained(dataset_dir, sids_dir, checkpoint, fingerprints=run)
        backbone, catalog = trained.backbone, trained.catalog
        companion = None if hybrid is None else load_companion(hybrid[1], trained.dataset,
                                                               hybrid[0])
        splits = leave_one_out(trained.dataset, max_history=split_cfg.max_history)
        search = {"beam": eval_cfg.beam, "max_history": split_cfg.max_history}
        if companion is not None and companion.rule == "learned":
            companion, valid = fit_learned_merge(backbone, catalog, splits.valid, companion,
                                                 ks=eval_cfg.ks, **search)
            save_reranker(companion.reranker, folder, checkpoint=inputs["checkpoint"],
                          sasrec=inputs["sasrec"])
            parts = {"valid": valid}
        else:
            parts = {"valid": evaluate_generative(backbone, catalog, splits.valid,
                                                  topk=max(eval_cfg.ks), ks=eval_cfg.ks,
                                                  companion=companion, **search)}
        metrics = parts | {"test": evaluate_generative(
            backbone, catalog, splits.test, topk=max(eval_cfg.ks), ks=eval_cfg.ks,
            companion=companion, **search)}
        extra = {} if hybrid is None else {"hybrid": config["hybrid"]}
        write_metrics(folder / "metrics.json", metrics, checkpoint=str(checkpoint),
                      beam=eval_cfg.beam, **extra)
        return {"test_users": metrics["test"].users}

    return run_stage(Stage("eval", out, config, inputs, force), build)


def fit_learned_merge(backbone, catalog, valid: Sequence[Example], companion: Companion, *,
                      ks: Sequence[int], beam: int, max_history: int) -> tuple[Companion, Metrics]:
    """The companion with a reranker fitted on every validation user, and validation
    metrics in which each user is ranked by a reranker fitted without them (two folds)."""
    cands = hybrid_candidates(backbone, catalog, [e.history for e in valid], companion,
                              users=[e.user for e in valid], beam=beam, max_history=max_history)
    targets = torch.tensor([e.target for e in valid])
    crossed = top_candidates(cands, crossfit_scores(cands, targets), max(ks))
    metrics = metrics_from_ranks(ranks_in(crossed, targets.tolist(), topk=max(ks)), ks)
    return companion._replace(reranker=fit_reranker(cands, targets)), metrics
