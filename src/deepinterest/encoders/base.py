"""The encoder contract shared by every text encoder.

An encoder has one required method, ``encode(texts) -> float32 [N, D]``, and
an ``identity`` string that changes whenever its outputs would (model,
pooling, normalisation); the embedding cache keys on it. Encoders register
by name under the ``deepinterest.encoders`` entry-point group and are built
with ``encoder(name, *, device, batch_size, normalize)``; see ``factory.py``.
This module imports none of them, so any encoder module may import it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class TextEncoder(Protocol):
    identity: str

    def encode(self, texts: list[str]) -> np.ndarray: ...
