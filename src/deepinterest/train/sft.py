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
  written atomically after each epoch. Because data order depends only on
  ``(seed, epoch)`` and the RNG states are restored, a run killed after
  epoch ``e`` and restarted with the same ``out_dir`` ends with the same
  weights as an uninterrupted run. A resume with a different config (other
  than ``resume``/``threads``) is refused, since it could not be exact.
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
import math
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import atomic_dir, atomic_write_text
from ..config import EvalConfig, SFTConfig
from ..backbones.base import GenerativeBackbone, pad_histories
from ..backbones.trie import SIDTrie
from ..data.splits import Example, Splits
from ..errors import DeepInterestError
from ..evaluate import Metrics, metrics_from_ranks
from . import distributed as dd
from .precision import resolve_precision
from .threads import set_threads
from .generative_eval import target_ranks

BEST, LAST = "best", "last"
STATE_FILE = "trainer.pt"
SFT_FILE = "sft.json"
RESULT_FILE = "sft_result.json"
_RESUME_FREE = ("resume", "threads")  # may change between a run and its resume


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    valid: dict[str, float] | None
    seconds: float
    train_seconds: float
    samples_per_second: float
    lr: float


@dataclass
class _Progress:
    """What ``last/`` remembers besides weights and optimizer."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    stopped: bool = False
    history: list[EpochRecord] = field(default_factory=list)


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


def epoch_batches(lengths: torch.Tensor, batch_size: int, *, seed: int,
                  epoch: int) -> list[torch.Tensor]:
    """Length-bucketed batches of example indices, in an order seeded by (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=gen)  # random order within a length
    order = perm[torch.sort(lengths[perm], stable=True).indices]
    chunks = list(order.split(batch_size))
    return [chunks[i] for i in torch.randperm(len(chunks), generator=gen).tolist()]


def _lr_lambda(cfg: SFTConfig, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return factor


def _optimizer(backbone: torch.nn.Module, cfg: SFTConfig, total_steps: int):
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total_steps))


# -- checkpoints -------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _comparable(cfg: SFTConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.model_dump().items() if k not in _RESUME_FREE}


def _save_last(out: Path, backbone, opt, sched, progress: _Progress, cfg: SFTConfig,
               n_train: int, info: dd.DistInfo) -> None:
    rngs = dd.all_gather(_rng_state(), info)  # every rank's dropout stream
    if info.main:
        payload = {"model": backbone.state_dict(), "optimizer": opt.state_dict(),
                   "scheduler": sched.state_dict(), "rng": rngs, "progress": asdict(progress),
                   "config": cfg.model_dump(), "n_train": n_train, "world": info.world}
        with atomic_dir(out / LAST) as tmp:
            torch.save(payload, tmp / STATE_FILE)
    dd.barrier(info)


def _load_last(out: Path, backbone, opt, sched, cfg: SFTConfig, n_train: int,
               info: dd.DistInfo, restart_mismatched: bool = False) -> _Progress | None:
    path = out / LAST / STATE_FILE
    if not (cfg.resume and path.is_file()):
        return None
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest.
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        same = _comparable(SFTConfig(**payload["config"])) == _comparable(cfg) and \
            payload["n_train"] == n_train
    except Exception as exc:  # a truncated or foreign file: unusable whatever the cause
        payload, same = None, False
        reason = f"cannot be read ({type(exc).__name__}: {exc})"
    else:
        reason = "was saved by a run with a different config or data"
    if not same:
        return _mismatched_last(out, path, reason, restart_mismatched, info)
    backbone.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    if payload["world"] == info.world:
        _set_rng_state(payload["rng"][info.rank])
    raw = payload["progress"]
    raw["history"] = [EpochRecord(**h) for h in raw["history"]]
    return _Progress(**raw)


def _mismatched_last(out: Path, path: Path, reason: str, restart: bool,
                     info: dd.DistInfo) -> None:
    """Start over (dropping ``last/`` and ``best/``) or refuse, as the caller chose."""
    if not restart:
        raise DeepInterestError(
            f"{path} {reason}; resuming it would not reproduce that run. Use a new output "
            "folder, or resume=false to start over.")
    warnings.warn(f"{path} {reason}; training starts over", stacklevel=3)
    dd.barrier(info)  # every rank has read it before rank 0 removes it
    if info.main:
        for name in (LAST, BEST):
            shutil.rmtree(out / name, ignore_errors=True)
    dd.barrier(info)
    return None


def _save_best(out: Path, backbone, cfg: SFTConfig, epoch: int, valid: dict[str, float],
               info: dd.DistInfo, provenance: dict[str, str] | None = None) -> None:
    if info.main:
        with atomic_dir(out / BEST) as tmp:
            backbone.save(tmp)
            meta = {"config": cfg.model_dump(), "epoch": epoch, "valid": valid,
                    "inputs": provenance or {}}
            (tmp / SFT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    dd.barrier(info)


# -- one epoch ---------------------------------------------------------------

def _global_batches(data: TrainData, cfg: SFTConfig, epoch: int,
                    info: dd.DistInfo) -> list[torch.Tensor]:
    batches = epoch_batches(data.lengths, cfg.batch_size * info.world, seed=cfg.seed, epoch=epoch)
    return [b for b in batches if len(b) >= info.world]  # every rank needs an example


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
               info: dd.DistInfo, progress: bool) -> tuple[float, float, int]:
    """Train one epoch; returns (mean loss, seconds, global samples)."""
    from tqdm.auto import tqdm

    backbone.train()
    start, total, count, seen = time.perf_counter(), 0.0, 0, 0
    batches = _global_batches(data, cfg, epoch, info)
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not (progress and info.main),
               mininterval=5.0, dynamic_ncols=True)
    for step, global_rows in enumerate(bar):
        rows = dd.shard(global_rows, info)
        loss = _train_step(model, opt, sched, backbone, data, rows, len(global_rows), cfg, info)
        total, count, seen = total + loss * len(rows), count + len(rows), seen + len(global_rows)
        if step % 20 == 0:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{total / count:.4f}", samples_s=f"{rate:.0f}", refresh=False)
    bar.close()
    total, count = dd.all_sum([total, float(count)], info)
    return total / max(count, 1.0), time.perf_counter() - start, seen


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


def _after_eval(prog: _Progress, valid: Metrics, epoch: int, cfg: SFTConfig,
                val: _Validation) -> bool:
    """Update best-so-far and patience; True when ``epoch`` is the new best."""
    score = valid.values[f"ndcg@{max(val.ks)}"]  # NDCG@10 with the default cut-offs
    if score > prog.best_score:
        prog.best_score, prog.best_epoch, prog.best_valid = score, epoch, dict(valid.values)
        prog.bad_evals = 0
        return True
    prog.bad_evals += 1
    prog.stopped = cfg.patience is not None and prog.bad_evals >= cfg.patience
    return False


def _train_loop(backbone, catalog, data, valid, cfg, out, info, progress, prog, opt, sched,
                provenance, val):
    model = dd.wrap(dd.LossForward(backbone, alignment_weight=cfg.alignment_weight), info)
    trie = SIDTrie.from_catalog(catalog)
    while prog.epoch < cfg.epochs and not prog.stopped:
        epoch, started = prog.epoch + 1, time.perf_counter()
        loss, train_s, seen = _run_epoch(model, opt, sched, backbone, data, cfg, epoch, info,
                                         progress)
        metrics = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            metrics = _evaluate(backbone, catalog, valid, val, trie, info)
            if _after_eval(prog, metrics, epoch, cfg, val):
                _save_best(out, backbone, cfg, epoch, dict(metrics.values), info, provenance)
        record = EpochRecord(epoch, loss, dict(metrics.values) if metrics else None,
                             time.perf_counter() - started, train_s, seen / max(train_s, 1e-9),
                             sched.get_last_lr()[0])
        prog.history.append(record)
        prog.epoch = epoch
        _save_last(out, backbone, opt, sched, prog, cfg, len(data), info)
        if progress and info.main:
            print(_epoch_line(record, prog), flush=True)


def _epoch_line(r: EpochRecord, prog: _Progress) -> str:
    valid = " ".join(f"{k} {v:.4f}" for k, v in (r.valid or {}).items())
    return (f"epoch {r.epoch}: loss {r.loss:.4f}, {r.seconds:.0f} s "
            f"({r.samples_per_second:.0f} samples/s), valid {valid or '-'}, "
            f"best epoch {prog.best_epoch}")


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
    prog = _load_last(out, backbone, opt, sched, cfg, len(data), info, restart_mismatched)
    if prog is None:
        prog = _Progress()
        torch.manual_seed(cfg.seed + info.rank)  # dropout stream, per rank
    _train_loop(backbone, catalog, data, valid_subset(splits.valid, cfg), cfg, out, info,
                progress, prog, opt, sched, provenance, val)
    if not (out / BEST / SFT_FILE).is_file():  # no validation ran (epochs=0)
        _save_best(out, backbone, cfg, prog.epoch, {}, info, provenance)
    result = _finish(backbone, catalog, splits, cfg, out, info, prog, started, val)
    dd.cleanup(info)
    return result


def _finish(backbone, catalog, splits, cfg, out, info, prog, started, val) -> SFTResult:
    """Load the best checkpoint into ``backbone`` and evaluate it on test once."""
    best = type(backbone).load(out / BEST, catalog)
    backbone.load_state_dict(best.state_dict())
    test = _evaluate(backbone, catalog, splits.test, val, SIDTrie.from_catalog(catalog), info)
    valid_users = len(valid_subset(splits.valid, cfg))
    result = SFTResult(prog.best_epoch, prog.epoch, Metrics(valid_users, prog.best_valid), test,
                       prog.history, time.perf_counter() - started, out / BEST, prog.stopped,
                       resolve_precision(cfg.precision, info.device))
    if info.main:
        meta = json.loads((out / BEST / SFT_FILE).read_text(encoding="utf-8"))
        meta["test"] = dict(test.values)
        atomic_write_text(out / BEST / SFT_FILE, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(out / RESULT_FILE, json.dumps(result_dict(result), indent=2) + "\n")
    dd.barrier(info)
    return result


def result_dict(result: SFTResult) -> dict[str, Any]:
    """JSON-ready summary of a run (``out_dir/sft_result.json``)."""
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early, "seconds": round(result.seconds, 3),
            "precision": result.precision,
            "valid": result.valid.values, "valid_users": result.valid.users,
            "test": result.test.values, "test_users": result.test.users,
            "best_dir": str(result.best_dir), "history": [asdict(h) for h in result.history]}


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
    model = dd.wrap(dd.LossForward(backbone, alignment_weight=cfg.alignment_weight), info)
    backbone.train()
    timed = batches[:steps]
    start = time.perf_counter()
    for rows in timed:  # _train_step reads the loss back, which waits for the device
        _train_step(model, opt, sched, backbone, data, dd.shard(rows, info), len(rows), cfg, info)
    seconds = time.perf_counter() - start
    dd.cleanup(info)
    return seconds / max(len(timed), 1), len(batches)
