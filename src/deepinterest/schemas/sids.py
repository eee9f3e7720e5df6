"""The ``sids`` artifact (``di tokenize``): its stage name, files, and the catalogue
that reads it, with the token layout every backbone shares.

| file | content |
|---|---|
| ``sids.jsonl`` | ``{"item": id, "sid": [c1, ..., cL, suffix]}`` in item order |
| ``tokenizer.json`` | encoder, text fields, quantizer and interest settings, to reload |
| ``quantizer/`` | the fitted quantizer (its codebooks), reloaded by :func:`load_quantizer` |
| ``stats.json`` | codebook and suffix sizes, collisions, usage, errors, seconds |

Token layout (one vocabulary for every backbone): ids 0-2 are special
(``PAD``, ``EOS``, ``BOS`` = decoder start), then one block of ids per SID
position: position ``p`` code ``c`` is token ``NUM_SPECIAL + offsets[p] + c``.
A block has as many ids as the quantizer's codebook at that position (and the
largest collision group, for the suffix), as ``stats.json`` records them, so
a code that no item uses still has its token. In text (a causal LM's vocabulary,
a reward's completion) position ``p`` code ``c`` is spelled ``<a_c>``, ``<b_c>``,
... (``<p26_c>`` past ``z``): :func:`sid_token_strings`.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DeepInterestError

TOKENIZE_STAGE = "tokenize"
SIDS_FILE, TOKENIZER_FILE, STATS_FILE = "sids.jsonl", "tokenizer.json", "stats.json"
QUANTIZER_DIR = "quantizer"
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
        seen = tuple(int(m) + 1 for m in sids.max(0).values)
        sizes = _saved_sizes(Path(sids_dir)) or seen
        if len(sizes) != len(seen) or any(s < n for s, n in zip(sizes, seen)):
            raise DeepInterestError(f"{path}: its codes do not fit the sizes {list(sizes)} of "
                                    f"{STATS_FILE}; the artifact is damaged: run `di tokenize` "
                                    "again")
        return cls([r["item"] for r in rows], sids, sizes)

    @classmethod
    def from_codes(cls, sids: torch.Tensor, sizes: tuple[int, ...] | None = None) -> SIDCatalog:
        """A catalogue from a code matrix (tests, synthetic examples)."""
        sids = torch.as_tensor(sids, dtype=torch.long)
        sizes = sizes or tuple(int(m) + 1 for m in sids.max(0).values)
        return cls([str(i) for i in range(len(sids))], sids, tuple(sizes))


def _saved_sizes(folder: Path) -> tuple[int, ...] | None:
    """Codes per position as the tokenize stage recorded them (None: an artifact without
    them, whose sizes are then read off the largest code at each position)."""
    try:
        stats = json.loads((folder / STATS_FILE).read_text(encoding="utf-8"))
        return (*map(int, stats["codebook_sizes"]), int(stats["suffix_size"]))
    except (FileNotFoundError, KeyError, TypeError, ValueError):
        return None


def sid_token_strings(catalog: SIDCatalog) -> list[str]:
    """The text spelling of every SID token, in catalogue order (position, code)."""
    names = list(string.ascii_lowercase)
    return [f"<{names[p] if p < len(names) else f'p{p}'}_{c}>"
            for p, size in enumerate(catalog.sizes) for c in range(size)]


def item_sid_strings(catalog: SIDCatalog, strings: list[str]) -> list[str]:
    """Each item's SID written as one string (``<a_12><b_7><c_200><d_0>``), in item order."""
    tokens = catalog.item_tokens(torch.arange(len(catalog.item_ids))) - NUM_SPECIAL
    return ["".join(strings[t] for t in row) for row in tokens.tolist()]


def load_quantizer(sids_dir: str | Path) -> Any:
    """The fitted quantizer of a ``sids`` artifact, through the registry (its codebooks
    start a backbone's code embeddings; cold start encodes new items with it)."""
    from ..registry import get

    folder = Path(sids_dir)
    try:
        spec = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeepInterestError(f"{folder}: no {TOKENIZER_FILE}; is this a `di tokenize` "
                                "output folder?") from None
    return get("quantizers", spec["quantizer"]).load(folder / QUANTIZER_DIR)
