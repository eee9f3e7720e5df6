"""Full-ranking evaluation: HR@K and NDCG@K from ranked lists or from scores.

Every model kind is scored by the same code: a generative model hands over
its beam (item positions, best first), a scoring model hands over a score
for every item. With one target per user, HR@K = Recall@K and
NDCG@K = 1 / log2(rank + 2) for a target at 0-based ``rank < K``, else 0.

Ties (the evaluation protocol of docs/data.md): :func:`ranks_from_scores`
counts every other item whose score equals the target's as ranked above it,
so ties never help the model. Ranked lists must not repeat an item; a
repeat is a bug upstream and raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_text

DEFAULT_KS = (5, 10)
DEFAULT_BEAM = 20  # beam width of generative models (docs/data.md: the protocol)
NOT_FOUND = -1


@dataclass(frozen=True)
class Metrics:
    users: int
    values: dict[str, float]  # "hr@5", "ndcg@5", ...

    def __getitem__(self, key: str) -> float:
        return self.values[key]


def ranks_from_lists(ranked: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each target in its list, ``NOT_FOUND`` (-1) when absent."""
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} targets")
    ranks = np.full(len(targets), NOT_FOUND, dtype=np.int64)
    for row, (items, target) in enumerate(zip(ranked, targets)):
        items = list(items)
        if len(set(items)) != len(items):
            raise ValueError(f"ranked list {row} repeats an item: {items}")
        if target in items:
            ranks[row] = items.index(target)
    return ranks


def ranks_from_scores(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based pessimistic rank of each target given scores [users, items].

    rank = #items scoring higher + #other items scoring the same.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    own = scores[np.arange(len(targets)), targets][:, None]
    higher = (scores > own).sum(axis=1)
    ties = (scores == own).sum(axis=1) - 1
    return higher + ties


def user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's ``hr@K`` (0 or 1) or ``ndcg@K`` (``1 / log2(rank + 2)`` or 0); the
    metric is their mean."""
    name, _, k = metric.partition("@")
    if name not in ("hr", "ndcg") or not k.isdigit():
        raise ValueError(f"metric must be hr@K or ndcg@K, got {metric!r}")
    ranks = np.asarray(ranks)
    hit = (ranks != NOT_FOUND) & (ranks < int(k))
    if name == "hr":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> Metrics:
    ranks = np.asarray(ranks)
    values: dict[str, float] = {}
    for k in ks:
        for name in (f"hr@{k}", f"ndcg@{k}"):
            values[name] = float(user_values(ranks, name).mean()) if len(ranks) else math.nan
    return Metrics(users=len(ranks), values=values)


def evaluate_rankings(
    ranked: Sequence[Sequence[int]], targets: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> Metrics:
    """Metrics of top lists (best first) against one target each."""
    if ranked and max(ks) > max(len(r) for r in ranked):
        # A shorter list would silently cap HR@K; ask for enough candidates instead.
        longest = max(len(r) for r in ranked)
        raise ValueError(f"K={max(ks)} but the longest ranked list has {longest} items")
    return metrics_from_ranks(ranks_from_lists(ranked, targets), ks)


def evaluate_scores(
    scores: np.ndarray, targets: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> Metrics:
    """Metrics of full score matrices [users, items] with pessimistic ties."""
    return metrics_from_ranks(ranks_from_scores(scores, targets), ks)


def write_metrics(path: str | Path, splits: dict[str, Metrics], **extra: object) -> None:
    """``metrics.json``: ``{"valid": {"hr@5": ...}, "test": {...}, "users": {...}, ...}``."""
    payload: dict[str, object] = {name: m.values for name, m in splits.items()}
    payload["users"] = {name: m.users for name, m in splits.items()}
    payload.update(extra)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
