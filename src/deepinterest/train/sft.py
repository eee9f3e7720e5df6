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
  (other than ``resume``/``threads``/``patience``) is refused, since it could not
  be exact; a larger ``patience`` continues a run that stopped early.
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

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..config import EvalConfig, SFTConfig
from ..backbones.base import GenerativeBackbone, pad_histories
from ..data.splits import Example, Splits
from ..errors import DeepInterestError
from . import distributed as dd
from .loop import (BEST, LAST, STATE_FILE, EpochRecord, EpochStats, epoch_batches,
                   global_batches, run_epochs, train_epoch)
from .precision import resolve_precision
from .threads import set_threads
from .trainer import TrainResult, make_optimizer, open_run, result_dict, valid_subset

# The checkpoint names and the epoch helpers live in .loop; they stay importable from here.
__all__ = ["BEST", "LAST", "STATE_FILE", "SFT_FILE", "RESULT_FILE", "EpochRecord", "SFTConfig",
           "SFTResult", "TrainData", "epoch_batches", "result_dict", "time_train_steps",
           "train_sft", "valid_subset"]

SFT_FILE = "sft.json"
RESULT_FILE = "sft_result.json"
# May change between a run and its resume (patience: a run it stopped early goes on).
_RESUME_FREE = ("resume", "threads", "patience")


@dataclass(frozen=True)
class SFTResult(TrainResult):
    """One SFT run (:class:`~.trainer.TrainResult`'s fields)."""


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


# -- checkpoints and one epoch ----------------------------------------------

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
    _check(backbone, splits, cfg)
    run = open_run(backbone, catalog, splits, cfg, out_dir, SFT_FILE, evaluation=evaluation,
                   provenance=provenance)
    info = run.info
    data = TrainData.from_examples(splits.train, splits.max_history)
    steps = len(_global_batches(data, cfg, 1, info)) * cfg.epochs
    opt, sched = make_optimizer(backbone, cfg, steps)
    model = _loss_model(backbone, cfg, info)
    task = run.task(optimizer=opt, scheduler=sched, lengths=data.lengths,
                    step=partial(_train_step, model, opt, sched, backbone, data, cfg=cfg,
                                 info=info), resume_free=_RESUME_FREE)
    # Epochs go through _run_epoch (task.step over the loop's batches), looked up when
    # called: the resume tests stop a run there.
    prog = run_epochs(task, run.settings(restart_mismatched), out_dir=run.out, info=info,
                      progress=progress,
                      train=lambda epoch: _run_epoch(model, opt, sched, backbone, data, cfg,
                                                     epoch, info, progress))
    return run.finish(prog, SFTResult, RESULT_FILE)


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
    opt, sched = make_optimizer(backbone, cfg, len(batches) * cfg.epochs)
    model = _loss_model(backbone, cfg, info)
    backbone.train()
    timed = batches[:steps]
    start = time.perf_counter()
    for rows in timed:  # _train_step reads the loss back, which waits for the device
        _train_step(model, opt, sched, backbone, data, dd.shard(rows, info), len(rows), cfg, info)
    seconds = time.perf_counter() - start
    dd.cleanup(info)
    return seconds / max(len(timed), 1), len(batches)
