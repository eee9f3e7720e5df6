"""Non-learned reference rankers, scored by the same evaluation code as every model.

``MostPopular`` ranks items by how often they occur in the interactions a
model may train on (every item before each user's validation target). It is
the floor any recommender must clear; a model below it has a bug.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.model import Dataset
from ..data.splits import leave_one_out
from .metrics import DEFAULT_KS, Metrics, evaluate_rankings


class MostPopular:
    name = "most-popular"

    def fit(self, dataset: Dataset) -> "MostPopular":
        counts = np.zeros(len(dataset.items), dtype=np.float64)
        for user in dataset.users:
            for item in user.items[:-2]:  # never count validation or test targets
                counts[item] += 1
        # A tiny decreasing offset breaks count ties by item position, deterministically.
        self.scores = counts - np.arange(len(counts)) * 1e-9
        return self

    def rank(self, num_users: int, k: int) -> list[list[int]]:
        top = np.argsort(-self.scores, kind="stable")[:k].tolist()
        return [top] * num_users


def popularity_metrics(dataset: Dataset, *, max_history: int,
                       ks: Sequence[int] = DEFAULT_KS) -> dict[str, Metrics]:
    """``{"valid": ..., "test": ...}`` of :class:`MostPopular` on the leave-one-out splits."""
    splits = leave_one_out(dataset, max_history=max_history)
    model = MostPopular().fit(dataset)
    return {name: evaluate_rankings(model.rank(len(part), max(ks)), [e.target for e in part], ks)
            for name, part in (("valid", splits.valid), ("test", splits.test))}
