"""Supervised fine-tuning (SFT) of a generative backbone on next-item SIDs.

:func:`train_sft` trains any backbone that implements the decode protocol of
:class:`~deepinterest.backbones.base.GenerativeBackbone` plus ``save(folder)``
and ``load(folder, catalog)`` (T5, causal LM), on every training prefix of
the leave-one-out splits (history -> next item), validates each epoch with
trie-constrained beam search (beam 20, top 10; the protocol of docs/data.md), stops
early on validation NDCG@10 and evaluates the best checkpoint on test once.

Design decisions:

- **Length-bucketed batches.** Examples are sorted by history length (ties
  in a seeded random order) and cut into batches, and the batch order is
  shuffled with a generator seeded by ``(seed, epoch)``. Each batch is
  trimmed to its longest history: most Beauty histories are short, and
  bucketing made a SASRec epoch 4x faster on this machine.
- **Exact resume.** ``out_dir/last/`` holds the weights, optimizer,
  scheduler, every rank's RNG states, the epoch and the best-so-far record,
  written atomically after each epoch (:mod:`.loop`, which owns epochs,
  batch order, validation cadence, early stopping and checkpoints): a run
  killed after epoch ``e`` and restarted with the same ``out_dir`` ends with
  the same weights as an uninterrupted run. A resume with a different config
  (other than ``resume``/``threads``) is refused, since it could not be exact.
- **Best checkpoint** ``out_dir/best/`` = ``backbone.save`` + ``sft.json``
  (config, epoch, validation metrics; test metrics added at the end).
- **Validation subset.** ``eval_users`` validates on a fixed seeded subset
  of validation users each epoch (full beam search over 22k users costs
  minutes on a CPU); test always uses every user.
- **Alignment tasks.** A backbone with an ``alignment_loss(items)``
  attribute (LLM backbones' title<->SID tasks) gets it added on each batch's
  target items with weight ``alignment_weight`` (0 = off).
- **Distributed**: see :mod:`.distributed`; ``batch_size`` is per process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import EvalConfig, SFTConfig
from ..backbones.base import GenerativeBackbone, pad_histories
from ..backbones.trie import SIDTrie
from ..data.splits import Example, Splits
from ..errors import DeepInterestError
from ..evaluate import Metrics, metrics_from_ranks
from . import distributed as dd
from .generative_eval import target_ranks
from .loop import (BEST, LAST, STATE_FILE, EpochRecord, EpochStats, LoopSettings, Progress,
                   Task, epoch_batches, global_batches, record_dict, run_epochs, train_epoch,
                   lr_schedule, write_folder, write_test)
from .precision import resolve_precision
from .threads import set_threads

# The checkpoint names and the epoch helpers live in .loop; they stay importable from here.
__all__ = ["BEST", "LAST", "STATE_FILE", "SFT_FILE", "RESULT_FILE", "EpochRecord", "SFTConfig",
           "SFTResult", "TrainData", "epoch_batches", "result_dict", "time_train_steps",
           "train_sft", "valid_subset"]

SFT_FILE = "sft.json"
RESULT_FILE = "sft_result.json"
_RESUME_FREE = ("resume", "threads")  # may change between a run and its resume


@dataclass(frozen=True)
class SFTResult:
    best_epoch: int
    epochs_run: int
    valid: Metrics  # at the best epoch (on the eval_users subset when set)
    test: Metrics  # best checkpoint, every test user
    history: list[EpochRecord]
    seconds: float
    best_dir: Path
    stopped_early: bool
    precision: str = "fp32"  # of the training forward, "auto" resolved


@dataclass(frozen=True)
class TrainData:
    """Training examples as tensors (right-aligned histories)."""

    items: torch.Tensor  # [N, H]
    users: torch.Tensor  # [N]
    targets: torch.Tensor  # [N]
    lengths: torch.Tensor  # [N]

    @classmethod
    def from_examples(cls, examples: list[Example], max_history: int) -> TrainData:
        hist = [e.history for e in examples]
        return cls(pad_histories(hist, max_history),
                   torch.tensor([e.user for e in examples], dtype=torch.long),
                   torch.tensor([e.target for e in examples], dtype=torch.long),
                   torch.tensor([min(len(h), max_history) for h in hist], dtype=torch.long))

    def __len__(self) -> int:
        return len(self.targets)


def _optimizer(backbone: torch.nn.Module, cfg: SFTConfig, total_steps: int):
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg, total_steps))


# -- checkpoints and one epoch ----------------------------------------------

def _save_best(out: Path, backbone, cfg: SFTConfig, epoch: int, valid: dict[str, float],
               info: dd.DistInfo, provenance: dict[str, str] | None = None) -> None:
    def write(tmp: Path) -> None:
        backbone.save(tmp)
        meta = {"config": cfg.model_dump(), "epoch": epoch, "valid": valid,
                "inputs": provenance or {}}
        (tmp / SFT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_folder(out / BEST, info, write)


def _global_batches(data: TrainData, cfg: SFTConfig, epoch: int,
                    info: dd.DistInfo) -> list[torch.Tensor]:
    return global_batches(data.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch, info=info)


def _train_step(model, opt, sched, backbone, data: TrainData, rows: torch.Tensor,
                n_global: int, cfg: SFTConfig, info: dd.DistInfo) -> float:
    width = int(data.lengths[rows].max())  # trim left padding to the longest history
    items = data.items[rows, -width:].to(info.device)
    # bf16 autocast on the forward only: weights, gradients and optimizer state stay fp32.
    bf16 = resolve_precision(cfg.precision, info.device) == "bf16"
    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(items, data.users[rows].to(info.device),
                     data.targets[rows].to(info.device))
    # Scaled so DDP's average over ranks is the mean over the global batch.
    (loss * (len(rows) * info.world / n_global)).backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def _run_epoch(model, opt, sched, backbone, data: TrainData, cfg: SFTConfig, epoch: int,
               info: dd.DistInfo, progress: bool) -> EpochStats:
    """One epoch of :func:`_train_step` through the loop (a seam tests stop a run at)."""
    step = partial(_train_step, model, opt, sched, backbone, data, cfg=cfg, info=info)
    return train_epoch(step, _global_batches(data, cfg, epoch, info), epoch=epoch, info=info,
                       progress=progress)


@dataclass(frozen=True)
class _Validation:
    """How checkpoints are scored: the run's evaluation settings (``EvalConfig``) and
    history length (the splits'), so validation ranks exactly as ``di eval`` will."""

    beam: int
    ks: tuple[int, ...]
    max_history: int
    batch_size: int

    @classmethod
    def of(cls, evaluation: EvalConfig | None, splits: Splits, cfg: SFTConfig) -> _Validation:
        evaluation = evaluation or EvalConfig()
        return cls(evaluation.beam, tuple(evaluation.ks), splits.max_history,
                   cfg.eval_batch_size)


def _evaluate(backbone, catalog, examples: list[Example], val: _Validation, trie: SIDTrie,
              info: dd.DistInfo) -> Metrics:
    """Metrics over ``examples``, each rank ranking ``rank::world`` of them."""
    mine = examples[info.rank::info.world]
    ranks = target_ranks(backbone, catalog, mine, beam=val.beam, topk=max(val.ks),
                         batch_size=val.batch_size, max_history=val.max_history, trie=trie)
    every = dd.all_gather(ranks, info)
    merged = np.empty(len(examples), dtype=np.int64)
    for rank, part in enumerate(every):
        merged[rank::info.world] = part
    return metrics_from_ranks(merged, ks=val.ks)


def valid_subset(examples: list[Example], cfg: SFTConfig) -> list[Example]:
    """The fixed, seeded validation subset (all examples when ``eval_users`` is None)."""
    if cfg.eval_users is None or cfg.eval_users >= len(examples):
        return list(examples)
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = torch.randperm(len(examples), generator=gen)[:cfg.eval_users].sort().values
    return [examples[i] for i in keep.tolist()]


# -- the trainer -------------------------------------------------------------

def _check(backbone, splits: Splits, cfg: SFTConfig) -> None:
    if not splits.train:
        raise DeepInterestError("no training examples: every user has fewer than 2 items")
    if cfg.alignment_weight and not hasattr(backbone, "alignment_loss"):
        raise DeepInterestError(f"alignment_weight={cfg.alignment_weight} but "
                                f"{type(backbone).__name__} has no alignment_loss; set it to 0")
    # The Protocol is the one list of what SFT calls; read it rather than repeat it here.
    declared = set(GenerativeBackbone.__annotations__) | {
        name for name, value in vars(GenerativeBackbone).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, classmethod))}
    missing = sorted(name for name in declared if not hasattr(backbone, name))
    if missing:
        raise DeepInterestError(f"{type(backbone).__name__} lacks {', '.join(missing)}; SFT "
                                "needs every member of backbones.base.GenerativeBackbone")


def _loss_model(backbone, cfg: SFTConfig, info: dd.DistInfo) -> torch.nn.Module:
    return dd.wrap(dd.LossForward(backbone, alignment_weight=cfg.alignment_weight), info)


def _task(model, backbone, catalog, data: TrainData, valid: list[Example], cfg: SFTConfig,
          info: dd.DistInfo, opt, sched, save_best, val: _Validation) -> Task:
    return Task(model=backbone, optimizer=opt, scheduler=sched, lengths=data.lengths,
                step=partial(_train_step, model, opt, sched, backbone, data, cfg=cfg, info=info),
                evaluate=partial(_evaluate, backbone, catalog, valid, val,
                                 SIDTrie.from_catalog(catalog), info),
                save_best=save_best, config=cfg, resume_free=_RESUME_FREE)


def _settings(cfg: SFTConfig, val: _Validation, restart_mismatched: bool) -> LoopSettings:
    return LoopSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                        eval_every=cfg.eval_every, patience=cfg.patience,
                        metric=f"ndcg@{max(val.ks)}",  # NDCG@10 with the default cut-offs
                        resume=cfg.resume, restart_mismatched=restart_mismatched)


def train_sft(backbone, catalog, splits: Splits, cfg: SFTConfig, out_dir: str | Path, *,
              progress: bool = True, evaluation: EvalConfig | None = None,
              provenance: dict[str, str] | None = None,
              restart_mismatched: bool = False) -> SFTResult:
    """Train, validate each epoch, keep the best checkpoint, test it once (module docstring).

    Validation and test rank with ``evaluation``'s beam and cut-offs (the
    defaults of :class:`~deepinterest.config.EvalConfig` when None) over the
    splits' history length. ``provenance`` (the dataset and SIDs fingerprints) is recorded in
    ``best/sft.json`` so a checkpoint can be checked against a run later.
    A ``last/`` that cannot be resumed exactly (other config or data, or an
    unreadable file) is an error, or with ``restart_mismatched`` a warning and
    a fresh start (the training stage, which owns and locks its folder).
    """
    started = time.perf_counter()
    _check(backbone, splits, cfg)
    set_threads(cfg.threads)
    info = dd.init_distributed()
    out = Path(out_dir)
    backbone.to(info.device)
    val = _Validation.of(evaluation, splits, cfg)
    data = TrainData.from_examples(splits.train, splits.max_history)
    steps = len(_global_batches(data, cfg, 1, info)) * cfg.epochs
    opt, sched = _optimizer(backbone, cfg, steps)
    model = _loss_model(backbone, cfg, info)
    save_best = partial(_save_best, out, backbone, cfg, info=info, provenance=provenance)
    task = _task(model, backbone, catalog, data, valid_subset(splits.valid, cfg), cfg, info,
                 opt, sched, save_best, val)
    # Epochs go through _run_epoch (task.step over the loop's batches), looked up when
    # called: the resume tests stop a run there.
    prog = run_epochs(task, _settings(cfg, val, restart_mismatched), out_dir=out, info=info,
                      progress=progress,
                      train=lambda epoch: _run_epoch(model, opt, sched, backbone, data, cfg,
                                                     epoch, info, progress))
    if not (out / BEST / SFT_FILE).is_file():  # no validation ran (epochs=0)
        _save_best(out, backbone, cfg, prog.epoch, {}, info, provenance)
    result = _finish(backbone, catalog, splits, cfg, out, info, prog, started, val)
    dd.cleanup(info)
    return result


def _finish(backbone, catalog, splits, cfg, out, info, prog: Progress, started,
            val) -> SFTResult:
    """Load the best checkpoint into ``backbone`` and evaluate it on test once."""
    best = type(backbone).load(out / BEST, catalog)
    backbone.load_state_dict(best.state_dict())
    test = _evaluate(backbone, catalog, splits.test, val, SIDTrie.from_catalog(catalog), info)
    valid_users = len(valid_subset(splits.valid, cfg))
    result = SFTResult(prog.best_epoch, prog.epoch, Metrics(valid_users, prog.best_valid), test,
                       prog.history, time.perf_counter() - started, out / BEST, prog.stopped,
                       resolve_precision(cfg.precision, info.device))
    write_test(out, SFT_FILE, RESULT_FILE, dict(test.values), result_dict(result), info)
    return result


def result_dict(result: SFTResult) -> dict[str, Any]:
    """JSON-ready summary of a run (``out_dir/sft_result.json``)."""
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early, "seconds": round(result.seconds, 3),
            "precision": result.precision,
            "valid": result.valid.values, "valid_users": result.valid.users,
            "test": result.test.values, "test_users": result.test.users,
            "best_dir": str(result.best_dir), "history": [record_dict(h) for h in result.history]}


def time_train_steps(backbone, splits: Splits, cfg: SFTConfig, steps: int) -> tuple[float, int]:
    """Seconds per training step over the first ``steps`` steps of epoch 1, and steps per epoch.

    Runs :func:`train_sft`'s own step (optimizer, LR schedule, gradient clipping,
    length-bucketed batches, loss) without validation or checkpoints, so a model
    size and an epoch budget can be chosen before a long run. ``backbone`` is
    trained by those steps.
    """
    _check(backbone, splits, cfg)
    set_threads(cfg.threads)
    info = dd.init_distributed()
    backbone.to(info.device)
    data = TrainData.from_examples(splits.train, splits.max_history)
    batches = _global_batches(data, cfg, 1, info)
    opt, sched = _optimizer(backbone, cfg, len(batches) * cfg.epochs)
    model = _loss_model(backbone, cfg, info)
    backbone.train()
    timed = batches[:steps]
    start = time.perf_counter()
    for rows in timed:  # _train_step reads the loss back, which waits for the device
        _train_step(model, opt, sched, backbone, data, dd.shard(rows, info), len(rows), cfg, info)
    seconds = time.perf_counter() - start
    dd.cleanup(info)
    return seconds / max(len(timed), 1), len(batches)
