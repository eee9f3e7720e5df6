"""Users' deep interests from the interests of the items they bought.

A user's interests are computed only from the items *before* that user's
validation target (the last two items of a sequence of three or more are the
validation and test targets; docs/data.md), so no target's interests leak
into training or evaluation. Each descriptor's score is the sum, over the
user's earlier items, of its confidence times its label probability (a
descriptor the labeler rejects counts for little), so an interest that runs
through several purchases outranks one seen once; the kept top-k are
rescaled so the strongest has confidence 1.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..data.cooccurrence import history_before_validation
from ..data.model import Dataset
from ..schemas.interests import descriptor_weight


def aggregate_user_interests(dataset: Dataset, item_rows: dict[str, dict[str, Any]], *,
                             top_k: int = 8) -> list[dict[str, Any]]:
    """One row per user: ``user``, ``items_used`` and ``descriptors`` (text, confidence)."""
    rows = []
    for user in dataset.users:
        used = [dataset.items[i].id for i in history_before_validation(user.items)]
        scores: dict[str, float] = defaultdict(float)
        for item_id in used:
            for d in item_rows.get(item_id, {}).get("descriptors", []):
                scores[d["text"]] += descriptor_weight(d)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        top = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
        rows.append({"user": user.id, "items_used": len(used),
                     "descriptors": [{"text": t, "confidence": round(s / top, 4)}
                                     for t, s in ranked if s > 0]})
    return rows


def user_requests(dataset: Dataset) -> list:
    """One ``user`` request per user: the titles of the items before the validation target."""
    from .base import MineRequest

    requests = []
    for user in dataset.users:
        titles = [dataset.items[i].fields.get("title") or dataset.items[i].id
                  for i in history_before_validation(user.items)]
        requests.append(MineRequest("user", user.id, {"history": titles}))
    return requests


def asked_user_interests(dataset: Dataset, miner) -> list[dict[str, Any]]:
    """One row per user from a miner's ``user`` answers; a failure is kept with its reason."""
    requests = user_requests(dataset)
    rows = []
    for request, result in zip(requests, miner.mine(requests)):
        row = {"user": request.key, "items_used": len(request.evidence["history"]),
               "descriptors": [{"text": d.text, "confidence": round(d.confidence, 4)}
                               for d in result.answer.descriptors] if result.ok else []}
        if not result.ok:
            row["error"] = result.error
        rows.append(row)
    return rows
