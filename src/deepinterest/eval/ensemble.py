"""One list from several models' recommendations: inference-time ensembling.

Models trained on different semantic IDs of the same catalogue (plain SIDs,
a collaborative slot, interest-enhanced SIDs) make different mistakes: a SID
prefix groups an item with different neighbours in each. Their lists are
merged item by item, since items, not SID tokens, are what they share.

Two rules:

* ``"probability"``: each model's beam scores (summed SID log-probabilities)
  are turned into a distribution over its own beam (softmax), and an item's
  fused score is the weighted sum of its probability in every list (0 where
  a list lacks it). Calibrated models then vote with their confidence.
* ``"rrf"``: reciprocal-rank fusion, ``sum_m w_m / (c + rank_m + 1)``, which
  ignores scores and is robust to models whose scales differ.

Ties are broken by the first model's order, then by item position, so the
result is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .lists import Recommendations

RULES = ("probability", "rrf")
RRF_C = 60.0  # the usual constant of reciprocal-rank fusion (Cormack et al., 2009)


def _list_scores(recs: Recommendations, rule: str) -> torch.Tensor:
    """Each list entry's contribution [N, k] (0 where the slot is empty)."""
    valid = recs.items >= 0
    if rule == "probability":
        logits = recs.scores.masked_fill(~valid, float("-inf"))
        probs = torch.softmax(logits.double(), dim=1).nan_to_num(0.0)
        return probs.masked_fill(~valid, 0.0)
    ranks = torch.arange(recs.items.shape[1], dtype=torch.float64)
    return (1.0 / (RRF_C + ranks + 1.0)).expand_as(recs.items).masked_fill(~valid, 0.0)


def check_fusion(models: int, rule: str, weights: Sequence[float] | None) -> list[float]:
    """The weights of ``models`` models (equal when None), or ValueError for settings
    ``fuse`` cannot merge with."""
    if models < 1:
        raise ValueError("fuse needs at least one list of recommendations")
    if rule not in RULES:
        raise ValueError(f"unknown fusion rule {rule!r}; choose one of {RULES}")
    weights = [1.0] * models if weights is None else list(weights)
    if len(weights) != models or any(w < 0 for w in weights):
        raise ValueError(f"need one non-negative weight per model, got {weights}")
    return weights


def fuse(lists: Sequence[Recommendations], *, weights: Sequence[float] | None = None,
         rule: str = "probability", topk: int = 10) -> Recommendations:
    """Merge several models' lists of the same rows into one top-``topk`` list per row."""
    weights = check_fusion(len(lists), rule, weights)
    rows = lists[0].items.shape[0]
    if any(r.items.shape[0] != rows for r in lists):
        raise ValueError("every model must recommend for the same rows")
    items = torch.cat([r.items for r in lists], dim=1)
    contrib = torch.cat([w * _list_scores(r, rule) for w, r in zip(weights, lists)], dim=1)
    out_items = torch.full((rows, topk), -1, dtype=torch.long)
    out_scores = torch.full((rows, topk), float("-inf"))
    for row in range(rows):
        total: dict[int, float] = {}
        for item, value in zip(items[row].tolist(), contrib[row].tolist()):
            if item >= 0:
                total[item] = total.get(item, 0.0) + value
        # dicts keep first-seen order: the first model's ranking breaks ties
        best = sorted(total.items(), key=lambda kv: -kv[1])[:topk]
        for col, (item, value) in enumerate(best):
            out_items[row, col], out_scores[row, col] = item, value
    return Recommendations(out_items, out_scores)


__all__ = ["RULES", "check_fusion", "fuse"]
