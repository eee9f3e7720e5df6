"""Text (and image) encoders with an on-disk embedding cache.

Used by the tokenizers (item embeddings for semantic IDs) and by the
embedding miner. Model libraries are imported lazily inside each encoder;
encoders are registered under the ``deepinterest.encoders`` entry points.
"""

from .base import TextEncoder
from .cache import EmbeddingCache, embed_texts
from .factory import build_encoder

__all__ = ["TextEncoder", "EmbeddingCache", "build_encoder", "embed_texts"]
