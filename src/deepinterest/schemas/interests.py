"""The ``interests`` artifact (``di mine``): its stage name, files and reader.

| file | one line per |
|---|---|
| ``items.jsonl`` | item: ``item``, ``answers``, ``descriptors`` (text, confidence, support, sources, label, probability), ``quality``, ``failures`` |
| ``users.jsonl`` | user: ``user``, ``descriptors`` (text, confidence) |
| ``report.json`` | the mining report (tokens, dollars, agreement, failures) |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataError

MINE_STAGE = "mine"
ITEMS_FILE, USERS_FILE, REPORT_FILE = "items.jsonl", "users.jsonl", "report.json"


def read_rows(path: str | Path, key: str,
              check: Callable[[dict[str, Any]], str | None] | None = None
              ) -> list[dict[str, Any]]:
    """The rows of ``items.jsonl`` (``key = "item"``) or ``users.jsonl`` (``"user"``);
    a bad line, or one for which ``check`` returns a problem, raises a
    :class:`DataError` naming the file and the line."""
    path, rows = Path(path), []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not valid JSON: {exc.msg}", line=number,
                                hint="rerun `di mine` to rewrite the artifact") from None
            if not isinstance(row, dict) or key not in row:
                raise DataError(path, f"a line without {key!r}", line=number)
            for d in row.get("descriptors") or ():
                if not isinstance(d, dict) or not isinstance(d.get("text"), str):
                    raise DataError(path, f"a descriptor of {row[key]!r} without 'text'",
                                    line=number)
            problem = check(row) if check else None
            if problem:
                raise DataError(path, problem, line=number)
            rows.append(row)
    return rows


def read_items(folder: str | Path) -> list[dict[str, Any]]:
    """The artifact's ``items.jsonl`` rows, in item order."""
    return read_rows(Path(folder) / ITEMS_FILE, "item")


def descriptor_weight(descriptor: dict[str, Any]) -> float:
    """A descriptor's weight when an item's descriptors are summed: its confidence times
    its label probability (1 when the labeler gave none)."""
    probability = descriptor.get("probability")
    return float(descriptor["confidence"]) * (1.0 if probability is None else float(probability))


def normalise(text: str) -> str:
    """Lower case, punctuation out, single spaces: what makes two descriptor texts the
    same, for the ensemblers, collaborative interests, the interest reward and the
    interest-token vocabulary alike."""
    kept = "".join(ch if ch.isalnum() else " " for ch in text.lower())
    return " ".join(kept.split())


def descriptor_table(rows: list[dict[str, Any]], item_ids: list[str], size: int,
                     width: int = 8) -> tuple[list[str], list[list[int]], list[list[float]]]:
    """Items' descriptors as ids into a shared vocabulary, for interest tokens.

    The vocabulary is the ``size`` descriptor texts (the same text after
    :func:`normalise`) found on the most items, ties alphabetical. Each of
    ``item_ids`` gets its first ``width`` in-vocabulary descriptors as ids
    (-1 pads) with weights ``confidence * probability`` (probability 1 when
    the labeler gave none), as users' interests are aggregated. Items
    missing from ``rows`` get no ids.
    """
    by_item = {r["item"]: r.get("descriptors") or [] for r in rows}
    counts: dict[str, int] = {}
    for descriptors in by_item.values():
        for text in {normalise(d["text"]) for d in descriptors}:
            counts[text] = counts.get(text, 0) + 1
    vocabulary = sorted(counts, key=lambda t: (-counts[t], t))[:size]
    index = {text: n for n, text in enumerate(vocabulary)}
    ids, weights = [], []
    for item in item_ids:
        kept = [(index[normalise(d["text"])], descriptor_weight(d))
                for d in by_item.get(item, []) if normalise(d["text"]) in index][:width]
        pad = width - len(kept)
        ids.append([i for i, _ in kept] + [-1] * pad)
        weights.append([w for _, w in kept] + [0.0] * pad)
    return vocabulary, ids, weights
