"""SASRec (Kang & McAuley, ICDM 2018): the non-generative baseline (docs/training.md).

A causal transformer over item indices: item embedding + learned position
embedding, ``layers`` pre-LN blocks with causal self-attention, a final
LayerNorm, and scores for every item by a dot product with the same item
embedding table (tied input/output, as in the paper).

Design decisions and departures from the paper:

- Loss: full-softmax cross-entropy over all items at every position (the
  trainer's job), not the paper's one-negative binary cross-entropy; this is
  what lifts SASRec above its published Beauty numbers (docs/results.md;
  Klenitskiy & Vasilev, RecSys 2023, "Turning Dross Into Gold Loss").
- Positions count from the right: histories are right-aligned (left padding,
  ``PAD_ITEM`` = -1, as :func:`~deepinterest.backbones.base.pad_histories`
  makes them), and the most recent item always has position ``max_len - 1``.
  This is exactly the paper's left padding to ``max_len``, but lets a batch
  be padded only to its own longest sequence (length bucketing) with the
  same embeddings.
- Padding: a padded key is never attended to; a padded query attends to
  itself only, so no attention row is empty (an all-masked row gives NaN).
  Outputs at padded positions are garbage that nothing reads.
- Blocks are our own (pre-LN, ``scaled_dot_product_attention``, GELU
  feed-forward) rather than the paper's post-LN with ReLU point-wise
  convolutions; pre-LN trains stably without warm-up.
- Embeddings start at N(0, 0.02) (GPT-style) instead of the paper's Xavier:
  with a tied output layer, small item vectors keep the initial softmax
  near uniform.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import PAD_ITEM

__all__ = ["SASRec", "attention_mask", "PAD_ITEM"]


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, T, T] mask (True = may attend) for right-aligned ``items`` [B, T].

    Query ``i`` sees keys ``j <= i`` that are real items; a padded query also
    sees itself so its softmax row is never empty.
    """
    steps = items.shape[1]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=items.device).tril()
    real_key = (items != PAD_ITEM)[:, None, :]  # [B, 1, T]
    eye = torch.eye(steps, dtype=torch.bool, device=items.device)
    return ((causal & real_key) | eye).unsqueeze(1)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.proj(self._attend(self.norm1(x), mask)))
        return x + self.drop(self.ffn(self.norm2(x)))

    def _attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, steps, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return out.transpose(1, 2).reshape(batch, steps, hidden)


class SASRec(nn.Module):
    """Item histories in, a score for every item at every position out."""

    def __init__(self, *, num_items: int, hidden: int = 64, layers: int = 2, heads: int = 1,
                 dropout: float = 0.5, max_len: int = 20) -> None:
        super().__init__()
        self.num_items, self.max_len = num_items, max_len
        # Row num_items is the padding row; it is never scored.
        self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=num_items)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[self.num_items].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, T, hidden] of right-aligned item indices [B, T] (-1 = padding)."""
        steps = items.shape[1]
        if steps > self.max_len:
            raise ValueError(f"sequence length {steps} exceeds max_len {self.max_len}; "
                             "keep the most recent max_len items")
        rows = torch.where(items == PAD_ITEM, torch.full_like(items, self.num_items), items)
        # The paper scales item embeddings by sqrt(hidden) before adding positions.
        x = self.item_emb(rows) * math.sqrt(self.item_emb.embedding_dim)
        positions = torch.arange(self.max_len - steps, self.max_len, device=items.device)
        x = self.drop(x + self.pos_emb(positions))
        mask = attention_mask(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores [..., num_items] of hidden states [..., hidden] (tied item table)."""
        return hidden @ self.item_emb.weight[: self.num_items].T

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean full-softmax cross-entropy over every labelled position (labels -1 = none)."""
        hidden = self(inputs)
        keep = labels != PAD_ITEM
        # Score real positions only: with a 12k-item catalogue the logits dominate the cost.
        return F.cross_entropy(self.logits(hidden[keep]), labels[keep])

    def score_last(self, items: torch.Tensor) -> torch.Tensor:
        """Scores [B, num_items] of the next item after right-aligned histories [B, T]."""
        return self.logits(self(items)[:, -1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
