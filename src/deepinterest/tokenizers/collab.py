"""The collaborative slot of the item embedding (``tokenize.collab_weight > 0``).

Item text says what an item *is*; which items are bought together says what
it is *for*, and that is the signal generative recommenders miss when their
semantic IDs come from text alone (COSETTE, arXiv 2508.14910; LETTER). This
module learns an item vector from the training interactions and fuses it
with the text vector before quantization, so items bought in the same
sessions can share code prefixes even when their texts differ.

The vector is a factorisation of item co-occurrence (word2vec's implicit
matrix, Levy and Goldberg 2014), which takes seconds where a trained SASRec
would take minutes:

1. co-occurrence counts over each user's *training* items only (the
   leave-one-out split's training part: every item but the last two of a
   user with three or more), pairs at distance ``d <= window`` counted with
   weight ``1 / d``;
2. positive pointwise mutual information, ``max(0, log(c_ij * C / (c_i * c_j)))``;
3. a truncated SVD of that matrix, item vector ``U_k * sqrt(S_k)``,
   normalised to unit length.

Fusion concatenates the two vectors with shares of squared norm ``1 - w``
and ``w``:

    v = [sqrt(1 - w) * text, sqrt(w) * collab],   w = tokenize.collab_weight

so the quantizer's squared distances are ``(1 - w) * text distance + w *
collab distance``. The text part keeps every dimension (a map of the
collaborative vector into the text space, as the image slot does, would keep
only what text already predicts). An item without training interactions
(and every new item at cold start) has a zero collaborative part.

No validation or test target reaches the vectors: the leave-one-out targets
are removed before counting (a test checks that changing a user's held-out
items leaves the SIDs unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.cooccurrence import cooccurrence, training_sequences
from ..data.model import Dataset
from ..config import TokenizeConfig
from ..errors import DeepInterestError

COLLAB_FIELDS = ("collab_weight", "collab_dim", "collab_window")


def ppmi(counts):
    """Positive pointwise mutual information of a symmetric count matrix (CSR in, CSR out)."""
    counts = counts.tocoo()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    total = marginal.sum()
    pmi = np.log(counts.data * total / (marginal[counts.row] * marginal[counts.col]))
    keep = pmi > 0
    from scipy.sparse import coo_matrix

    return coo_matrix((pmi[keep], (counts.row[keep], counts.col[keep])),
                      shape=counts.shape).tocsr()


def collab_vectors(dataset: Dataset, *, dim: int = 64, window: int = 3) -> np.ndarray:
    """Unit item vectors [n_items, dim] from training co-occurrence (zero rows: no data)."""
    from scipy.sparse.linalg import svds

    n = len(dataset.items)
    if dim >= n:
        raise DeepInterestError(f"tokenize.collab_dim = {dim} needs more than {dim} items; "
                                f"the catalogue has {n}: lower collab_dim")
    matrix = ppmi(cooccurrence(training_sequences(dataset), n, window))
    if matrix.nnz == 0:
        raise DeepInterestError("tokenize.collab_weight > 0 but no two training items "
                                "co-occur in any user's history: set collab_weight = 0")
    # A fixed start vector makes ARPACK, and so the SIDs, reproducible.
    u, s, _ = svds(matrix.astype(np.float64), k=dim, v0=np.ones(n) / np.sqrt(n))
    order = np.argsort(-s)
    vectors = u[:, order] * np.sqrt(s[order])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def fuse_collab(text: np.ndarray, collab: np.ndarray, weight: float) -> np.ndarray:
    """``[sqrt(1 - w) * text, sqrt(w) * collab]`` (module docstring)."""
    if not 0.0 < weight < 1.0:
        raise DeepInterestError(f"collab weight must be in (0, 1), got {weight}")
    if len(text) != len(collab):
        raise DeepInterestError(f"{len(text)} text vectors but {len(collab)} collaborative ones")
    return np.concatenate([np.sqrt(1.0 - weight) * text.astype(np.float32),
                           np.sqrt(weight) * collab.astype(np.float32)], axis=1)


def add_collab(cfg: TokenizeConfig, dataset: Dataset,
               vectors: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The stage's vectors with the collaborative slot, and ``stats.json``'s ``collab`` entry."""
    collab = collab_vectors(dataset, dim=cfg.collab_dim, window=cfg.collab_window)
    covered = int((np.abs(collab).sum(axis=1) > 0).sum())
    stats = {"weight": cfg.collab_weight, "dim": cfg.collab_dim, "window": cfg.collab_window,
             "items_with_vector": covered, "items": len(collab)}
    return fuse_collab(vectors, collab, cfg.collab_weight), stats


def cold_start(vectors: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """New items' vectors in the fitted layout: a zero collaborative part (no interactions)."""
    return fuse_collab(vectors, np.zeros((len(vectors), spec["dim"]), dtype=np.float32),
                       spec["weight"])
