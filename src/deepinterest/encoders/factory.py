"""Build a text encoder by kind, through the ``deepinterest.encoders`` registry."""

from __future__ import annotations

from .. import registry
from ..errors import DeepInterestError
from .base import MINILM, TextEncoder

SENTENCE_TRANSFORMERS = "sentence-transformers"
HF = "hf"


def build_encoder(name: str = MINILM, *, kind: str = "auto", device: str | None = None,
                  batch_size: int = 64, normalize: bool = True) -> TextEncoder:
    """``kind`` is a registered encoder (``sentence-transformers``, ``hf`` (mean
    pooling) or a plugin's name) or ``auto``.

    ``auto`` picks sentence-transformers when the name is a sentence-transformers
    model (its folder has ``modules.json`` or the name is the bundled MiniLM),
    else a plain Hugging Face encoder with mean pooling.
    """
    if kind == "auto":
        kind = _auto_kind(name)
    names = sorted(registry.available("encoders"))
    if kind not in names:
        raise DeepInterestError(f"unknown encoder kind {kind!r}; use auto or a registered "
                                f"encoder: {', '.join(names) or 'none installed'}")
    return registry.create("encoders", kind, name=name, device=device, batch_size=batch_size,
                           normalize=normalize)


def _auto_kind(name: str) -> str:
    sentence = registry.get("encoders", SENTENCE_TRANSFORMERS)
    return SENTENCE_TRANSFORMERS if sentence.handles(name) else HF
