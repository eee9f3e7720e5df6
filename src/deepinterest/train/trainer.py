"""What SFT and GRPO share: one run's parts, validation, checkpoints, and the finish.

A trainer (:mod:`.sft`, :mod:`.grpo`) is the same skeleton with a different
step: open a :class:`Run` (threads, process group, device, validation
settings), build its optimizer and :class:`~.loop.Task` with
:meth:`Run.task`, go through :func:`~.loop.run_epochs`, then
:meth:`Run.finish` (the best checkpoint is loaded and tested once, the
result written). Only what differs lives in the trainers: the step, the
data it needs, the checks of the backbone, and GRPO's validation of the
model it starts from.

The result types share their fields (:class:`TrainResult`); ``best/`` holds
``backbone.save`` plus one JSON file (``sft.json``, ``rl.json``) with the
config, epoch, validation values, the provenance, and after the finish the
test values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones.trie import SIDTrie
from ..config import EvalConfig, TrainerConfig
from ..data.splits import Example, Splits
from ..eval.metrics import Metrics, metrics_from_ranks
from . import distributed as dd
from ..eval.generative import target_ranks
from .loop import BEST, EpochRecord, LoopSettings, Progress, Task, lr_schedule, record_dict
from .loop import write_folder, write_test
from .precision import resolve_precision
from .threads import set_threads


@dataclass(frozen=True)
class TrainResult:
    """One training run: the best epoch's validation, its test (every test user), history."""

    best_epoch: int
    epochs_run: int
    valid: Metrics  # at the best epoch (on the eval_users subset when set)
    test: Metrics  # best checkpoint, every test user
    history: list[EpochRecord]
    seconds: float
    best_dir: Path
    stopped_early: bool
    precision: str = "fp32"  # of the training forward, "auto" resolved


def result_dict(result: TrainResult) -> dict[str, Any]:
    """JSON-ready summary of a run (``out_dir/sft_result.json`` or ``rl_result.json``)."""
    own = {f.name: getattr(result, f.name) for f in fields(result)
           if f.name not in {f.name for f in fields(TrainResult)}}
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early, "seconds": round(result.seconds, 3),
            "precision": result.precision,
            **{k: v.values if isinstance(v, Metrics) else v for k, v in own.items()},
            "valid": result.valid.values, "valid_users": result.valid.users,
            "test": result.test.values, "test_users": result.test.users,
            "best_dir": str(result.best_dir), "history": [record_dict(h) for h in result.history]}


# -- validation ----------------------------------------------------------------

@dataclass(frozen=True)
class Validation:
    """How checkpoints are scored: the run's evaluation settings (``EvalConfig``) and
    history length (the splits'), so validation ranks exactly as ``di eval`` will."""

    beam: int
    ks: tuple[int, ...]
    max_history: int
    batch_size: int

    @classmethod
    def of(cls, evaluation: EvalConfig | None, splits: Splits, cfg: TrainerConfig) -> Validation:
        evaluation = evaluation or EvalConfig()
        return cls(evaluation.beam, tuple(evaluation.ks), splits.max_history,
                   cfg.eval_batch_size)

    @property
    def metric(self) -> str:
        return f"ndcg@{max(self.ks)}"  # NDCG@10 with the default cut-offs


def evaluate_examples(backbone, catalog, examples: list[Example], val: Validation,
                      trie: SIDTrie, info: dd.DistInfo) -> Metrics:
    """Metrics over ``examples``, each rank ranking ``rank::world`` of them."""
    mine = examples[info.rank::info.world]
    ranks = target_ranks(backbone, catalog, mine, beam=val.beam, topk=max(val.ks),
                         batch_size=val.batch_size, max_history=val.max_history, trie=trie)
    every = dd.all_gather(ranks, info)
    merged = np.empty(len(examples), dtype=np.int64)
    for rank, part in enumerate(every):
        merged[rank::info.world] = part
    return metrics_from_ranks(merged, ks=val.ks)


def valid_subset(examples: list[Example], cfg: TrainerConfig) -> list[Example]:
    """The fixed, seeded validation subset (all examples when ``eval_users`` is None)."""
    if cfg.eval_users is None or cfg.eval_users >= len(examples):
        return list(examples)
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = torch.randperm(len(examples), generator=gen)[:cfg.eval_users].sort().values
    return [examples[i] for i in keep.tolist()]


def make_optimizer(backbone: torch.nn.Module, cfg: TrainerConfig, total_steps: int):
    """AdamW over the trainable parameters and the config's LR schedule."""
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg, total_steps))


# -- one run ---------------------------------------------------------------------

@dataclass
class Run:
    """One training run's fixed parts, opened by :func:`open_run`."""

    backbone: Any
    catalog: Any
    splits: Splits
    cfg: TrainerConfig
    out: Path
    meta_file: str  # best/<meta_file>: sft.json or rl.json
    info: dd.DistInfo
    val: Validation
    trie: SIDTrie
    provenance: dict[str, str] | None = None
    started: float = field(default_factory=time.perf_counter)

    @cached_property
    def valid(self) -> list[Example]:
        """The validation examples each epoch ranks (the seeded subset, drawn once)."""
        return valid_subset(self.splits.valid, self.cfg)

    def evaluate(self, examples: list[Example]) -> Metrics:
        return evaluate_examples(self.backbone, self.catalog, examples, self.val, self.trie,
                                 self.info)

    def save_best(self, epoch: int, valid: dict[str, float]) -> None:
        """``best/``: the backbone and ``<meta_file>`` (config, epoch, validation, inputs)."""
        def write(tmp: Path) -> None:
            self.backbone.save(tmp)
            meta = {"config": self.cfg.model_dump(mode="json"), "epoch": epoch,
                    "valid": valid, "inputs": self.provenance or {}}
            (tmp / self.meta_file).write_text(json.dumps(meta, indent=2) + "\n",
                                              encoding="utf-8")
        write_folder(self.out / BEST, self.info, write)

    def task(self, *, optimizer, scheduler, lengths: torch.Tensor,
             step: Callable, resume_free: tuple[str, ...]) -> Task:
        """The loop's view of this run: the trainer's step, validation on the subset."""
        return Task(model=self.backbone, optimizer=optimizer, scheduler=scheduler,
                    lengths=lengths, step=step, evaluate=partial(self.evaluate, self.valid),
                    save_best=self.save_best, config=self.cfg, resume_free=resume_free)

    def settings(self, restart_mismatched: bool,
                 start: dict[str, float] | None = None) -> LoopSettings:
        cfg = self.cfg
        return LoopSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                            eval_every=cfg.eval_every, patience=cfg.patience,
                            metric=self.val.metric, resume=cfg.resume,
                            restart_mismatched=restart_mismatched, start=start)

    def finish(self, prog: Progress, result_type: type[TrainResult], result_file: str, *,
               start: Metrics | None = None, **extra: Any) -> TrainResult:
        """Test the best checkpoint once, write the result, and leave the process group.

        With no validation run (``epochs = 0``) the model as it is becomes ``best/``,
        with ``start``'s values when the trainer validated it before training.
        """
        if not (self.out / BEST / self.meta_file).is_file():
            self.save_best(prog.epoch, dict(start.values) if start is not None else {})
        best = type(self.backbone).load(self.out / BEST, self.catalog)
        self.backbone.load_state_dict(best.state_dict())
        test = self.evaluate(self.splits.test)
        users = start.users if start is not None else len(self.valid)
        best_valid = prog.best_valid or (dict(start.values) if start is not None else {})
        result = result_type(
            best_epoch=prog.best_epoch, epochs_run=prog.epoch, valid=Metrics(users, best_valid),
            test=test, history=prog.history, seconds=time.perf_counter() - self.started,
            best_dir=self.out / BEST, stopped_early=prog.stopped,
            precision=resolve_precision(self.cfg.precision, self.info.device), **extra)
        write_test(self.out, self.meta_file, result_file, dict(test.values),
                   result_dict(result), self.info)
        dd.cleanup(self.info)
        return result


def open_run(backbone, catalog, splits: Splits, cfg: TrainerConfig, out_dir: str | Path,
             meta_file: str, *, evaluation: EvalConfig | None = None,
             provenance: dict[str, str] | None = None) -> Run:
    """Threads, the process group and the device for one run; the backbone moves there."""
    started = time.perf_counter()
    set_threads(cfg.threads)
    info = dd.init_distributed()
    backbone.to(info.device)
    return Run(backbone, catalog, splits, cfg, Path(out_dir), meta_file, info,
               Validation.of(evaluation, splits, cfg), SIDTrie.from_catalog(catalog),
               provenance, started)


__all__ = ["Run", "TrainResult", "Validation", "evaluate_examples", "make_optimizer",
           "open_run", "result_dict", "valid_subset"]
