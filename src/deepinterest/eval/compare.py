"""Is model B better than model A on the same users? A paired bootstrap.

Two runs scored on one split rank the same targets, so the per-user
difference of a metric carries less noise than either metric alone: a
user who is easy for one model is usually easy for the other. Resampling
users with replacement, the difference of the means gives an interval for
what another draw of users would show. On Beauty's 22,363 test users the
standard error of one model's NDCG@10 is about 0.0013; the interval of a
paired difference is narrower, and says whether a gain of a few percent is
more than the draw of users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import user_values

CHUNK = 64  # bootstrap samples drawn at once (memory: CHUNK x users indices)


@dataclass(frozen=True)
class PairedComparison:
    """``metric`` of A and B on the same ``users``, B - A, and its bootstrap interval."""

    metric: str
    users: int
    a: float
    b: float
    difference: float  # b - a
    low: float  # the interval's ends (``level``, percentile bootstrap)
    high: float
    level: float
    b_better: float  # share of bootstrap samples in which B's mean is higher

    @property
    def relative(self) -> float:
        """B / A - 1 (NaN when A is 0)."""
        return self.b / self.a - 1.0 if self.a else float("nan")


def paired_bootstrap(ranks_a: np.ndarray, ranks_b: np.ndarray, metric: str = "ndcg@10", *,
                     samples: int = 2000, level: float = 0.95,
                     seed: int = 0) -> PairedComparison:
    """Compare two models' 0-based target ranks (-1: not in the list), user by user."""
    a, b = user_values(ranks_a, metric), user_values(ranks_b, metric)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need the ranks of the same users, got shapes {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0 or samples < 1:
        raise ValueError(f"level must be in (0, 1) and samples >= 1, got {level}, {samples}")
    diff, rng, means = b - a, np.random.default_rng(seed), []
    for start in range(0, samples, CHUNK):
        draw = rng.integers(0, len(diff), size=(min(CHUNK, samples - start), len(diff)))
        means.append(diff[draw].mean(axis=1))
    boot = np.concatenate(means)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return PairedComparison(metric, len(a), float(a.mean()), float(b.mean()),
                            float(diff.mean()), float(low), float(high), level,
                            float((boot > 0).mean()))
