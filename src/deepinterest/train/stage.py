"""The training and evaluation stages behind ``di train``, ``di eval`` and ``di recommend``.

They read the artifacts of the stages before them from a run's work folder
(``dataset/``, ``sids/``) and write their own:

    <workdir>/sft/    best/ (checkpoint + sft.json), last/ (resumable), metrics.json, manifest.json
    <workdir>/eval/   metrics.json (valid and test, beam search), manifest.json

Training resumes: ``sft/`` persists while a run is interrupted and
``train_sft`` continues from ``last/``. ``sft/stage.json`` records the config
and inputs the folder was started with; when they change, the folder is
cleared and training starts over (an exact resume across configs is
impossible). The manifest is written last, so only a finished stage is
ever skipped.

Under ``torchrun`` (or ``accelerate launch``) every rank runs ``train_stage``;
only rank 0 clears the folder and writes files, the others wait for it at a
barrier, and all ranks train together (:mod:`.distributed`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..artifacts import (
    MANIFEST,
    StageResult,
    artifact_fingerprint,
    atomic_dir,
    atomic_write_text,
    fingerprint_paths,
    fingerprint_value,
    is_up_to_date,
    write_manifest,
)
from ..backbones.base import BACKBONE_FILE, SIDCatalog
from ..data.model import Dataset, load_dataset
from ..data.splits import leave_one_out
from ..errors import DeepInterestError
from ..evaluate import write_metrics
from ..registry import create, get
from . import distributed as dd

STAGE_FILE = "stage.json"


def load_catalog(dataset: Dataset, sids_dir: Path) -> SIDCatalog:
    """The SID catalogue, checked to list the dataset's items in the same order."""
    catalog = SIDCatalog.load(sids_dir)
    if catalog.item_ids != [item.id for item in dataset.items]:
        raise DeepInterestError(f"{sids_dir}: the SIDs were made for another dataset; "
                                "run `di tokenize` on this dataset again")
    return catalog


def _start_folder(out: Path, key: dict[str, Any]) -> None:
    """Keep ``out`` for resuming only if it was started with the same config and inputs."""
    marker = out / STAGE_FILE
    if marker.is_file() and json.loads(marker.read_text("utf-8")) == key:
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    atomic_write_text(marker, json.dumps(key, indent=2) + "\n")


def init_from_codebooks(backbone: Any, sids_dir: str | Path) -> None:
    """Start ``backbone``'s code embeddings from the codewords of the run's quantizer."""
    from ..tokenizers.stage import ItemTokenizer

    if not hasattr(backbone, "init_code_embeddings"):
        raise DeepInterestError(f"train.init_from_codebooks: the {type(backbone).__name__} "
                                "backbone cannot start from codebooks; set it to false")
    quantizer = ItemTokenizer(sids_dir).quantizer
    if not hasattr(quantizer, "codebooks"):
        raise DeepInterestError(f"train.init_from_codebooks: the {type(quantizer).__name__} "
                                "quantizer has no codebooks; set it to false")
    backbone.init_code_embeddings(quantizer.codebooks)


def train_stage(train_cfg, split_cfg, dataset_dir: str | Path, sids_dir: str | Path,
                out: str | Path, *, progress: bool = True) -> StageResult:
    """Supervised fine-tuning of the configured backbone (``di train --stage sft``)."""
    from .sft import train_sft

    dataset_dir, sids_dir, out = Path(dataset_dir), Path(sids_dir), Path(out)
    config = {"train": train_cfg.model_dump(mode="json"), "split": split_cfg.model_dump()}
    inputs = {"dataset": artifact_fingerprint(dataset_dir), "sids": artifact_fingerprint(sids_dir)}
    if is_up_to_date(out, config=config, inputs=inputs):
        return StageResult("train-sft", out, True, 0.0, {})
    start = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    catalog = load_catalog(dataset, sids_dir)
    splits = leave_one_out(dataset, max_history=split_cfg.max_history)
    info = dd.init_distributed()  # train_sft joins this group rather than making its own
    try:
        if info.main:
            _start_folder(out, {"config": fingerprint_value(config), "inputs": inputs})
        dd.barrier(info)
        torch.manual_seed(train_cfg.sft.seed)  # the initial weights, the same on every run
        backbone = create("backbones", train_cfg.backbone, catalog=catalog, **train_cfg.options)
        if train_cfg.init_from_codebooks:
            init_from_codebooks(backbone, sids_dir)
        sft = train_cfg.sft.model_copy(update={"max_history": split_cfg.max_history})
        result = train_sft(backbone, catalog, splits, sft, out, progress=progress)
        counts = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                  "test_ndcg@10": round(result.test.values.get("ndcg@10", float("nan")), 4)}
        if info.main:
            write_metrics(out / "metrics.json", {"valid": result.valid, "test": result.test},
                          model=train_cfg.backbone, best_epoch=result.best_epoch,
                          epochs_run=result.epochs_run)
            write_manifest(out, stage="train-sft", config=config, inputs=inputs, counts=counts,
                           seconds=time.perf_counter() - start)
        dd.barrier(info)
    finally:
        dd.cleanup(info)
    return StageResult("train-sft", out, False, time.perf_counter() - start, counts)


def load_checkpoint(checkpoint: Path, catalog: SIDCatalog):
    """A saved backbone, of whatever registered kind its ``backbone.json`` names."""
    info_path = checkpoint / BACKBONE_FILE
    if not info_path.is_file():
        raise DeepInterestError(f"{checkpoint}: no {BACKBONE_FILE}; is this a `di train` "
                                "checkpoint (the sft/best folder)?")
    kind = json.loads(info_path.read_text("utf-8"))["kind"]
    return get("backbones", kind).load(checkpoint, catalog)


def _checkpoint_fingerprint(checkpoint: Path) -> str:
    """The training stage's fingerprint, or the checkpoint's own files outside a stage folder."""
    if (checkpoint.parent / MANIFEST).is_file():
        return artifact_fingerprint(checkpoint.parent)
    if not checkpoint.is_dir():
        raise DeepInterestError(f"{checkpoint}: checkpoint folder not found")
    return fingerprint_paths([checkpoint])


def eval_stage(eval_cfg, split_cfg, dataset_dir: str | Path, sids_dir: str | Path,
               checkpoint: str | Path, out: str | Path) -> StageResult:
    """HR@K / NDCG@K of a checkpoint on validation and test with constrained beam search."""
    from .generative_eval import evaluate_generative

    dataset_dir, sids_dir, checkpoint, out = map(Path, (dataset_dir, sids_dir, checkpoint, out))
    config = {"eval": eval_cfg.model_dump(), "split": split_cfg.model_dump()}
    inputs = {"dataset": artifact_fingerprint(dataset_dir), "sids": artifact_fingerprint(sids_dir),
              "checkpoint": _checkpoint_fingerprint(checkpoint)}
    if is_up_to_date(out, config=config, inputs=inputs):
        return StageResult("eval", out, True, 0.0, {})
    start = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    catalog = load_catalog(dataset, sids_dir)
    backbone = load_checkpoint(checkpoint, catalog)
    splits = leave_one_out(dataset, max_history=split_cfg.max_history)
    topk = max(eval_cfg.ks)
    metrics = {name: evaluate_generative(backbone, catalog, part, beam=eval_cfg.beam, topk=topk,
                                         ks=eval_cfg.ks, max_history=split_cfg.max_history)
               for name, part in (("valid", splits.valid), ("test", splits.test))}
    with atomic_dir(out) as tmp:
        write_metrics(tmp / "metrics.json", metrics, checkpoint=str(checkpoint),
                      beam=eval_cfg.beam)
        counts = {"test_users": metrics["test"].users}
        write_manifest(tmp, stage="eval", config=config, inputs=inputs, counts=counts,
                       seconds=time.perf_counter() - start)
    return StageResult("eval", out, False, time.perf_counter() - start, counts)


def recommend_for_user(user_id: str, dataset_dir: str | Path, sids_dir: str | Path,
                       checkpoint: str | Path, *, k: int = 10, beam: int = 20,
                       max_history: int = 20) -> list[dict[str, Any]]:
    """Top-``k`` next items for a known user from their whole history (``di recommend``)."""
    from .generative_eval import recommend

    dataset = load_dataset(dataset_dir)
    users = {u.id: n for n, u in enumerate(dataset.users)}
    if user_id not in users:
        raise DeepInterestError(f"unknown user {user_id!r} in {dataset_dir}")
    catalog = load_catalog(dataset, Path(sids_dir))
    backbone = load_checkpoint(Path(checkpoint), catalog)
    row = users[user_id]
    recs = recommend(backbone, catalog, [dataset.users[row].items], users=[row], beam=beam,
                     topk=k, max_history=max_history)
    return [{"rank": r + 1, "item": dataset.items[i].id,
             "title": dataset.items[i].fields.get("title", ""), "score": float(s),
             "sid": catalog.sids[i].tolist()}
            for r, (i, s) in enumerate(zip(recs.items[0].tolist(), recs.scores[0].tolist()))
            if i >= 0]
