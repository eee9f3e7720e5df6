"""A learned merge of several models' lists: a small network scores every candidate item
from what each list says about it, fitted on validation targets.

Reciprocal ranks (:func:`~.ensemble.fuse`) throw away how sure each model is, and the
models' scores are not on one scale (a T5's beam over SID sequences, SASRec's softmax
over the catalogue), so a fixed rule cannot weigh them. The reranker learns the weighing:

- Candidates: the union of the lists (each item once, in first-seen order).
- Features of a candidate, per list: whether the list holds it, ``1 / (rank + 1)``, and
  its score minus the list's best (a list that lacks it gives its worst minus 1); and,
  when given, a full-catalogue scorer's log-probability of the candidate minus that of
  its best item (SASRec scores every item, so it speaks for candidates it did not list).
- Model: one hidden layer over the standardized features, trained with the listwise
  softmax cross-entropy of the target among its row's candidates (rows whose target no
  list holds teach nothing and are left out).

Validation figures of a fitted merge must come from rows it was not fitted on:
:func:`crossfit_scores` scores each fold with a reranker fitted on the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write_text
from ..errors import DeepInterestError
from .lists import Recommendations

# One small hidden layer: on Beauty validation a linear scorer trailed it and wider
# layers did not help; full-batch Adam converges within the steps.
HIDDEN = 16
STEPS = 300
LR = 1e-2
WEIGHT_DECAY = 1e-4
RERANKER_WEIGHTS, RERANKER_META = "reranker.safetensors", "reranker.json"


@dataclass(frozen=True)
class Candidates:
    """Each row's candidate items and their features."""

    items: torch.Tensor  # int64 [N, C], -1 where a row has fewer candidates
    features: torch.Tensor  # float32 [N, C, F]

    @property
    def mask(self) -> torch.Tensor:
        return self.items >= 0


def union(lists: Sequence[Recommendations]) -> torch.Tensor:
    """Each row's items over all ``lists``, each once, in first-seen order [N, sum of k]
    (-1 where a row has fewer)."""
    cat = torch.cat([r.items for r in lists], dim=1)
    ordered, order = cat.sort(dim=1, stable=True)
    repeat = torch.zeros_like(cat, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    first = torch.empty_like(repeat).scatter_(1, order, ~repeat)
    kept = cat.masked_fill(~first | (cat < 0), -1)
    # Pack each row's kept items to the left, keeping their order.
    slot = torch.where(kept >= 0, 0, 1).argsort(dim=1, stable=True)
    return kept.gather(1, slot)


def _list_features(items: torch.Tensor, recs: Recommendations) -> list[torch.Tensor]:
    """Present, 1/(rank+1) and relative score of each candidate in one list."""
    listed = recs.items >= 0
    match = (items.unsqueeze(2) == recs.items.unsqueeze(1)) & listed.unsqueeze(1)  # [N,C,k]
    present = match.any(2)
    rank = match.float().argmax(2)
    scores = recs.scores.float().masked_fill(~listed, float("inf"))
    worst = scores.min(1, keepdim=True).values
    best = recs.scores.float().masked_fill(~listed, float("-inf")).max(1, keepdim=True).values
    gathered = recs.scores.float().gather(1, rank)
    relative = torch.where(present, gathered, worst - 1.0) - best
    relative = torch.nan_to_num(relative, nan=0.0, posinf=0.0, neginf=0.0)  # empty lists
    return [present.float(), torch.where(present, 1.0 / (rank + 1.0), 0.0), relative]


def candidate_features(
        lists: Sequence[Recommendations],
        log_probs: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Candidates:
    """The candidates of ``lists`` and their features; ``log_probs`` [N, items] (or a
    function of the candidates [N, C] returning [N, C]) adds a full-catalogue scorer's."""
    items = union(lists)
    feats = [f for recs in lists for f in _list_features(items, recs)]
    if log_probs is not None:
        at = log_probs(items) if callable(log_probs) else log_probs.gather(1, items.clamp(min=0))
        at = at.float().masked_fill(items < 0, float("-inf"))
        feats.append((at - at.max(1, keepdim=True).values).masked_fill(items < 0, 0.0))
    return Candidates(items, torch.stack(feats, dim=2).float().masked_fill(
        (items < 0).unsqueeze(2), 0.0))


class Reranker(torch.nn.Module):
    """Scores candidates from their features (standardized with the fitting rows' moments)."""

    def __init__(self, features: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.net = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std).squeeze(-1)

    def rerank(self, cands: Candidates, topk: int) -> Recommendations:
        """Each row's ``topk`` candidates by the network's score (ties: first-seen order)."""
        with torch.no_grad():
            scores = self(cands.features).masked_fill(~cands.mask, float("-inf"))
        return top_candidates(cands, scores, topk)


def top_candidates(cands: Candidates, scores: torch.Tensor, topk: int) -> Recommendations:
    """Each row's ``topk`` candidates by ``scores`` [N, C] (stable: first-seen order on ties)."""
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :topk]
    items = cands.items.gather(1, order)
    out = scores.gather(1, order)
    return Recommendations(items, out.masked_fill(items < 0, float("-inf")))


def fit_reranker(cands: Candidates, targets: torch.Tensor, *, seed: int = 0,
                 hidden: int = HIDDEN, steps: int = STEPS) -> Reranker:
    """A :class:`Reranker` fitted on rows whose target is among their candidates."""
    hit = cands.items == targets.unsqueeze(1)
    rows = hit.any(1)
    if not bool(rows.any()):
        raise DeepInterestError("no validation user's target is among the lists' candidates: "
                                "nothing to fit the learned merge on (use rule = \"rrf\")")
    feats, mask, label = cands.features[rows], cands.mask[rows], hit[rows].float().argmax(1)
    gen = torch.Generator().manual_seed(seed)
    model = Reranker(feats.shape[2], hidden)
    with torch.no_grad():
        for layer in model.net:
            if isinstance(layer, torch.nn.Linear):  # seeded, not the global stream
                bound = 1.0 / layer.in_features ** 0.5
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound
                                   - bound)
                layer.bias.zero_()
        listed = feats[mask]
        model.mean.copy_(listed.mean(0))
        model.std.copy_(listed.std(0).clamp(min=1e-6) if len(listed) > 1
                        else torch.ones_like(model.std))
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    for _ in range(steps):
        logits = model(feats).masked_fill(~mask, float("-inf"))
        loss = torch.nn.functional.cross_entropy(logits, label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def crossfit_scores(cands: Candidates, targets: torch.Tensor, *, folds: int = 2,
                    seed: int = 0, **fit) -> torch.Tensor:
    """Each row's candidate scores [N, C] from a reranker fitted on the other folds only
    (rows dealt to folds by a seeded permutation)."""
    n = len(targets)
    if folds < 2 or n < folds:
        raise DeepInterestError(f"cross-fitting needs at least 2 folds and a row per fold, got "
                         f"{folds} folds for {n} rows")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = perm.chunk(folds)
    scores = torch.empty(cands.items.shape)
    for k, held in enumerate(parts):
        rest = torch.cat([p for j, p in enumerate(parts) if j != k])
        model = fit_reranker(Candidates(cands.items[rest], cands.features[rest]),
                             targets[rest], seed=seed + k, **fit)
        with torch.no_grad():
            scores[held] = model(cands.features[held])
    return scores.masked_fill(~cands.mask, float("-inf"))


def save_reranker(model: Reranker, folder: str | Path, **meta: Any) -> None:
    """Weights and shape (with ``meta``: what it was fitted for) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / RERANKER_WEIGHTS))
    shape = {"features": model.mean.numel(), "hidden": model.net[0].out_features}
    atomic_write_text(folder / RERANKER_META, json.dumps(shape | meta, indent=2))


def load_reranker(folder: str | Path) -> tuple[Reranker, dict[str, Any]]:
    """The reranker :func:`save_reranker` wrote, in eval mode, and its meta."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / RERANKER_META).is_file():
        raise DeepInterestError(f"{folder}: no fitted reranker; the learned merge is fitted "
                                "on validation by `di eval`, so evaluate the run first")
    meta = json.loads((folder / RERANKER_META).read_text(encoding="utf-8"))
    model = Reranker(meta["features"], meta["hidden"])
    model.load_state_dict(load_file(str(folder / RERANKER_WEIGHTS)))
    return model.eval(), meta


__all__ = ["Candidates", "Reranker", "candidate_features", "crossfit_scores", "fit_reranker",
           "load_reranker", "save_reranker", "top_candidates", "union"]
