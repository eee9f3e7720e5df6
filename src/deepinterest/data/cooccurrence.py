"""Which items are bought together, from the training part of the split only.

Two consumers learn from co-purchases: the tokenize stage's collaborative
slot (``tokenizers/collab.py``) and the mine stage's collaborative
completion of item interests (``miners/collaborative.py``). Both must never
see a validation or test target, so both read the sequences here: each
user's items but the last two (the leave-one-out targets, ``splits.py``),
or all of a sequence too short to have targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .model import Dataset


def history_before_validation(items: Sequence[int]) -> tuple[int, ...]:
    """The items no evaluation example targets (all of a sequence shorter than three)."""
    return tuple(items[:-2]) if len(items) >= 3 else tuple(items)


def training_sequences(dataset: Dataset) -> list[tuple[int, ...]]:
    """Each user's items that no evaluation example targets."""
    return [history_before_validation(u.items) for u in dataset.users]


def cooccurrence(sequences: Sequence[Sequence[int]], n_items: int, window: int):
    """Symmetric co-occurrence counts (scipy CSR), pairs at distance d weighted 1 / d."""
    from scipy.sparse import coo_matrix

    rows, cols, vals = [], [], []
    for seq in sequences:
        for d in range(1, min(window, len(seq) - 1) + 1):
            a, b = np.asarray(seq[:-d]), np.asarray(seq[d:])
            keep = a != b
            rows += [a[keep], b[keep]]
            cols += [b[keep], a[keep]]
            vals.append(np.full(2 * int(keep.sum()), 1.0 / d))
    if not vals:
        return coo_matrix((n_items, n_items)).tocsr()
    data = np.concatenate(vals)
    return coo_matrix((data, (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_items, n_items)).tocsr()
