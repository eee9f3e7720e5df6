"""The training stages behind ``di train``: SFT, then RL.

They read the artifacts of the stages before them from a run's work folder
(``dataset/``, ``sids/``) and write their own (the eval stage is
:mod:`deepinterest.eval.stage`):

    <workdir>/sft/    best/ (checkpoint + sft.json), last/ (resumable), metrics.json, manifest.json
    <workdir>/rl/     best/ (checkpoint + rl.json), last/, rl_result.json, metrics.json,
                      manifest.json

The RL stage (:func:`rl_stage`) starts from ``sft/best`` of a finished SFT
stage and records that checkpoint's fingerprint (and the interests
artifact's, when its rewards read one) among its inputs, so retraining SFT
reruns RL.

Training resumes: ``sft/`` (and ``rl/``) persists while a run is interrupted and
``train_sft`` (``train_rl``) continues from ``last/``. ``sft/stage.json`` records the stage,
config and inputs the folder was started with; when they change, the folder
is cleared and training starts over (an exact resume across configs is
impossible). The manifest is written last, so only a finished stage is
ever skipped. Each stage folder is locked while a process writes it, and a
folder that holds anything else is refused (:func:`~deepinterest.artifacts.claim_output`).

Provenance: the dataset and SIDs fingerprints a checkpoint was trained on
are recorded in ``best/sft.json`` (and the folder's ``stage.json``);
``di eval`` and ``di recommend`` refuse a checkpoint whose fingerprints are
not the run's, even when its catalogue has the same shape
(:mod:`.checkpoints`).

Under ``torchrun`` (or ``accelerate launch``) every rank runs ``train_stage``;
only rank 0 clears the folder and writes files, the others wait for it at a
barrier, and all ranks train together (:mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..artifacts import (
    MANIFEST,
    STAGE_MARKER,
    StageResult,
    artifact_fingerprint,
    atomic_write_text,
    check_output,
    claim_output,
    fingerprint_paths,
    fingerprint_value,
    is_up_to_date,
    write_manifest,
)
from ..backbones.base import BACKBONE_FILE
from ..config import EvalConfig, SplitConfig, TrainConfig
from ..data.model import load_dataset
from ..data.splits import leave_one_out
from ..errors import DeepInterestError
from ..eval.metrics import write_metrics
from ..registry import create_with, get, parameter
from ..schemas.sids import load_quantizer
from . import distributed as dd
from .checkpoints import check_provenance, load_catalog, load_checkpoint, run_fingerprints
from .sft import BEST

SFT_STAGE = "train-sft"
INTEREST_TOKEN_FIELDS = ("interest_tokens", "interest_vocabulary")
RL_STAGE = "train-rl"


def _start_folder(out: Path, key: dict[str, Any]) -> None:
    """Keep ``out`` for resuming only if it was started with the same config and inputs.

    Called with the folder locked and checked (:func:`~deepinterest.artifacts.claim_output`):
    it is empty, missing or a training folder of ours, so clearing it loses nothing
    the user made.
    """
    marker = out / STAGE_MARKER
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if json.loads(marker.read_text("utf-8")) == key:
            if not (out / MANIFEST).is_file():
                return  # unfinished work of this config: resume it
            # Finished with this config, yet not up to date: its files changed since
            # (damaged weights, say), so nothing in it can be trusted to resume from.
            warnings.warn(f"{out}: its files changed after training finished; training "
                          "starts over", stacklevel=3)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    atomic_write_text(marker, json.dumps(key, indent=2) + "\n")


def init_from_codebooks(backbone: Any, *sids_dirs: str | Path) -> None:
    """Start ``backbone``'s code embeddings from the codewords of the run's quantizers
    (one per SID view, in order)."""
    if not hasattr(backbone, "init_code_embeddings"):
        raise DeepInterestError(f"train.init_from_codebooks: the {type(backbone).__name__} "
                                "backbone cannot start from codebooks; set it to false")
    books = []
    for sids_dir in sids_dirs:
        quantizer = load_quantizer(sids_dir)
        if not hasattr(quantizer, "codebooks"):
            raise DeepInterestError(f"train.init_from_codebooks: the "
                                    f"{type(quantizer).__name__} quantizer has no codebooks; "
                                    "set it to false")
        books.append(quantizer.codebooks)
    backbone.init_code_embeddings(*books)


def train_stage(train_cfg: TrainConfig, split_cfg: SplitConfig, dataset_dir: str | Path,
                sids_dir: str | Path, out: str | Path, *, evaluation: EvalConfig | None = None,
                interests_dir: str | Path | None = None, second_sids_dir: str | Path | None = None,
                progress: bool = True, force: bool = False) -> StageResult:
    """Supervised fine-tuning of the configured backbone (``di train --stage sft``).

    Checkpoints are chosen on validation ranked with ``evaluation`` (an
    :class:`~deepinterest.config.EvalConfig`; its defaults when None), as
    ``di eval`` ranks. ``interests_dir`` (the run's interests artifact) feeds
    ``train.interest_tokens``, which needs it. ``second_sids_dir`` (the run's
    ``sids-second``, from ``[tokenize.second]``) is the second SID view a two-view
    backbone learns. ``force`` lets ``out`` replace a folder that is not a training
    folder.
    """
    dataset_dir, sids_dir, out = Path(dataset_dir), Path(sids_dir), Path(out)
    evaluation = evaluation or EvalConfig()
    # Without `rl`: GRPO's settings are the RL stage's and must not retrain SFT.
    config = {"train": train_cfg.model_dump(mode="json", exclude={"rl"}),
              "split": split_cfg.model_dump(), "eval": evaluation.model_dump()}
    inputs = {"dataset": artifact_fingerprint(dataset_dir), "sids": artifact_fingerprint(sids_dir)}
    if train_cfg.interest_tokens:
        if interests_dir is None:
            raise DeepInterestError("train.interest_tokens needs the run's interests: mine "
                                    "them first (`di mine`, or [[mine.miners]] in `di run`)")
        inputs["interests"] = artifact_fingerprint(interests_dir)
    else:  # runs without interest tokens keep the fingerprint they had before the option
        for name in INTEREST_TOKEN_FIELDS:
            del config["train"][name]
    second = None if second_sids_dir is None else Path(second_sids_dir)
    check_views(train_cfg, second is not None)
    if second is not None:
        inputs["second_sids"] = artifact_fingerprint(second)
    if is_up_to_date(out, config=config, inputs=inputs):
        return StageResult(SFT_STAGE, out, True, 0.0, {})
    return _locked(SFT_STAGE, out, force, lambda info: _train(
        train_cfg, split_cfg, evaluation, dataset_dir, (sids_dir, second),
        None if interests_dir is None else Path(interests_dir), out, config, inputs, info,
        progress))


def check_views(train_cfg: TrainConfig, second: bool) -> None:
    """A second SID view (``[tokenize.second]``) and a backbone that learns two go
    together (checked by ``di run`` before any stage, and by the training stage)."""
    learns_two = parameter(get("backbones", train_cfg.backbone), "second") is not None
    if second and not learns_two:
        raise DeepInterestError(f"[tokenize.second] makes a second SID view, but the "
                                f"{train_cfg.backbone!r} backbone learns one: set "
                                "train.backbone = 't5-views', or unset tokenize.second")
    if not second and learns_two:
        raise DeepInterestError(f"the {train_cfg.backbone!r} backbone learns two SID views: "
                                "set [tokenize.second] (the second view's settings)")


def build_backbone(train_cfg: TrainConfig, catalog: Any, dataset: Any,
                   interests_dir: Path | None, second: Any = None) -> Any:
    """The configured backbone, with the items' interest table when it asks for tokens
    and the second view's catalogue ``second`` when it learns two."""
    options = dict(train_cfg.options)
    table = None
    if train_cfg.interest_tokens:
        from ..backbones.base import InterestTable
        from ..schemas.interests import descriptor_table, read_items

        factory = get("backbones", train_cfg.backbone)
        if parameter(factory, "interests") is None:
            raise DeepInterestError(f"train.interest_tokens: the {train_cfg.backbone!r} "
                                    "backbone takes no interest tokens; set it to 0")
        vocabulary, ids, weights = descriptor_table(
            read_items(interests_dir), [item.id for item in dataset.items],
            train_cfg.interest_vocabulary)
        table = InterestTable(tuple(vocabulary), torch.tensor(ids, dtype=torch.long),
                              torch.tensor(weights, dtype=torch.float32))
        options |= {"interest_tokens": train_cfg.interest_tokens,
                    "interest_vocabulary": len(vocabulary)}
    return create_with("backbones", train_cfg.backbone,
                       {"catalog": catalog, "interests": table, "second": second}, **options)


def _locked(stage: str, out: Path, force: bool,
            work: Callable[[dd.DistInfo], StageResult]) -> StageResult:
    """Claim ``out``, then run ``work`` in the process group with rank 0 holding the lock."""
    check_output(out, stage, force=force)
    info = dd.init_distributed()  # the trainer joins this group rather than making its own
    # Rank 0 alone locks and writes the folder; the other ranks follow it at barriers.
    lock = claim_output(out, stage, force=force) if info.main else contextlib.nullcontext()
    try:
        with lock:
            result = work(info)
    except BaseException:
        dd.cleanup(info, drain=False)  # the other ranks may never reach a barrier
        raise
    dd.cleanup(info)
    return result


def _open_run(stage: str, split_cfg: SplitConfig, dataset_dir: Path, sids_dir: Path, out: Path,
              config: dict, inputs: dict, info):
    """A training stage's start once it holds ``out``: ``None`` when another process
    finished it first, else (dataset, catalog, splits) with the folder started for it."""
    if is_up_to_date(out, config=config, inputs=inputs):  # finished before we took the lock
        return None
    dataset = load_dataset(dataset_dir)
    catalog = load_catalog(dataset, sids_dir)
    splits = leave_one_out(dataset, max_history=split_cfg.max_history)
    if info.main:
        _start_folder(out, {"stage": stage, "config": fingerprint_value(config),
                            "inputs": inputs})
    dd.barrier(info)
    return dataset, catalog, splits


def _close_run(stage: str, out: Path, result, model: str, counts: dict, config: dict,
               inputs: dict, info, start: float) -> StageResult:
    """Rank 0 writes the stage's metrics.json and, last, its manifest; all ranks wait."""
    if info.main:
        write_metrics(out / "metrics.json", {"valid": result.valid, "test": result.test},
                      model=model, best_epoch=result.best_epoch, epochs_run=result.epochs_run)
        write_manifest(out, stage=stage, config=config, inputs=inputs, counts=counts,
                       seconds=time.perf_counter() - start)
    dd.barrier(info)
    return StageResult(stage, out, False, time.perf_counter() - start, counts)


def _train(train_cfg: TrainConfig, split_cfg: SplitConfig, evaluation: EvalConfig,
           dataset_dir: Path, views: tuple[Path, Path | None], interests_dir: Path | None,
           out: Path, config: dict, inputs: dict, info, progress: bool) -> StageResult:
    from .sft import train_sft

    start = time.perf_counter()
    sids_dir, second_dir = views
    opened = _open_run(SFT_STAGE, split_cfg, dataset_dir, sids_dir, out, config, inputs, info)
    if opened is None:
        return StageResult(SFT_STAGE, out, True, 0.0, {})
    dataset, catalog, splits = opened
    second = None if second_dir is None else load_catalog(dataset, second_dir)
    torch.manual_seed(train_cfg.sft.seed)  # the initial weights, the same on every run
    backbone = build_backbone(train_cfg, catalog, dataset, interests_dir, second)
    if train_cfg.init_from_codebooks:
        init_from_codebooks(backbone, *(d for d in views if d is not None))
    # The folder is ours and locked: a last/ from another config (a crash, an older
    # version) is restarted rather than refused.
    result = train_sft(backbone, catalog, splits, train_cfg.sft, out, progress=progress,
                       evaluation=evaluation, provenance=inputs, restart_mismatched=True)
    counts = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
              "test_ndcg@10": round(result.test.values.get("ndcg@10", float("nan")), 4)}
    return _close_run(SFT_STAGE, out, result, train_cfg.backbone, counts, config, inputs, info,
                      start)


def rl_stage(train_cfg: TrainConfig, split_cfg: SplitConfig, dataset_dir: str | Path,
             sids_dir: str | Path, sft_dir: str | Path, out: str | Path, *,
             interests_dir: str | Path | None = None,
             evaluation: EvalConfig | None = None, progress: bool = True,
             force: bool = False) -> StageResult:
    """GRPO from the SFT stage's best checkpoint (``di train --stage rl``).

    ``sft_dir`` is a finished SFT stage folder; its ``best/`` must have been
    trained on this dataset and these SIDs. ``interests_dir`` (the run's
    interests artifact, when it mined one) feeds the interest-aware reward
    terms and makes the paper's composite the default reward. Output rules
    as :func:`train_stage`: ``out`` is claimed and locked, resumed while its
    config and inputs stay the same, and ``force`` replaces a foreign folder.
    """
    dataset_dir, sids_dir, sft_dir, out = map(Path, (dataset_dir, sids_dir, sft_dir, out))
    evaluation = evaluation or EvalConfig()
    checkpoint = _sft_checkpoint(sft_dir)
    run = run_fingerprints(dataset_dir, sids_dir)
    check_provenance(checkpoint, dataset_dir, sids_dir, run)
    # `enabled` only tells `di run` whether to call this stage; toggling it keeps the folder.
    config = {"rl": train_cfg.rl.model_dump(mode="json", exclude={"enabled"}),
              "split": split_cfg.model_dump(), "eval": evaluation.model_dump()}
    inputs = {**run, "sft": fingerprint_paths([checkpoint])}
    if interests_dir is not None:
        inputs["interests"] = artifact_fingerprint(interests_dir)
    if is_up_to_date(out, config=config, inputs=inputs):
        return StageResult(RL_STAGE, out, True, 0.0, {})
    return _locked(RL_STAGE, out, force, lambda info: _train_rl(
        train_cfg, split_cfg, evaluation, dataset_dir, sids_dir, checkpoint, interests_dir, out,
        config, inputs, info, progress))


def _sft_checkpoint(sft_dir: Path) -> Path:
    """``sft_dir/best`` of a finished SFT stage, or a clear error."""
    best = sft_dir / BEST
    if not (best / BACKBONE_FILE).is_file():
        raise DeepInterestError(f"{best}: no SFT checkpoint; RL starts from the SFT model, so "
                                "run `di train --stage sft` first")
    if not (sft_dir / MANIFEST).is_file():
        raise DeepInterestError(f"{sft_dir}: SFT has not finished (no {MANIFEST}); finish it "
                                "with `di train --stage sft` before RL")
    return best


def _train_rl(train_cfg: TrainConfig, split_cfg: SplitConfig, evaluation: EvalConfig,
              dataset_dir: Path, sids_dir: Path, checkpoint: Path, interests_dir: Path | None,
              out: Path, config: dict, inputs: dict, info, progress: bool) -> StageResult:
    from ..rewards.interest_index import InterestIndex
    from .rl import train_rl

    start = time.perf_counter()
    opened = _open_run(RL_STAGE, split_cfg, dataset_dir, sids_dir, out, config, inputs, info)
    if opened is None:
        return StageResult(RL_STAGE, out, True, 0.0, {})
    dataset, catalog, splits = opened
    interests = (InterestIndex.from_artifact(interests_dir, catalog)
                 if interests_dir is not None else None)
    backbone = load_checkpoint(checkpoint, catalog)
    result = train_rl(backbone, catalog, splits, train_cfg.rl, out, interests=interests,
                      user_ids=[u.id for u in dataset.users], progress=progress,
                      evaluation=evaluation, provenance=inputs, restart_mismatched=True)

    def ndcg(metrics) -> float:
        return round(metrics.values.get("ndcg@10", float("nan")), 4)

    counts = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
              "start_valid_ndcg@10": ndcg(result.start_valid), "test_ndcg@10": ndcg(result.test)}
    return _close_run(RL_STAGE, out, result, f"{train_cfg.backbone}+grpo", counts, config,
                      inputs, info, start)
