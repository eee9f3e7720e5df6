"""Train and evaluate the SASRec baseline (protocol: docs/data.md; results: docs/results.md).

Data: each user's training sequence is ``items[:-2]`` (the validation and test
targets are held out; users with fewer than 3 items, who have no validation
or test example, train on all of theirs), cut to its ``max_len + 1`` most
recent items. Inputs are the sequence without its last item, labels the
sequence shifted by one, and every position is supervised with full-softmax
cross-entropy over all items: one sequence carries all the training prefixes
of :func:`~deepinterest.data.leave_one_out` that fit in the window.

Design decisions:

- Length bucketing: sequences are sorted by length (after a seeded shuffle,
  so ties land in different batches each epoch), cut into batches, and the
  batches are shuffled; a batch is padded only to its own longest sequence.
  On Beauty (mean length 8.9) an epoch took 34 s bucketed against 145 s
  padded to ``max_len`` on 2 CPU cores.
- Evaluation follows the protocol of docs/data.md: the model scores
  the position after the last history item against every item, history
  items are not removed, ties count against the target. Ranks are computed
  batch by batch with the same functions as
  :func:`~deepinterest.eval.metrics.evaluate_scores`, so the full
  [users, items] score matrix (1 GB on Beauty) is never held.
- Epochs, batch order, validation and early stopping are the shared loop's
  (:mod:`.loop`): validation NDCG@10 every ``eval_every`` epochs and at the
  last one, ``patience`` counted in checks, the best state kept in memory and
  test metrics computed once, with it. No ``last/`` is kept (a run is minutes).
- Determinism on CPU: ``torch.manual_seed(seed)`` before building the model
  (initial weights), then the loop's ``seed``-seeded dropout stream and batch
  order seeded by ``(seed, epoch)``.

Departures from the paper: cross-entropy instead of sampled BCE (see
:mod:`deepinterest.backbones.sasrec`), and full ranking instead of 100
sampled negatives at evaluation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import StageResult, atomic_write_text
from ..backbones.base import pad_histories
from ..backbones.sasrec import SASRec
from ..data import Dataset, Example, leave_one_out
from ..errors import DeepInterestError
from ..eval.lists import Companion, Recommendations
from ..eval.metrics import DEFAULT_KS, Metrics, metrics_from_ranks, ranks_from_scores
from .distributed import DistInfo
from .loop import EpochRecord, LoopSettings, Progress, Step, Task, bucket_batches, run_epochs
from .sasrec_config import HybridConfig, SASRecConfig

MAX_HISTORY = 20  # evaluation protocol (docs/data.md)
SASREC_STAGE = "sasrec"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    valid_ndcg10: float | None  # None when the epoch was not evaluated
    seconds: float  # training and evaluation


@dataclass
class SASRecResult:
    model: SASRec  # holds the best state
    config: SASRecConfig
    best_epoch: int
    valid: Metrics  # at the best epoch
    test: Metrics  # once, with the best state
    history: list[EpochLog]
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# --- data ----------------------------------------------------------------------------------


def training_sequences(dataset: Dataset, max_len: int) -> list[tuple[int, ...]]:
    """Each user's training part (``items[:-2]``), the ``max_len + 1`` most recent items."""
    out = []
    for user in dataset.users:
        seq = user.items[:-2] if len(user.items) >= 3 else user.items
        seq = seq[-(max_len + 1):]
        if len(seq) >= 2:  # one input and one label at least
            out.append(seq)
    return out


def make_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                 *, bucket: bool = True) -> list[list[int]]:
    """Batches of sequence indices, each index exactly once, in a seeded random order."""
    batches = bucket_batches(torch.tensor(lengths, dtype=torch.long), batch_size, generator,
                             bucket=bucket)
    return [b.tolist() for b in batches]


def collate(seqs: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-aligned inputs and next-item labels [B, longest - 1], -1 padded."""
    width = max(len(s) for s in seqs) - 1
    inputs = pad_histories([s[:-1] for s in seqs], width)
    labels = pad_histories([s[1:] for s in seqs], width)
    return inputs, labels


# --- evaluation ----------------------------------------------------------------------------


@torch.no_grad()
def _scored(model: SASRec, histories: Sequence[Sequence[int]],
            batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(rows, next-item scores [len(rows), items]) batch by batch, in eval mode."""
    was_training = model.training
    model.eval()
    # Same-length histories together keep padding (and attention cost) low.
    order = sorted(range(len(histories)), key=lambda i: len(histories[i]))
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            hists = [tuple(histories[i])[-model.max_len:] for i in rows]
            width = max(1, max(len(h) for h in hists))
            yield rows, model.score_last(pad_histories(hists, width))
    finally:
        model.train(was_training)


def evaluate_sasrec(model: SASRec, examples: Sequence[Example], *, batch_size: int = 1024,
                    ks: Sequence[int] = DEFAULT_KS) -> Metrics:
    """Full-ranking HR@K / NDCG@K of the item after each example's history."""
    ranks = np.empty(len(examples), dtype=np.int64)
    for rows, scores in _scored(model, [e.history for e in examples], batch_size):
        ranks[rows] = ranks_from_scores(scores.numpy(), [examples[i].target for i in rows])
    return metrics_from_ranks(ranks, ks)


def recommend_sasrec(model: SASRec, histories: Sequence[Sequence[int]], *, topk: int = 20,
                     batch_size: int = 1024) -> Recommendations:
    """Each history's ``topk`` next items with their log-probabilities (a full softmax
    over the catalogue), best first: lists :func:`~deepinterest.eval.ensemble.fuse`
    merges with a generative model's beams (all items when the catalogue is smaller)."""
    topk = min(topk, model.num_items)
    items = torch.empty(len(histories), topk, dtype=torch.long)
    scores = torch.empty(len(histories), topk)
    for rows, logits in _scored(model, histories, batch_size):
        top = torch.log_softmax(logits.float(), dim=1).topk(topk, dim=1)
        items[rows], scores[rows] = top.indices, top.values
    return Recommendations(items, scores)


def sasrec_log_probs(model: SASRec, histories: Sequence[Sequence[int]], items: torch.Tensor, *,
                     batch_size: int = 1024) -> torch.Tensor:
    """Log-probability (full softmax over the catalogue) of each of ``items`` [N, C] as the
    next item after its row's history; -inf where ``items`` is -1 (padding)."""
    out = torch.full(items.shape, float("-inf"))
    for rows, logits in _scored(model, histories, batch_size):
        picked = items[rows]
        lp = torch.log_softmax(logits.float(), dim=1).gather(1, picked.clamp(min=0))
        out[rows] = lp.masked_fill(picked < 0, float("-inf"))
    return out


# --- training ------------------------------------------------------------------------------


_ALONE = DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


def _train_step(model: SASRec, optimizer: torch.optim.Optimizer, seqs: list[tuple[int, ...]],
                rows: torch.Tensor, n_global: int) -> Step:
    """One Adam step; the loss counts once per supervised position."""
    inputs, labels = collate([seqs[i] for i in rows.tolist()])
    loss = model.loss(inputs, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return Step(loss.item(), weight=float((labels >= 0).sum()))


def _build(num_items: int, config: SASRecConfig) -> SASRec:
    return SASRec(num_items=num_items, hidden=config.hidden, layers=config.layers,
                  heads=config.heads, dropout=config.dropout, max_len=config.max_len)


def train_sasrec(dataset: Dataset, config: SASRecConfig | None = None, *,
                 out_dir: str | Path | None = None, progress: bool = True) -> SASRecResult:
    """Train SASRec with early stopping on validation NDCG@10; test once at the best epoch."""
    config = config or SASRecConfig()
    start = time.perf_counter()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    splits = leave_one_out(dataset, max_history=MAX_HISTORY)
    if not splits.valid:
        raise ValueError(f"dataset {dataset.name!r} has no user with 3 or more items to "
                         "validate on")
    torch.manual_seed(config.seed)
    model = _build(len(dataset.items), config)
    seqs = training_sequences(dataset, config.max_len)
    prog, best_state = _fit(model, seqs, splits.valid, config, start=start, progress=progress)
    model.load_state_dict(best_state)
    test = evaluate_sasrec(model, splits.test, batch_size=config.eval_batch_size)
    history = [EpochLog(r.epoch, r.loss, r.valid["ndcg@10"] if r.valid else None, r.seconds)
               for r in prog.history]
    result = SASRecResult(model, config, prog.best_epoch,
                          Metrics(len(splits.valid), prog.best_valid), test, history,
                          time.perf_counter() - start)
    if out_dir is not None:
        save_sasrec(result, out_dir, item_ids=[item.id for item in dataset.items])
    return result


def _fit(model: SASRec, seqs: list[tuple[int, ...]], valid: Sequence[Example],
         config: SASRecConfig, *, start: float,
         progress: bool) -> tuple[Progress, dict[str, torch.Tensor]]:
    """Epochs until patience or the time budget runs out; the best checked state."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98),
                                 weight_decay=config.weight_decay)
    best: dict[str, torch.Tensor] = {}

    def keep_best(epoch: int, values: dict[str, float]) -> None:
        best.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    task = Task(model=model, optimizer=optimizer, scheduler=None,
                lengths=torch.tensor([len(s) for s in seqs], dtype=torch.long),
                step=partial(_train_step, model, optimizer, seqs),
                evaluate=partial(evaluate_sasrec, model, valid,
                                 batch_size=config.eval_batch_size),
                save_best=keep_best, config=config, epoch_line=_epoch_line)
    deadline = None if config.max_seconds is None else start + config.max_seconds
    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size,
                            seed=config.seed, eval_every=config.eval_every,
                            patience=config.patience, metric="ndcg@10", bucket=config.bucket,
                            deadline=deadline)
    return run_epochs(task, settings, out_dir=None, info=_ALONE, progress=progress), best


def _epoch_line(r: EpochRecord, prog: Progress) -> str:
    valid = "" if r.valid is None else f"  valid ndcg@10 {r.valid['ndcg@10']:.4f}"
    return (f"epoch {r.epoch:3d}  loss {r.loss:.4f}{valid}  {r.seconds:.1f} s  "
            f"(best epoch {prog.best_epoch}, ndcg@10 {max(prog.best_score, 0.0):.4f})")


# --- persistence ---------------------------------------------------------------------------


def items_fingerprint(item_ids: Sequence[str]) -> str:
    """A catalogue's item ids, in order, as one hash (which row is which item)."""
    return hashlib.sha256("\n".join(item_ids).encode("utf-8")).hexdigest()


def save_sasrec(result: SASRecResult, out_dir: str | Path, *,
                item_ids: Sequence[str] | None = None) -> Path:
    """``model.safetensors`` (best state) and ``config.json`` (config, catalogue size, metrics,
    and with ``item_ids`` the catalogue's fingerprint, which :func:`check_sasrec_items`
    compares)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    meta = {"config": result.config.model_dump(), "num_items": result.model.num_items,
            "best_epoch": result.best_epoch, "valid": result.valid.values,
            "test": result.test.values}
    if item_ids is not None:
        meta["items"] = items_fingerprint(item_ids)
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return out


def load_sasrec(out_dir: str | Path) -> SASRec:
    """The model saved by :func:`save_sasrec`, in eval mode."""
    from safetensors.torch import load_file

    out = Path(out_dir)
    meta = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    model = _build(meta["num_items"], SASRecConfig(**meta["config"]))
    model.load_state_dict(load_file(str(out / WEIGHTS_FILE)))
    return model.eval()


def check_sasrec_items(out_dir: str | Path, item_ids: Sequence[str]) -> None:
    """Refuse a saved model whose rows are not these items (a model saved without the
    fingerprint is checked on the catalogue's size alone)."""
    meta = json.loads((Path(out_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    saved = meta.get("items")
    if meta["num_items"] != len(item_ids) or (
            saved is not None and saved != items_fingerprint(item_ids)):
        raise DeepInterestError(f"{out_dir}: this SASRec was trained on another catalogue "
                                f"than this dataset's ({meta['num_items']} items there, "
                                f"{len(item_ids)} here); train it on this dataset")


# --- the [hybrid] stage ----------------------------------------------------------------------


def sasrec_stage(config: SASRecConfig, dataset_dir: str | Path, out: str | Path, *,
                 force: bool = False, progress: bool = True) -> StageResult:
    """SASRec trained on a dataset artifact into ``out`` (``di train --stage sasrec``): the
    model of :func:`save_sasrec` and its ``metrics.json``; skipped while the dataset and
    ``config`` are unchanged, written atomically like every stage."""
    from ..artifacts import Stage, artifact_fingerprint, run_stage
    from ..data import load_dataset
    from ..eval.metrics import write_metrics

    dataset_dir = Path(dataset_dir)

    def build(folder: Path) -> dict[str, Any]:
        result = train_sasrec(load_dataset(dataset_dir), config, out_dir=folder,
                              progress=progress)
        write_metrics(folder / "metrics.json", {"valid": result.valid, "test": result.test},
                      model="sasrec", best_epoch=result.best_epoch,
                      epochs_run=result.epochs_run)
        return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "valid_ndcg@10": round(result.valid.values["ndcg@10"], 4)}

    return run_stage(Stage(SASREC_STAGE, Path(out), {"sasrec": config.model_dump()},
                           {"dataset": artifact_fingerprint(dataset_dir)}, force), build)


def load_companion(folder: str | Path, dataset: Dataset, hybrid: HybridConfig) -> Companion:
    """``[hybrid]``'s SASRec from a finished :func:`sasrec_stage` folder, checked against
    the dataset it will rank for, with the merge's settings."""
    sasrec_fingerprint(folder)  # finished, or a clear error
    check_sasrec_items(folder, [item.id for item in dataset.items])
    return Companion(load_sasrec(folder), hybrid.weight, hybrid.rule, hybrid.candidates)


def sasrec_fingerprint(folder: str | Path) -> str:
    """The fingerprint of a finished :func:`sasrec_stage` folder (an eval input)."""
    from ..artifacts import MANIFEST, read_manifest

    if not (Path(folder) / MANIFEST).is_file():
        raise DeepInterestError(f"{folder}: no finished SASRec; [hybrid] merges its lists, "
                                "so train it first (`di train --stage sasrec`, or `di run`)")
    return read_manifest(folder)["fingerprint"]
