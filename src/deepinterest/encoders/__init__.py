"""Text (and image) encoders with an on-disk embedding cache.

Used by the tokenizers (item embeddings for semantic IDs) and by the
embedding miner. Model libraries are imported lazily inside each encoder.
"""

from .base import TextEncoder, build_encoder
from .cache import EmbeddingCache, embed_texts

__all__ = ["TextEncoder", "EmbeddingCache", "build_encoder", "embed_texts"]
