"""Non-learned reference rankers, scored by the same evaluation code as every model.

``MostPopular`` ranks items by how often they occur in the interactions a
model may train on (every item before each user's validation target). It is
the floor any recommender must clear; a model below it has a bug.
"""

from __future__ import annotations

import numpy as np

from .data.model import Dataset


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
