"""The ``sids`` artifact (``di tokenize``): its stage name, files, and the catalogue
that reads it, with the token layout every backbone shares.

| file | content |
|---|---|
| ``sids.jsonl`` | ``{"item": id, "sid": [c1, ..., cL, suffix]}`` in item order |
| ``tokenizer.json`` | encoder, text fields, quantizer and interest settings, to reload |
| ``stats.json`` | collisions, usage, errors, seconds |

Token layout (one vocabulary for every backbone): ids 0-2 are special
(``PAD``, ``EOS``, ``BOS`` = decoder start), then one block of ids per SID
position: position ``p`` code ``c`` is token ``NUM_SPECIAL + offsets[p] + c``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DeepInterestError

TOKENIZE_STAGE = "tokenize"
SIDS_FILE, TOKENIZER_FILE, STATS_FILE = "sids.jsonl", "tokenizer.json", "stats.json"
PAD, EOS, BOS = 0, 1, 2
NUM_SPECIAL = 3


@dataclass(frozen=True)
class SIDCatalog:
    """Every item's SID and the mapping between SIDs, items and model tokens."""

    item_ids: list[str]
    sids: torch.Tensor  # [N, P] codes per position, P = levels + 1 (suffix last)
    sizes: tuple[int, ...]  # codes per position

    @property
    def positions(self) -> int:
        return len(self.sizes)

    @property
    def offsets(self) -> torch.Tensor:
        """Token id of code 0 at each position."""
        sizes = torch.tensor((0,) + self.sizes[:-1])
        return NUM_SPECIAL + torch.cumsum(sizes, 0)

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + sum(self.sizes)

    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """Token ids [..., P] of item indices [...]; padding (-1) maps to PAD tokens."""
        safe = items.clamp(min=0)
        tokens = self.sids.to(items.device)[safe] + self.offsets.to(items.device)
        return torch.where((items >= 0).unsqueeze(-1), tokens, torch.full_like(tokens, PAD))

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of the offset: [..., P] token ids -> codes."""
        return tokens - self.offsets.to(tokens.device)

    @classmethod
    def load(cls, sids_dir: str | Path) -> SIDCatalog:
        """Read the ``sids.jsonl`` of a ``di tokenize`` artifact."""
        path = Path(sids_dir) / SIDS_FILE
        if not path.is_file():
            raise DeepInterestError(f"{path}: not found; run `di tokenize` first")
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        sids = torch.tensor([r["sid"] for r in rows], dtype=torch.long)
        return cls([r["item"] for r in rows], sids, tuple(int(m) + 1 for m in sids.max(0).values))

    @classmethod
    def from_codes(cls, sids: torch.Tensor, sizes: tuple[int, ...] | None = None) -> SIDCatalog:
        """A catalogue from a code matrix (tests, synthetic examples)."""
        sids = torch.as_tensor(sids, dtype=torch.long)
        sizes = sizes or tuple(int(m) + 1 for m in sids.max(0).values)
        return cls([str(i) for i in range(len(sids))], sids, tuple(sizes))
