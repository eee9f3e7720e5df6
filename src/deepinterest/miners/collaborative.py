"""Collaborative interests: an item's descriptors completed from its co-purchases.

An LLM (or the embedding miner) reads one item at a time, so what it mines
can only restate that item's text. Why people buy an item is also written
in what they buy with it: a toner bought beside cotton pads and a cleanser
is part of a routine its own page may never name. With
``[mine.collaborative]`` set, the mine stage completes each item's
ensembled, labelled descriptors with those of the items most often bought
near it, before users' interests are aggregated:

1. neighbours: co-occurrence counts over each user's *training* items
   (``data/cooccurrence.py``: never a validation or test target), pairs at
   distance ``d <= window`` weighted ``1 / d``; the ``neighbours`` heaviest
   mined items with descriptors are kept;
2. each descriptor's borrowed score is the neighbours' confidence in it,
   averaged with the co-occurrence weights, ``b(t) = sum_j w_j c_j(t) /
   sum_j w_j`` (texts match after ``normalise``);
3. the item's own and borrowed scores are blended, ``(1 - weight) * c(t) +
   weight * b(t)``, and the ``top_k`` best kept, best first.

Each descriptor keeps its own label when the item had it, and otherwise
takes the label of the neighbour that lent it the most (a borrowed phrase
is graded on the item that was mined for it); ``neighbour_share`` records
how much of its confidence was borrowed, and ``sources`` holds
``"neighbours"`` for a phrase the item did not have. An item with no mined
neighbour, or that every miner failed on (a rerun asks it again), keeps
its descriptors as they were. The item's quality ``q``
stays that of its own descriptors: it grades what was mined for the item.

The result is the same artifact with the same report, so interest SIDs,
users' interests and rewards read it unchanged. A shard completes nothing
(its neighbours may be in another shard); ``di mine merge`` completes the
joined catalogue.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..config import CollaborativeSpec
from ..data.cooccurrence import cooccurrence, training_sequences
from ..data.model import Dataset
from .vocabulary import normalise

NEIGHBOURS = "neighbours"  # the source name of a borrowed descriptor


def complete_rows(rows: list[dict[str, Any]], dataset: Dataset,
                  spec: CollaborativeSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``rows`` (``items.jsonl``'s) with completed descriptors, and the counts for the manifest."""
    index = {item.id: n for n, item in enumerate(dataset.items)}
    own = {index[r["item"]]: r["descriptors"] for r in rows
           if r["item"] in index and r["descriptors"]}
    counts = cooccurrence(training_sequences(dataset), len(dataset.items), spec.window)
    out, completed, borrowed = [], 0, 0
    for row in rows:
        i = index.get(row["item"])
        # An item every miner failed on stays failed, so a rerun asks it again.
        unasked = i is None or (not row["descriptors"] and row.get("failures"))
        neighbours = [] if unasked else _neighbours(counts, i, own, spec.neighbours)
        if not neighbours:
            out.append(row)
            continue
        descriptors = _blend(row["descriptors"], neighbours, own, spec)
        completed += 1
        borrowed += sum(1 for d in descriptors if NEIGHBOURS in d["sources"])
        out.append({**row, "descriptors": descriptors})
    shares = [d.get("neighbour_share", 0.0) for r in out for d in r["descriptors"]]
    return out, {"items_completed": completed, "borrowed_descriptors": borrowed,
                 "neighbour_share": round(float(np.mean(shares)), 4) if shares else 0.0}


def _neighbours(counts, i: int, own: dict[int, list], keep: int) -> list[tuple[int, float]]:
    """The ``keep`` heaviest co-purchased items that have descriptors (ties: lower index)."""
    start, end = counts.indptr[i], counts.indptr[i + 1]
    pairs = [(int(j), float(w)) for j, w in zip(counts.indices[start:end], counts.data[start:end])
             if int(j) in own and w > 0]
    pairs.sort(key=lambda jw: (-jw[1], jw[0]))
    return pairs[:keep]


def _blend(mine: list[dict[str, Any]], neighbours: list[tuple[int, float]],
           own: dict[int, list], spec: CollaborativeSpec) -> list[dict[str, Any]]:
    total = sum(w for _, w in neighbours)
    lent: dict[str, float] = defaultdict(float)
    lender: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (largest share, its record)
    supporters: dict[str, int] = defaultdict(int)
    for j, w in neighbours:
        for d in own[j]:
            key, share = normalise(d["text"]), w * d["confidence"] / total
            lent[key] += share
            supporters[key] += 1
            if key not in lender or share > lender[key][0]:
                lender[key] = (share, d)
    by_key = {normalise(d["text"]): d for d in mine}
    blended = []
    for key in by_key.keys() | lent.keys():
        score = (1 - spec.weight) * by_key[key]["confidence"] if key in by_key else 0.0
        part = spec.weight * lent.get(key, 0.0)
        blended.append((score + part, key, part))
    blended.sort(key=lambda s: (-s[0], s[1]))
    result = []
    for score, key, part in blended[:spec.top_k]:
        base = by_key.get(key) or _borrowed_record(lender[key][1], supporters[key])
        result.append({**base, "confidence": round(score, 4),
                       "neighbour_share": round(part / score, 4) if score > 0 else 0.0})
    return result


def _borrowed_record(lent: dict[str, Any], support: int) -> dict[str, Any]:
    """A phrase the item did not have: the lender's text and label, named as borrowed."""
    keep = ("text", "label", "probability", "labeler")
    return {**{k: lent[k] for k in keep if k in lent}, "support": support,
            "sources": [NEIGHBOURS]}

