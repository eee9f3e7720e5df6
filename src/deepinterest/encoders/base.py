"""The encoder contract and a factory by name.

An encoder has one required method, ``encode(texts) -> float32 [N, D]``, and
an ``identity`` string that changes whenever its outputs would (model,
pooling, normalisation); the embedding cache keys on it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class TextEncoder(Protocol):
    identity: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def build_encoder(name: str = MINILM, *, kind: str = "auto", device: str | None = None,
                  batch_size: int = 64, normalize: bool = True) -> TextEncoder:
    """``kind='sentence-transformers'`` or ``'hf'`` (mean pooling); ``auto`` prefers the former.

    ``auto`` picks sentence-transformers when the name is a sentence-transformers
    model (its folder has ``modules.json`` or the name is the bundled MiniLM),
    else a plain Hugging Face encoder with mean pooling.
    """
    from .sentence import SentenceTransformerEncoder, is_sentence_transformer
    from .hf import MeanPoolEncoder

    if kind == "auto":
        kind = "sentence-transformers" if is_sentence_transformer(name) else "hf"
    if kind == "sentence-transformers":
        return SentenceTransformerEncoder(name, device=device, batch_size=batch_size,
                                          normalize=normalize)
    if kind == "hf":
        return MeanPoolEncoder(name, device=device, batch_size=batch_size, normalize=normalize)
    raise ValueError(f"unknown encoder kind {kind!r}; use auto, sentence-transformers or hf")
