"""The epoch loop every trainer runs on: SFT, GRPO and the SASRec baseline.

A trainer describes what is its own in a :class:`Task` (the model, optimizer
and scheduler whose states are checkpointed, one optimisation step, one
validation, how to keep the best model) and the schedule in
:class:`LoopSettings`; :func:`run_epochs` does the rest. For each epoch
``e = 1 .. epochs`` it:

1. trains: the example indices are cut into length-bucketed *global* batches
   of ``batch_size x world`` (:func:`global_batches`), each rank takes its
   slice (:func:`~.distributed.shard`) and calls ``task.step(rows, n_global)``
   once per batch; the step does the forward, backward and optimizer work and
   returns the loss (a float: weighted by its rows) or a :class:`Step`
   (loss, weight and extra scalars to log);
2. validates (``task.evaluate()``, on every rank) when ``e % eval_every == 0``,
   at the last epoch and at the epoch that ends past ``deadline`` (the run's
   last); a value of ``metric`` above every earlier one calls
   ``task.save_best(e, values)``, and ``patience`` validations in a row
   without one stop the run;
3. appends an :class:`EpochRecord` (mean loss, the weighted means of the
   step's scalars, validation values, seconds, samples/s, learning rate);
4. writes ``out_dir/last/`` atomically, then prints the epoch line.

Guarantees (what makes resume exact):

- **Batch order depends only on** ``(seed, epoch)`` (:func:`epoch_batches`),
  never on what ran before, so a resumed run sees the same batches.
- **A fresh run seeds** torch's, Python's and NumPy's global generators
  with ``seed + rank`` (dropout differs between ranks but is reproducible).
- **last/** (``trainer.pt``) holds the model, optimizer and scheduler states,
  every rank's torch/CUDA/Python/NumPy RNG states, the :class:`Progress`
  (epoch, history, best-so-far, patience count), ``task.config`` and the
  number of examples. Restarting with the same ``out_dir`` and ``resume``
  continues after the last finished epoch and ends with the same weights and
  history (timings aside) as an uninterrupted run. A ``last/`` from another config (fields
  outside ``task.resume_free``), other data or that cannot be read is
  refused, or with ``restart_mismatched`` dropped with ``best/`` (a warning)
  and the run starts over. RNG states are restored only at the same world
  size.
- Only rank 0 writes; a barrier follows every write, so every rank sees it.

A trainer that needs more around each epoch passes ``train(epoch)`` to
:func:`run_epochs` and calls :func:`train_epoch` itself (SFT does, so its
tests can stop a run between epochs); ``save_best`` writes through
:func:`write_folder` to get the same atomic, rank-0 write as ``last/``.

What a task must guarantee in return: everything a later epoch depends on
lives in the model, optimizer, scheduler or the global RNGs (a private
``torch.Generator`` must be re-seeded from ``(seed, epoch)``, since it is not
saved), and ``evaluate`` returns the same metrics on every rank.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from ..artifacts import atomic_dir, atomic_write_text
from ..errors import DeepInterestError
from ..eval.metrics import Metrics
from . import distributed as dd

BEST, LAST = "best", "last"
STATE_FILE = "trainer.pt"


@dataclass(frozen=True)
class Step:
    """What one optimisation step reports."""

    loss: float
    weight: float = 1.0  # how much this step counts in the epoch means (rows, positions)
    scalars: dict[str, float] = field(default_factory=dict)  # averaged like the loss


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    valid: dict[str, float] | None
    seconds: float
    train_seconds: float
    samples_per_second: float
    lr: float
    scalars: dict[str, float] = field(default_factory=dict)  # the steps' extras, averaged


@dataclass
class Progress:
    """What ``last/`` remembers besides weights and optimizer."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    stopped: bool = False  # early-stopped on patience
    history: list[EpochRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Progress:
        return cls(**{**raw, "history": [EpochRecord(**h) for h in raw["history"]]})


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training, summed over ranks."""

    loss: float
    seconds: float
    samples: int  # global examples seen
    scalars: dict[str, float] = field(default_factory=dict)


def epoch_line(r: EpochRecord, prog: Progress) -> str:
    """The default line printed after each epoch."""
    valid = " ".join(f"{k} {v:.4f}" for k, v in (r.valid or {}).items())
    extra = "".join(f", {k} {v:.4f}" for k, v in r.scalars.items())
    return (f"epoch {r.epoch}: loss {r.loss:.4f}{extra}, {r.seconds:.0f} s "
            f"({r.samples_per_second:.0f} samples/s), valid {valid or '-'}, "
            f"best epoch {prog.best_epoch}")


@dataclass
class Task:
    """The trainer's own parts; see the module docstring for when each is called."""

    model: torch.nn.Module  # whose state_dict last/ keeps (not a DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: Any  # an LR scheduler, or None
    lengths: torch.Tensor  # [N] per example: the bucketing key
    step: Callable[[torch.Tensor, int], Step | float]  # (this rank's rows, global batch size)
    evaluate: Callable[[], Metrics]
    save_best: Callable[[int, dict[str, float]], None]  # (epoch, validation values)
    config: BaseModel  # saved in last/ and compared on resume
    resume_free: tuple[str, ...] = ()  # config fields a resume may change
    epoch_line: Callable[[EpochRecord, Progress], str] = epoch_line


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int  # per process
    seed: int
    eval_every: int = 1
    patience: int | None = None  # validations without a new best; None = never stop early
    metric: str = "ndcg@10"  # higher is better
    bucket: bool = True  # False: plain shuffled batches
    deadline: float | None = None  # a time.perf_counter() value: stop after the epoch past it
    resume: bool = True
    restart_mismatched: bool = False
    # Validation of the model before any training: with it, epoch 0 competes for best, so
    # a run that only makes the model worse keeps the model it was given.
    start: dict[str, float] | None = None


# -- batches -----------------------------------------------------------------

def bucket_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator, *,
                   bucket: bool = True) -> list[torch.Tensor]:
    """Batches of example indices, each index once, in ``generator``'s random order.

    Bucketed: sorted by length (a shuffle first, so equal lengths mix), cut,
    and the batches shuffled; each batch then pads only to its own longest.
    """
    perm = torch.randperm(len(lengths), generator=generator)  # random order within a length
    if not bucket:
        return list(perm.split(batch_size))
    order = perm[torch.sort(lengths[perm], stable=True).indices]
    chunks = list(order.split(batch_size))
    return [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]


def epoch_batches(lengths: torch.Tensor, batch_size: int, *, seed: int, epoch: int,
                  bucket: bool = True) -> list[torch.Tensor]:
    """Length-bucketed batches of example indices, in an order seeded by (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return bucket_batches(lengths, batch_size, gen, bucket=bucket)


def global_batches(lengths: torch.Tensor, batch_size: int, *, seed: int, epoch: int,
                   info: dd.DistInfo, bucket: bool = True) -> list[torch.Tensor]:
    """The epoch's global batches (``batch_size`` per rank), each with a row for every rank."""
    batches = epoch_batches(lengths, batch_size * info.world, seed=seed, epoch=epoch,
                            bucket=bucket)
    return [b for b in batches if len(b) >= info.world]


# -- one epoch ---------------------------------------------------------------

def train_epoch(step: Callable[[torch.Tensor, int], Step | float], batches: list[torch.Tensor],
                *, epoch: int, info: dd.DistInfo, progress: bool) -> EpochStats:
    """``step`` on this rank's slice of each global batch, with a progress bar."""
    from ..progress import bar as tqdm

    start, seen = time.perf_counter(), 0
    sums: dict[str, list[float]] = {}  # name -> [weighted sum, weight]; "" is the loss
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not (progress and info.main),
               mininterval=5.0, dynamic_ncols=True)
    for i, global_rows in enumerate(bar):
        rows = dd.shard(global_rows, info)
        out = step(rows, len(global_rows))
        if not isinstance(out, Step):
            out = Step(float(out), float(len(rows)))
        for name, value in {"": out.loss, **out.scalars}.items():
            total = sums.setdefault(name, [0.0, 0.0])
            total[0] += value * out.weight
            total[1] += out.weight
        seen += len(global_rows)
        if i % 20 == 0:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            loss = sums[""][0] / max(sums[""][1], 1e-12)
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}", refresh=False)
    bar.close()
    means = _rank_means(sums, info)
    return EpochStats(means.pop("", 0.0), time.perf_counter() - start, seen, means)


def _rank_means(sums: dict[str, list[float]], info: dd.DistInfo) -> dict[str, float]:
    """Weighted means over every rank; a rank may lack a scalar another has."""
    sums.setdefault("", [0.0, 0.0])
    names = sorted(set().union(*dd.all_gather(sorted(sums), info)))
    flat = dd.all_sum([x for n in names for x in sums.get(n, [0.0, 0.0])], info)
    return {n: flat[2 * i] / max(flat[2 * i + 1], 1.0 if n == "" else 1e-12)
            for i, n in enumerate(names)}


# -- checkpoints -------------------------------------------------------------

def write_folder(path: Path, info: dd.DistInfo, write: Callable[[Path], None]) -> None:
    """Rank 0 fills a temporary folder that replaces ``path`` whole; every rank waits."""
    if info.main:
        with atomic_dir(path) as tmp:
            write(tmp)
    dd.barrier(info)


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


def _seed_rngs(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy takes no negative seed


def _comparable(task: Task, config: dict[str, Any]) -> dict[str, Any]:
    # Through the config class, so a file from before a new field was added still compares.
    dumped = type(task.config)(**config).model_dump()
    return {k: v for k, v in dumped.items() if k not in task.resume_free}


def _save_last(out: Path, task: Task, prog: Progress, info: dd.DistInfo) -> None:
    rngs = dd.all_gather(_rng_state(), info)  # every rank's dropout stream
    sched = task.scheduler.state_dict() if task.scheduler is not None else None
    payload = {"model": task.model.state_dict(), "optimizer": task.optimizer.state_dict(),
               "scheduler": sched, "rng": rngs, "progress": asdict(prog),
               "config": task.config.model_dump(), "n_train": len(task.lengths),
               "world": info.world}
    write_folder(out / LAST, info, lambda tmp: torch.save(payload, tmp / STATE_FILE))


def _load_last(out: Path, task: Task, settings: LoopSettings,
               info: dd.DistInfo) -> Progress | None:
    path = out / LAST / STATE_FILE
    if not (settings.resume and path.is_file()):
        return None
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest.
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        same = _comparable(task, payload["config"]) == _comparable(
            task, task.config.model_dump()) and payload["n_train"] == len(task.lengths)
    except Exception as exc:  # a truncated or foreign file: unusable whatever the cause
        payload, same = None, False
        reason = f"cannot be read ({type(exc).__name__}: {exc})"
    else:
        reason = "was saved by a run with a different config or data"
    if not same:
        return _mismatched_last(out, path, reason, settings.restart_mismatched, info)
    task.model.load_state_dict(payload["model"])
    task.optimizer.load_state_dict(payload["optimizer"])
    if task.scheduler is not None:
        task.scheduler.load_state_dict(payload["scheduler"])
    if payload["world"] == info.world:
        _set_rng_state(payload["rng"][info.rank])
    prog = Progress.from_dict(payload["progress"])
    # Patience only decides when to stop, so a run it stopped continues under a larger one
    # exactly as if it had never stopped (the trainers' configs list it as resume-free).
    prog.stopped = settings.patience is not None and prog.bad_evals >= settings.patience
    return prog


def _mismatched_last(out: Path, path: Path, reason: str, restart: bool,
                     info: dd.DistInfo) -> None:
    """Start over (dropping ``last/`` and ``best/``) or refuse, as the caller chose."""
    if not restart:
        raise DeepInterestError(
            f"{path} {reason}; resuming it would not reproduce that run. Use a new output "
            "folder, or resume=false to start over.")
    warnings.warn(f"{path} {reason}; training starts over", stacklevel=4)
    dd.barrier(info)  # every rank has read it before rank 0 removes it
    if info.main:
        for name in (LAST, BEST):
            shutil.rmtree(out / name, ignore_errors=True)
    dd.barrier(info)
    return None


# -- the loop ----------------------------------------------------------------

def run_epochs(task: Task, settings: LoopSettings, *, out_dir: str | Path | None,
               info: dd.DistInfo, progress: bool = True,
               train: Callable[[int], EpochStats] | None = None) -> Progress:
    """Epochs until ``settings.epochs``, early stopping or the deadline (module docstring).

    ``out_dir`` None keeps no ``last/`` (no resume). ``train(epoch)`` trains one
    epoch; by default :func:`train_epoch` of ``task.step`` over
    :func:`global_batches`. Returns the final :class:`Progress`.
    """
    out = Path(out_dir) if out_dir is not None else None
    prog = _load_last(out, task, settings, info) if out is not None else None
    if prog is None:
        prog = Progress()
        _seed_rngs(settings.seed + info.rank)  # dropout (and any sampling) stream, per rank
        if settings.start is not None and _after_eval(prog, dict(settings.start), 0, settings):
            task.save_best(0, dict(settings.start))
    train = train or (lambda epoch: train_epoch(
        task.step, global_batches(task.lengths, settings.batch_size, seed=settings.seed,
                                  epoch=epoch, info=info, bucket=settings.bucket),
        epoch=epoch, info=info, progress=progress))
    while prog.epoch < settings.epochs and not prog.stopped:
        if _one_epoch(task, settings, prog, train, out, info, progress):
            break
    return prog


def _one_epoch(task: Task, settings: LoopSettings, prog: Progress,
               train: Callable[[int], EpochStats], out: Path | None, info: dd.DistInfo,
               progress: bool) -> bool:
    """Train, validate when due, record and checkpoint epoch ``prog.epoch + 1``.

    Returns True when the deadline has passed.
    """
    epoch, started = prog.epoch + 1, time.perf_counter()
    task.model.train()
    stats = train(epoch)
    late = settings.deadline is not None and time.perf_counter() > settings.deadline
    valid = None
    # The last epoch is always validated, so a best exists whenever the loop ends.
    if epoch % settings.eval_every == 0 or epoch == settings.epochs or late:
        valid = dict(task.evaluate().values)
        if _after_eval(prog, valid, epoch, settings):
            task.save_best(epoch, valid)
    prog.history.append(_record(task, epoch, stats, valid, started))
    prog.epoch = epoch
    if out is not None:
        _save_last(out, task, prog, info)
    if progress and info.main:
        print(task.epoch_line(prog.history[-1], prog), flush=True)
    return late


def _after_eval(prog: Progress, valid: dict[str, float], epoch: int,
                settings: LoopSettings) -> bool:
    """Update best-so-far and patience; True when ``epoch`` is the new best."""
    score = valid[settings.metric]
    if score > prog.best_score:
        prog.best_score, prog.best_epoch, prog.best_valid = score, epoch, dict(valid)
        prog.bad_evals = 0
        return True
    prog.bad_evals += 1
    prog.stopped = settings.patience is not None and prog.bad_evals >= settings.patience
    return False


def _record(task: Task, epoch: int, stats: EpochStats, valid: dict[str, float] | None,
            started: float) -> EpochRecord:
    lr = (task.scheduler.get_last_lr()[0] if task.scheduler is not None
          else task.optimizer.param_groups[0]["lr"])
    return EpochRecord(epoch, stats.loss, valid, time.perf_counter() - started, stats.seconds,
                       stats.samples / max(stats.seconds, 1e-9), lr, dict(stats.scalars))


def record_dict(record: EpochRecord) -> dict[str, Any]:
    """JSON-ready record; ``scalars`` only when the steps reported any (SFT's never do)."""
    raw = asdict(record)
    if not raw["scalars"]:
        del raw["scalars"]
    return raw


def lr_schedule(cfg: Any, total_steps: int) -> Callable[[int], float]:
    """``LambdaLR`` factor of a trainer config (``warmup_steps``, ``schedule``): linear
    warm-up, then constant or a cosine decay to 0 at ``total_steps``."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return factor


def write_test(out: Path, meta_file: str, result_file: str, test: dict[str, float],
               summary: dict[str, Any], info: dd.DistInfo) -> None:
    """After a trainer's final test: add ``test`` to ``best/<meta_file>`` and write the run's
    ``summary`` as ``<result_file>`` (rank 0, atomically; every rank waits)."""
    if info.main:
        meta_path = out / BEST / meta_file
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["test"] = test
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(out / result_file, json.dumps(summary, indent=2) + "\n")
    dd.barrier(info)
