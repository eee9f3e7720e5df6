"""What every generative backbone shares: the SID catalogue, batches, the decode protocol.

Token layout (one vocabulary for every backbone): ids 0-2 are special
(``PAD``, ``EOS``, ``BOS`` = decoder start), then one block of ids per SID
position: position ``p`` code ``c`` is token ``NUM_SPECIAL + offsets[p] + c``.
Giving each level its own block (rather than sharing code ids across levels)
lets a model tell "code 7 at level 1" from "code 7 at level 2" with no
position trick, and makes the per-step trie mask a slice of the vocabulary.

Decode protocol: a backbone turns a batch of histories into a per-user
``state`` once (``start``), repeats it for the beams (``expand``), and scores
the next SID token for every row of a prefix matrix (``step``). Rows are
grouped by user (row ``r`` belongs to user ``r // beam``), so a backbone
whose state is per user (an encoder output) never needs to reorder it as
beams move. ``step`` must be exact for any prefix it is given; a backbone
that caches per-beam work between steps may also define ``reorder(state,
parents)``, which the search calls after each step with the parent beam of
every surviving beam (``parents`` [users, beam]), so the cache can follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import DeepInterestError
# The sids artifact's catalogue and the token layout live below every stage (rewards and
# training read them without importing backbones); re-exported here for backbones.
from ..schemas.sids import BOS, EOS, NUM_SPECIAL, PAD, SIDCatalog  # noqa: F401

BACKBONE_FILE = "backbone.json"  # every saved backbone: kind, options, catalogue sizes
PAD_ITEM = -1  # padding in item-index history tensors


def catalog_signature(catalog: SIDCatalog) -> dict[str, Any]:
    """What a checkpoint records about the catalogue it was trained on."""
    return {"items": len(catalog.item_ids), "sizes": list(catalog.sizes)}


def write_backbone_info(folder: Path, kind: str, options: dict[str, Any], catalog: SIDCatalog,
                        **extra: Any) -> None:
    """``backbone.json``: the kind, constructor options and catalogue of a saved backbone."""
    info = {"kind": kind, **extra, "options": options, "catalog": catalog_signature(catalog)}
    (Path(folder) / BACKBONE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_backbone_info(folder: Path, kind: str, catalog: SIDCatalog) -> dict[str, Any]:
    """``backbone.json`` of a saved backbone, checked for its kind and catalogue."""
    path = Path(folder) / BACKBONE_FILE
    if not path.is_file():
        raise DeepInterestError(f"{path}: not found; is {folder} a saved backbone?")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("kind") != kind:
        raise DeepInterestError(f"{path}: kind {info.get('kind')!r}, expected {kind!r}")
    expected = catalog_signature(catalog)
    if info["catalog"] != expected:
        raise DeepInterestError(
            f"{path}: trained on a catalogue with {info['catalog']}, given one with {expected}; "
            "load it with the sids artifact it was trained on")
    return info


@dataclass(frozen=True)
class InterestTable:
    """Each item's mined descriptors as ids into a shared vocabulary (interest tokens).

    ``ids`` [items, width] (-1 pads) and ``weights`` [items, width] follow the
    catalogue's item order; ``vocabulary`` names each id
    (:func:`~deepinterest.schemas.interests.descriptor_table`).
    """

    vocabulary: tuple[str, ...]
    ids: torch.Tensor
    weights: torch.Tensor

    FILE = "interest_table.safetensors"
    VOCABULARY_FILE = "interest_vocabulary.json"

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"ids": self.ids.contiguous(), "weights": self.weights.contiguous()},
                  str(folder / self.FILE))
        (folder / self.VOCABULARY_FILE).write_text(json.dumps(list(self.vocabulary)) + "\n",
                                                   encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> InterestTable:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / cls.FILE))
        vocabulary = json.loads((folder / cls.VOCABULARY_FILE).read_text(encoding="utf-8"))
        return cls(tuple(vocabulary), tensors["ids"], tensors["weights"])


@dataclass(frozen=True)
class HistoryBatch:
    """Users' recent items as item indices, right-aligned (most recent last), PAD_ITEM = -1."""

    items: torch.Tensor  # [B, H]
    users: torch.Tensor  # [B] user positions (for optional user tokens)

    def to(self, device: torch.device | str) -> HistoryBatch:
        return HistoryBatch(self.items.to(device), self.users.to(device))

    @property
    def size(self) -> int:
        return self.items.shape[0]


def pad_histories(histories: list[tuple[int, ...]], length: int) -> torch.Tensor:
    """Right-aligned [B, length] item tensor, -1 padded on the left, most recent kept."""
    out = torch.full((len(histories), length), PAD_ITEM, dtype=torch.long)
    for row, hist in enumerate(histories):
        hist = hist[-length:]
        if hist:
            out[row, length - len(hist):] = torch.tensor(hist, dtype=torch.long)
    return out


@runtime_checkable
class GenerativeBackbone(Protocol):
    """SID histories in, next-SID token scores out (arXiv 2602.18907; docs/training.md).

    Every member declared here is one the SFT trainer calls: the decode
    protocol, plus ``save``/``load`` for checkpoints and ``catalog``.
    """

    catalog: SIDCatalog

    def save(self, folder: str | Path) -> None:
        """Write everything ``load`` needs (weights, options, ``backbone.json``) to ``folder``."""

    @classmethod
    def load(cls, folder: str | Path, catalog: SIDCatalog) -> GenerativeBackbone:
        """Rebuild a saved backbone; ``catalog`` must match the one it was trained on."""

    def loss(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target items' SID tokens (training)."""

    def start(self, batch: HistoryBatch) -> Any:
        """Per-user decoding state (e.g. encoder outputs) for ``batch``."""

    def expand(self, state: Any, beam: int) -> Any:
        """The state with each user's entry repeated ``beam`` times (row r -> user r // beam)."""

    def step(self, state: Any, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [rows, vocab_size] of the next token after ``prefix`` [rows, t]
        (``t`` = 0 at the first step; prefix holds SID tokens, no BOS).

        Optional companion: ``reorder(state, parents)`` (see the module docstring)."""
