"""The ranked lists that :func:`~.generative.recommend` returns and
:func:`~.ensemble.fuse` merges, and the :class:`Companion` whose list joins a merge (a
module of its own so that none of them imports another)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch


class Recommendations(NamedTuple):
    """Each history's best items, best first (-1 where fewer than ``topk`` exist)."""

    items: torch.Tensor  # int64 [N, k]
    scores: torch.Tensor  # float32 [N, k] summed SID-token log-probabilities (fused scores
    # for a merge)


class Companion(NamedTuple):
    """A model ranking item positions beside the generative one (``[hybrid]``)."""

    model: Any  # a SASRec (deepinterest.train.sasrec.recommend_sasrec ranks with it)
    weight: float  # its weight in the merge; each SID view weighs 1
    rule: str  # deepinterest.eval.ensemble.RULES, or "learned" (the reranker below)
    candidates: int  # items it hands over per history
    reranker: Any = None  # deepinterest.eval.rerank.Reranker, fitted, for rule "learned"
