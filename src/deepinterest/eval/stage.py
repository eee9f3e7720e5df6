"""The eval stage (``di eval``): HR@K and NDCG@K of a checkpoint on validation and test.

Ranks with trie-constrained beam search (:mod:`.generative`) under the run's
``[eval]`` settings and scores with :mod:`.metrics`, after checking that the
checkpoint was trained on the run's dataset and SIDs
(:func:`~deepinterest.train.checkpoints.check_provenance`). Writes
``eval/metrics.json``; the stage is skipped while its inputs (dataset, SIDs,
the checkpoint's files) and settings are unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import Stage, StageResult, fingerprint_paths, run_stage
from ..config import EvalConfig, SplitConfig
from ..data.splits import leave_one_out
from ..errors import DeepInterestError
from ..train.checkpoints import check_provenance, open_trained, run_fingerprints
from ..train.sasrec import load_companion, sasrec_fingerprint
from ..train.sasrec_config import HybridConfig
from .generative import evaluate_generative
from .metrics import write_metrics


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
        config["hybrid"] = hybrid[0].model_dump(include={"weight", "rule", "candidates"})
        inputs["sasrec"] = sasrec_fingerprint(hybrid[1])

    def build(folder: Path) -> dict:
        trained = open_trained(dataset_dir, sids_dir, checkpoint, fingerprints=run)
        backbone, catalog = trained.backbone, trained.catalog
        companion = None if hybrid is None else load_companion(hybrid[1], trained.dataset,
                                                               hybrid[0])
        splits = leave_one_out(trained.dataset, max_history=split_cfg.max_history)
        metrics = {name: evaluate_generative(backbone, catalog, part, beam=eval_cfg.beam,
                                             topk=max(eval_cfg.ks), ks=eval_cfg.ks,
                                             max_history=split_cfg.max_history,
                                             companion=companion)
                   for name, part in (("valid", splits.valid), ("test", splits.test))}
        extra = {} if hybrid is None else {"hybrid": config["hybrid"]}
        write_metrics(folder / "metrics.json", metrics, checkpoint=str(checkpoint),
                      beam=eval_cfg.beam, **extra)
        return {"test_users": metrics["test"].users}

    return run_stage(Stage("eval", out, config, inputs, force), build)
