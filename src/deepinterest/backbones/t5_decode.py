"""Incremental decoding for :class:`~.t5.T5Backbone`: a per-beam self-attention cache.

Beam search over a ``P``-token SID calls the decoder ``P`` times. Re-reading
the whole prefix each time costs ``1 + 2 + ... + P`` token passes per beam;
with a cache of each beam's self-attention keys and values it costs ``P``.
This module runs the decoder of a ``transformers`` T5 with its own weights
(no copy) and such a cache, laid out for beam search:

- **Rows are (user, beam) pairs**, ``users x width`` of them, where the width
  is 1 before the first token and ``beam`` afterwards.
- **Cross-attention never copies the encoder output.** The keys and values of
  the encoder positions are one tensor per user ``[users, heads, L, d_kv]``;
  a user's ``width x n`` queries are folded into one query axis and attend to
  them in a single batched matmul.
- **Reordering is a gather.** After each step the search keeps some beams and
  drops others; :meth:`SelfAttentionCache.reorder` gathers the cached rows of
  the surviving parents (a few KB per user: at most ``P`` tokens).
- **The cache records the tokens it holds**, so :func:`decode` reuses it only
  for a prefix that extends them row by row, and otherwise recomputes from
  BOS. A caller that never reorders still gets exact results, only slower.

The arithmetic follows ``transformers``' T5 (RMS layer norm, unscaled dot
products, relative position bias from the first self-attention layer, no
position bias across attention, ReLU or gated feed-forward), in eval mode:
dropout is not applied. A test compares it with the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F


@dataclass
class SelfAttentionCache:
    """Each decoder layer's self-attention keys and values of the tokens read so far.

    ``tokens`` [rows, m] are those tokens (BOS first); ``keys[l]`` and
    ``values[l]`` are [rows, heads, m, d_kv]. Empty until the first decode.
    Mutable: :func:`decode` extends it and :meth:`reorder` regathers it.
    """

    tokens: torch.Tensor | None = None
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    def clear(self) -> None:
        self.tokens, self.keys, self.values = None, [], []

    def reorder(self, parents: torch.Tensor) -> None:
        """Keep, for each user, the rows of its chosen parent beams.

        ``parents`` [users, beam] indexes the ``width`` rows each user had at
        the last step; afterwards the cache has ``users x beam`` rows.
        """
        if self.tokens is None:
            return
        users = parents.shape[0]
        width = self.tokens.shape[0] // users
        rows = (parents + width * torch.arange(users, device=parents.device)[:, None]).reshape(-1)
        self.tokens = self.tokens.index_select(0, rows)
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]


def cached_length(cache: SelfAttentionCache, tokens: torch.Tensor) -> int:
    """How many leading ``tokens`` [rows, t] the cache holds (0 when it holds other rows)."""
    held = cache.tokens
    if held is None or held.shape[0] != tokens.shape[0] or held.shape[1] >= tokens.shape[1]:
        return 0
    return held.shape[1] if torch.equal(held, tokens[:, : held.shape[1]]) else 0


def decode(
    model: Any, tokens: torch.Tensor, cross: Any, encoder_mask: torch.Tensor, cache: SelfAttentionCache
) -> torch.Tensor:
    """Decoder output [rows, d_model] at the last of ``tokens`` [rows, t] (BOS first).

    ``cross`` holds each layer's encoder keys and values [users, heads, L, d_kv]
    (a ``DynamicCache``), ``encoder_mask`` [users, L] marks real positions; rows
    are user-major, ``rows / users`` per user. Reads only the tokens the cache
    does not hold and extends the cache with them.
    """
    past = cached_length(cache, tokens)
    if past == 0:
        cache.clear()
    new = tokens[:, past:]
    decoder = model.decoder
    hidden = decoder.embed_tokens(new)
    first = decoder.block[0].layer[0].SelfAttention
    bias = first.compute_bias(new.shape[1], past + new.shape[1], device=new.device, past_seen_tokens=past)
    if new.shape[1] > 1:  # several new tokens: each sees only its predecessors
        bias = bias + _causal(new.shape[1], past, hidden.dtype, new.device)
    cross_mask = _additive(encoder_mask, hidden.dtype)
    for layer, block in enumerate(decoder.block):
        hidden = hidden + _self_attention(block.layer[0], hidden, bias, cache, layer, past)
        kv = cross.layers[layer]
        hidden = hidden + _cross_attention(block.layer[1], hidden, kv.keys, kv.values, cross_mask)
        ff = block.layer[2]
        hidden = hidden + ff.DenseReluDense(ff.layer_norm(hidden))
    cache.tokens = tokens
    return decoder.final_layer_norm(hidden[:, -1])


def _heads(x: torch.Tensor, d_kv: int) -> torch.Tensor:
    """[rows, n, heads * d_kv] -> [rows, heads, n, d_kv]."""
    return x.view(x.shape[0], x.shape[1], -1, d_kv).transpose(1, 2)


def _self_attention(
    layer: Any, hidden: torch.Tensor, bias: torch.Tensor, cache: SelfAttentionCache, index: int, past: int
) -> torch.Tensor:
    attn = layer.SelfAttention
    normed = layer.layer_norm(hidden)
    d_kv = attn.key_value_proj_dim
    q, k, v = (_heads(proj(normed), d_kv) for proj in (attn.q, attn.k, attn.v))
    if past:
        k = torch.cat([cache.keys[index], k], dim=2)
        v = torch.cat([cache.values[index], v], dim=2)
    if index < len(cache.keys):
        cache.keys[index], cache.values[index] = k, v
    else:
        cache.keys.append(k)
        cache.values.append(v)
    weights = F.softmax((q @ k.transpose(-1, -2) * attn.scaling + bias).float(), dim=-1).to(q.dtype)
    out = (weights @ v).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
    return attn.o(out)


def _cross_attention(
    layer: Any, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """A user's ``width x n`` queries share one copy of its encoder keys and values."""
    attn = layer.EncDecAttention
    rows, n, _ = hidden.shape
    users, heads, _, d_kv = keys.shape
    width = rows // users
    q = attn.q(layer.layer_norm(hidden)).view(users, width, n, heads, d_kv)
    q = q.permute(0, 3, 1, 2, 4).reshape(users, heads, width * n, d_kv)
    weights = F.softmax((q @ keys.transpose(-1, -2) * attn.scaling + mask).float(), dim=-1).to(q.dtype)
    out = (weights @ values).view(users, heads, width, n, d_kv).permute(0, 2, 3, 1, 4)
    return attn.o(out.reshape(rows, n, heads * d_kv))


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[users, L] 1/0 -> additive [users, 1, 1, L]: 0 where real, the dtype's minimum where padding."""
    closed = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    closed = closed.masked_fill(mask == 0, torch.finfo(dtype).min)
    return closed[:, None, None, :]


def _causal(n: int, past: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive [1, 1, n, past + n]: new token i sees keys up to position past + i."""
    key = torch.arange(past + n, device=device)
    query = torch.arange(n, device=device)[:, None] + past
    mask = torch.zeros((n, past + n), dtype=dtype, device=device)
    return mask.masked_fill(key[None, :] > query, torch.finfo(dtype).min)[None, None]
