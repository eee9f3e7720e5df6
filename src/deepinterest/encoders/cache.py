"""On-disk embedding cache keyed by the encoder's identity and each text.

A cache folder holds one sub-folder per encoder identity (hashed) with
``keys.json`` (sha256 of each text, in row order) and ``vectors.npy``. A rerun
embeds only texts it has not seen; the files are replaced atomically, so an
interrupted run never leaves a cache whose rows and keys disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from ..progress import bar as tqdm

from ..artifacts import atomic_write_text
from .base import TextEncoder


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, folder: str | Path, identity: str):
        self.folder = Path(folder) / _sha(identity)[:16]
        self.identity = identity
        self._keys: list[str] = []
        self._vectors: np.ndarray | None = None
        if (self.folder / "keys.json").is_file():
            self._keys = json.loads((self.folder / "keys.json").read_text("utf-8"))["keys"]
            self._vectors = np.load(self.folder / "vectors.npy")
        self._row = {k: i for i, k in enumerate(self._keys)}

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, texts: list[str]) -> tuple[list[int], np.ndarray | None]:
        """Rows for cached texts (-1 if missing) and the stored matrix."""
        return [self._row.get(_sha(t), -1) for t in texts], self._vectors

    def add(self, texts: list[str], vectors: np.ndarray, *, save: bool = True) -> None:
        new = [(i, _sha(t)) for i, t in enumerate(texts) if _sha(t) not in self._row]
        if not new:
            return
        rows = vectors[[i for i, _ in new]].astype(np.float32)
        self._vectors = rows if self._vectors is None else np.concatenate([self._vectors, rows])
        for _, key in new:
            self._row[key] = len(self._keys)
            self._keys.append(key)
        if save:
            self.save()

    def save(self) -> None:
        if self._vectors is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npy")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, self._vectors)
        os.replace(tmp, self.folder / "vectors.npy")
        atomic_write_text(self.folder / "keys.json",
                          json.dumps({"identity": self.identity, "keys": self._keys}))


def embed_texts(encoder: TextEncoder, texts: list[str], *, cache_dir: str | Path | None = None,
                batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Embed ``texts`` (float32 [N, D]), reusing and filling the cache when given."""
    cache = EmbeddingCache(cache_dir, encoder.identity) if cache_dir is not None else None
    unique = list(dict.fromkeys(texts))
    rows, stored = cache.lookup(unique) if cache is not None else ([-1] * len(unique), None)
    todo = [t for t, r in zip(unique, rows) if r < 0]
    fresh: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(todo), desc="embedding", unit="text", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        vectors = encoder.encode(chunk)
        fresh.update(zip(chunk, vectors))
        if cache is not None:  # save now and then, so an interrupted run keeps most of its work
            cache.add(chunk, vectors, save=(start // batch_size) % 8 == 7)
        bar.update(len(chunk))
    bar.close()
    if cache is not None and todo:
        cache.save()
    lookup = {t: stored[r] for t, r in zip(unique, rows) if r >= 0}
    lookup.update(fresh)
    if not lookup:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([lookup[t] for t in texts]).astype(np.float32)
