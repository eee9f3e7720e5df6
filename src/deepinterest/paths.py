"""Where caches live: one root for the embedding cache and the answer cache.

``$DEEPINTEREST_CACHE`` names a *folder* (created when missing) holding
``embeddings/`` and ``mining.sqlite``; unset, it is ``~/.cache/deepinterest``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DeepInterestError


def cache_root() -> Path:
    """The cache folder; a clear error when ``$DEEPINTEREST_CACHE`` names a file."""
    value = os.environ.get("DEEPINTEREST_CACHE")
    root = Path(value).expanduser() if value else Path.home() / ".cache" / "deepinterest"
    if root.exists() and not root.is_dir():
        raise DeepInterestError(f"DEEPINTEREST_CACHE={root} is a file; it must name a folder "
                                "(the caches go in it: embeddings/ and mining.sqlite)")
    return root


def embedding_cache() -> Path:
    """The on-disk embedding cache of the tokenize stage and the embedding miner."""
    return cache_root() / "embeddings"


def answer_cache() -> Path:
    """The default answer cache of the LLM miners (SQLite)."""
    return cache_root() / "mining.sqlite"
