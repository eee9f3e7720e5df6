"""The ranked lists that :func:`~.generative.recommend` returns and
:func:`~.ensemble.fuse` merges (a module of its own so that neither imports the other)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Recommendations(NamedTuple):
    """Each history's best items, best first (-1 where fewer than ``topk`` exist)."""

    items: torch.Tensor  # int64 [N, k]
    scores: torch.Tensor  # float32 [N, k] summed SID-token log-probabilities (fused scores
    # for a merge)
