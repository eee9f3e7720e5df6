"""TIGER-style T5 encoder-decoder over semantic IDs, trained from scratch.

The model is a :class:`transformers.T5ForConditionalGeneration` built from a
:class:`~transformers.T5Config` (no pretrained weights) whose vocabulary is
the SID token layout of :mod:`.base` (``PAD`` 0, ``EOS`` 1, ``BOS`` 2 as the
decoder start token, then one id block per SID position). It implements the
decode protocol of :class:`~.base.GenerativeBackbone` (``loss``, ``start``,
``expand``, ``step``, and ``reorder`` for its per-beam decoding cache, see
:mod:`.t5_decode`) plus ``save``/``load``.

Departures from TIGER (Rajput et al., 2023), each for CPU cost:

- **One encoder position per history item.** TIGER feeds every code token
  of every item (20 items x 4 codes = 80 positions); here an item is one
  position whose input vector is the *sum* of its P code-token embeddings,
  taken from the same shared table the decoder reads and writes. The
  encoder sees 20 positions instead of 80: measured on a 2-core machine, a
  4.6M-parameter T5 over 80 tokens took 3.75 s per batch of 256, far too
  slow for an epoch on a CPU. The sum keeps the hierarchy (items sharing a
  prefix share part of their vector) and, with a per-level id block, the
  code order is never ambiguous. ``code_positions=True`` gives TIGER's
  layout instead (every code token its own position, P times the encoder
  length), for comparison: at the Beauty T5 config (4 SID positions, so 80
  encoder positions instead of 20) it trains at 0.46x and beam-searches at
  0.66x the speed of the default (``benchmarks/bench_layout.py``, one thread;
  a whole epoch, 0.37x) and learned less per epoch (``docs/training.md``).
- **Smaller default model** (d_model 128, 2+2 layers, 4 heads x 32, ff 256)
  than TIGER's (4+4 layers, 6 heads x 64, ff 1024); the constructor takes
  TIGER's sizes when a GPU is available.
- **User token off by default.** TIGER prepends a user-id token hashed into
  2,000 buckets; ``user_buckets > 0`` turns that on, as an extra encoder
  position with its own embedding table.
- **Interest tokens** (``interest_tokens = K > 0``, from ``train.interest_tokens``):
  the K descriptors most present in the history (each history item's
  mined descriptors, summed with their weights; an :class:`~.base.InterestTable`)
  join the encoder as K extra positions after the most recent item, each
  with its own embedding. They are computed from the history itself, so a
  training example never sees interests of items after its target, and at
  validation they are aggregated as ``users.jsonl``'s are (over the items
  before the target), within the history the encoder reads. An
  idea of the paper's prompt, which conditions generation on the user's
  deep interests, in a form a T5 from scratch can read.
- Histories are right-aligned with left padding; T5's relative position
  bias only sees distances between real items, so the amount of padding
  does not change the output (batches may be trimmed to their longest row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DeepInterestError
from .base import (
    BOS,
    EOS,
    PAD,
    HistoryBatch,
    InterestTable,
    SIDCatalog,
    read_backbone_info,
    write_backbone_info,
)
from .dropout import use_packed_dropout
from .t5_decode import SelfAttentionCache, decode

KIND = "t5"
# Multiplicative hash (Knuth) so consecutive user positions land in distant buckets.
_HASH_MULT = 2654435761


@dataclass(frozen=True)
class T5State:
    """Per-user encoder outputs, their mask, the decoder's cross-attention keys/values,
    and the per-beam self-attention cache that decoding extends step by step.

    ``beam`` is how many beam rows each user's entry serves; the encoder side
    is never copied per beam (see :mod:`.t5_decode`).
    """

    hidden: torch.Tensor  # [users, L, d_model]
    mask: torch.Tensor  # [users, L] 1 = real position
    cross: Any  # transformers DynamicCache: per decoder layer keys, values [users, heads, L, d_kv]
    beam: int = 1
    cache: SelfAttentionCache = field(default_factory=SelfAttentionCache)  # shared by expand


class T5Backbone(nn.Module):
    """Encoder over summed item-code embeddings, decoder over SID tokens."""

    kind = KIND  # backbone.json's kind (the registry name checkpoints load with)

    def __init__(
        self,
        *,
        catalog: SIDCatalog,
        d_model: int = 128,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        heads: int = 4,
        d_kv: int = 32,
        d_ff: int = 256,
        dropout: float = 0.1,
        user_buckets: int = 0,
        id_embedding: bool = False,
        packed_dropout: bool = True,
        label_smoothing: float = 0.0,
        code_positions: bool = False,
        interest_tokens: int = 0,
        interest_vocabulary: int = 0,
        interests: InterestTable | None = None,
    ) -> None:
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        self.catalog = catalog
        self.options = dict(d_model=d_model, encoder_layers=encoder_layers,
                            decoder_layers=decoder_layers, heads=heads, d_kv=d_kv, d_ff=d_ff,
                            dropout=dropout, user_buckets=user_buckets,
                            id_embedding=id_embedding, packed_dropout=packed_dropout,
                            label_smoothing=label_smoothing, code_positions=code_positions)
        if interest_tokens:  # checkpoints without them keep the options they always had
            self.options |= dict(interest_tokens=interest_tokens,
                                 interest_vocabulary=interest_vocabulary)
        if code_positions and id_embedding:
            raise DeepInterestError("id_embedding adds a row per item position; with "
                                    "code_positions there is none, so use one or the other")
        if not 0.0 <= label_smoothing < 1.0:
            raise DeepInterestError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        config = T5Config(
            vocab_size=catalog.vocab_size, d_model=d_model, d_kv=d_kv, d_ff=d_ff,
            num_layers=encoder_layers, num_decoder_layers=decoder_layers, num_heads=heads,
            dropout_rate=dropout, pad_token_id=PAD, eos_token_id=EOS,
            decoder_start_token_id=BOS, feed_forward_proj="relu", use_cache=False,
        )
        self.model = streamline(T5ForConditionalGeneration(config), packed_dropout)
        self.user_embed = nn.Embedding(user_buckets, d_model) if user_buckets > 0 else None
        self.item_embed = None
        if id_embedding:  # zero-initialised: training starts from the code-only model
            self.item_embed = nn.Embedding(len(catalog.sids), d_model)
            nn.init.zeros_(self.item_embed.weight)
        # Registered buffers so .to(device) moves the lookup tables with the model.
        self.register_buffer("item_codes", catalog.sids + catalog.offsets, persistent=False)
        self.interests = self._interest_table(interests, interest_tokens, interest_vocabulary)
        self.interest_embed = (nn.Embedding(interest_vocabulary, d_model)
                               if self.interests is not None else None)

    def _interest_table(self, table: InterestTable | None, tokens: int,
                        vocabulary: int) -> InterestTable | None:
        if tokens == 0:
            return None
        if table is None:
            raise DeepInterestError("interest_tokens > 0 needs the items' interests (an "
                                    "InterestTable; `di train` builds it from the run's "
                                    "interests artifact)")
        items = len(self.catalog.sids)
        if table.ids.shape[0] != items or len(table.vocabulary) != vocabulary:
            raise DeepInterestError(
                f"the interest table has {table.ids.shape[0]} items and "
                f"{len(table.vocabulary)} descriptors; the catalogue has {items} items and "
                f"interest_vocabulary is {vocabulary}")
        if vocabulary < 1:
            raise DeepInterestError("interest tokens need a vocabulary of at least one "
                                    "descriptor: the interests artifact has none")
        self.register_buffer("interest_ids", table.ids.long(), persistent=False)
        self.register_buffer("interest_weights", table.weights.float(), persistent=False)
        return table

    # -- encoder input -------------------------------------------------------

    def item_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """[..., d_model]: sum of each item's code-token embeddings (plus its own row with
        ``id_embedding``, so items that share a prefix stay apart); padding (-1) -> zeros."""
        known = items.clamp(min=0)
        summed = self.model.shared(self.item_codes[known]).sum(-2)  # codes [..., P]
        if self.item_embed is not None:
            summed = summed + self.item_embed(known)
        return summed * (items >= 0).unsqueeze(-1).to(summed.dtype)

    @torch.no_grad()
    def init_code_embeddings(self, codebooks: list[torch.Tensor]) -> None:
        """Start each level's code embeddings from the quantizer's codewords.

        A residual quantizer reconstructs an item as the sum of its codewords,
        and the encoder reads an item as the sum of its code embeddings; with
        each codeword projected to ``d_model`` (top right-singular vectors of
        all codewords, a linear map, so sums are kept) an item's input vector
        starts as a projection of its content embedding instead of noise, and
        items with similar content start close. Scaled so the first level's
        rows have unit RMS, like T5's default init; levels past the codebooks
        (the collision suffix) are rescaled to the last codebook level's RMS so
        they stay small next to the content. The decoder reads and writes the
        same (tied) table.
        """
        init_code_rows(self.model.shared.weight, self.catalog.sizes,
                       self.catalog.offsets.tolist(), codebooks)

    def code_embeddings(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TIGER's layout: ``[B, L * P, d]`` embeddings of every code token of every history
        item, in order, and their mask (padding items give P masked zero rows)."""
        real = items >= 0
        codes = self.item_codes[items.clamp(min=0)]  # [B, L, P]
        embeds = self.model.shared(codes) * real[..., None, None].to(self.model.shared.weight.dtype)
        mask = real.unsqueeze(-1).expand_as(codes).long()
        return embeds.flatten(1, 2), mask.flatten(1, 2)

    def encoder_inputs(self, batch: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs_embeds`` [B, L, d] and ``attention_mask`` [B, L] for the encoder
        (L * P positions with ``code_positions``)."""
        if self.options["code_positions"]:
            embeds, mask = self.code_embeddings(batch.items)
        else:
            embeds, mask = self.item_embeddings(batch.items), (batch.items >= 0).long()
        if self.interest_embed is not None:
            tokens, present = self.history_interests(batch.items)
            embeds = torch.cat([embeds, self.interest_embed(tokens)
                                * present.unsqueeze(-1).to(embeds.dtype)], dim=1)
            mask = torch.cat([mask, present.long()], dim=1)
        if self.user_embed is not None:
            bucket = (batch.users.long() * _HASH_MULT) % self.user_embed.num_embeddings
            embeds = torch.cat([self.user_embed(bucket).unsqueeze(1), embeds], dim=1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return embeds, mask

    def history_interests(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``interest_tokens`` descriptor ids [B, K] with the most weight over each
        history's items, and whether each has any weight (an empty slot is masked).

        Appended after the most recent item, so left padding (and trimming it) never
        changes a relative distance the encoder sees.
        """
        known = items.clamp(min=0)
        ids = self.interest_ids[known]  # [B, L, width]
        weights = self.interest_weights[known] * ((items >= 0).unsqueeze(-1) & (ids >= 0))
        totals = torch.zeros(items.shape[0], self.interest_embed.num_embeddings,
                             device=items.device, dtype=weights.dtype)
        totals.scatter_add_(1, ids.clamp(min=0).flatten(1), weights.flatten(1))
        k = min(self.options["interest_tokens"], totals.shape[1])
        top, tokens = totals.topk(k, dim=1)
        return tokens, top > 0

    def encode(self, batch: HistoryBatch) -> T5State:
        embeds, mask = self.encoder_inputs(batch)
        hidden = self.model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return T5State(hidden, mask, cross=None)

    # -- decoder ---------------------------------------------------------------

    def _logits(self, state: T5State, decoder_input: torch.Tensor) -> torch.Tensor:
        out = self.model(encoder_outputs=(state.hidden,), attention_mask=state.mask,
                         decoder_input_ids=decoder_input, use_cache=False)
        return out.logits  # [rows, t, vocab]

    def target_tokens(self, targets: torch.Tensor) -> torch.Tensor:
        """SID tokens [B, P] of target item indices [B]."""
        return self.item_codes[targets]

    def teacher_logits(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Logits [B, P, vocab] of every SID position given the true prefix."""
        labels = self.target_tokens(targets)
        bos = torch.full_like(labels[:, :1], BOS)
        return self._logits(self.encode(batch), torch.cat([bos, labels[:, :-1]], dim=1))

    # token_logprobs takes [B, G] targets (G completions per history) and encodes each
    # history once; GRPO reads this flag rather than repeating the batch G times.
    grouped_logprobs = True

    def token_logprobs(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Log-probs [B, P] (or [B, G, P] for targets [B, G]) of the targets' SID tokens given
        the true prefix: a full-vocabulary log-softmax in fp32 (GRPO's sequence scores)."""
        state = self.encode(batch)
        group = targets.shape[1] if targets.dim() == 2 else 1
        if group > 1:  # the encoder ran once per history; its output serves the G completions
            state = T5State(state.hidden.repeat_interleave(group, 0),
                            state.mask.repeat_interleave(group, 0), cross=None)
        labels = self.target_tokens(targets.reshape(-1))
        bos = torch.full_like(labels[:, :1], BOS)
        logits = self._logits(state, torch.cat([bos, labels[:, :-1]], dim=1))
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1))
        return logp.squeeze(-1).reshape(*targets.shape, -1)

    def loss(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the P target SID tokens, full vocabulary (with
        ``label_smoothing`` = e: (1 - e) on the target token, e spread over the vocabulary)."""
        logits = self.teacher_logits(batch, targets)
        labels = self.target_tokens(targets)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               label_smoothing=self.options["label_smoothing"])

    def start(self, batch: HistoryBatch) -> T5State:
        return self.start_from(batch, BOS)

    def start_from(self, batch: HistoryBatch, start: int) -> T5State:
        """:meth:`start` for decoding from the ``start`` token (its decoder's cross-attention
        keys and values)."""
        state = self.encode(batch)
        cross = cross_attention_cache(self.decoder_host(start), state.hidden)
        return T5State(state.hidden, state.mask, cross)

    def decoder_host(self, start: int) -> Any:
        """What holds (as ``.decoder``, with ``.config``) the decoder that decodes from the
        ``start`` token: the T5 itself here."""
        return self.model

    def expand(self, state: T5State, beam: int) -> T5State:
        """No copy of the encoder side; the self-attention cache is shared, not copied."""
        return T5State(state.hidden, state.mask, state.cross, beam, state.cache)

    def step(self, state: T5State, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [rows, vocab] of the token after ``[BOS] + prefix``.

        Reads only the tokens the state's cache does not hold yet (one per
        step when the search calls :meth:`reorder`), with one copy of the
        encoder keys and values per user (:mod:`.t5_decode`). Made beam-20
        decoding several times faster than re-reading each prefix
        (``benchmarks/bench_decoding.py``).
        """
        return self.next_logprobs(state, prefix, BOS)

    def next_logprobs(self, state: T5State, prefix: torch.Tensor, start: int) -> torch.Tensor:
        """:meth:`step` with ``start`` as the decoder start token (log-probabilities over
        the model's whole vocabulary)."""
        rows = prefix.shape[0]
        first = torch.full((rows, 1), start, dtype=torch.long, device=prefix.device)
        tokens = torch.cat([first, prefix.long()], dim=1)
        last = decode(self.decoder_host(start), tokens, state.cross, state.mask, state.cache)
        return F.log_softmax(self.vocab_logits(last).float(), dim=-1)

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary of decoder outputs ``hidden`` [..., d_model]."""
        if getattr(self.model.config, "scale_decoder_outputs", True):  # as T5 forward does
            hidden = hidden * self.model.config.d_model ** -0.5
        return self.model.lm_head(hidden)

    def reorder(self, state: T5State, parents: torch.Tensor) -> None:
        """Let the self-attention cache follow the beams the search kept."""
        state.cache.reorder(parents)

    # -- persistence -----------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """``save_pretrained`` of the T5 (+ user embeddings) and ``backbone.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            self.model.save_pretrained(folder)
        from safetensors.torch import save_file

        for name, table in self._extra_tables().items():
            save_file({"weight": table.weight.detach().contiguous()},
                      str(folder / f"{name}.safetensors"))
        if self.interests is not None:
            self.interests.save(folder)
        write_backbone_info(folder, self.kind, self.options, self.catalog, **self._saved_info())

    @classmethod
    def load(cls, folder: str | Path, catalog: SIDCatalog) -> T5Backbone:
        """Rebuild a saved backbone; the catalogue must match the one it was trained on."""
        from transformers import T5ForConditionalGeneration

        folder = Path(folder)
        info = read_backbone_info(folder, cls.kind, catalog)
        backbone = cls(catalog=catalog, **cls._saved_inputs(folder, info))
        with _quiet_transformers():
            backbone.model = streamline(T5ForConditionalGeneration.from_pretrained(folder),
                                        info["options"].get("packed_dropout", True))
        from safetensors.torch import load_file

        for name, table in backbone._extra_tables().items():
            table.weight.data.copy_(load_file(str(folder / f"{name}.safetensors"))["weight"])
        return backbone

    def _saved_info(self) -> dict[str, Any]:
        """What ``backbone.json`` records besides kind, options and catalogue."""
        return {}

    @classmethod
    def _saved_inputs(cls, folder: Path, info: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments of a saved backbone besides its catalogue."""
        interests = (InterestTable.load(folder)
                     if info["options"].get("interest_tokens") else None)
        return {"interests": interests, **info["options"]}

    def _extra_tables(self) -> dict[str, nn.Embedding]:
        """Embedding tables outside the T5, saved beside it (one safetensors file each)."""
        tables = {"user_embed": self.user_embed, "item_embed": self.item_embed,
                  "interest_embed": self.interest_embed}
        return {name: table for name, table in tables.items() if table is not None}


@torch.no_grad()
def init_code_rows(weight: torch.Tensor, sizes: tuple[int, ...], offsets: list[int],
                   codebooks: list[torch.Tensor]) -> None:
    """:meth:`T5Backbone.init_code_embeddings` for the token rows of one SID layout
    (codes of position ``p`` at rows ``offsets[p]`` onwards) of the table ``weight``."""
    if len(codebooks) > len(sizes) or any(
            len(book) != size for book, size in zip(codebooks, sizes)):
        raise DeepInterestError(
            f"codebooks of sizes {[len(b) for b in codebooks]} do not match the catalogue's "
            f"SID positions {list(sizes)}")
    books = [b.detach().float().cpu() for b in codebooks]
    d_model = weight.shape[1]
    _, _, vh = torch.linalg.svd(torch.cat(books), full_matrices=False)
    proj = torch.zeros(books[0].shape[1], d_model)
    proj[:, : min(d_model, vh.shape[0])] = vh[:d_model].T
    scale = float((books[0] @ proj).pow(2).mean().rsqrt())
    rms = 1.0
    for level, size in enumerate(sizes):
        rows = slice(offsets[level], offsets[level] + size)
        if level < len(books):
            block = (books[level] @ proj) * scale
            rms = float(block.pow(2).mean().sqrt())
        else:
            block = weight[rows].float() * (rms / float(weight[rows].pow(2).mean().sqrt()))
        weight[rows] = block.to(weight.dtype)


class _FeedForward(nn.Module):
    """T5's ReLU feed-forward without its cast of the activations to ``wo``'s dtype.

    transformers casts them to the (fp32) weight's dtype before the output
    projection, and autocast casts them back to bf16: two copies of the
    widest activation per layer, 7% of a bf16 step at the Beauty config.
    Same modules and parameter names, so checkpoints are unchanged.
    """

    wi: nn.Linear
    wo: nn.Linear
    dropout: nn.Module

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.wo(self.dropout(torch.relu(self.wi(hidden))))


def streamline(model: Any, packed: bool = True) -> Any:
    """Faster training, same function: the feed-forward above on every ReLU layer, and
    (``packed``) :class:`~.dropout.PackedDropout` for every dropout (see :mod:`.dropout`)."""
    from transformers.models.t5.modeling_t5 import T5DenseActDense

    for module in model.modules():
        if type(module) is T5DenseActDense and isinstance(module.act, nn.ReLU):
            module.__class__ = _FeedForward
    if packed:
        use_packed_dropout(model)
    return model


def cross_attention_cache(model: Any, hidden: torch.Tensor) -> Any:
    """Each decoder layer's cross-attention keys and values of ``hidden``, computed once.

    Returned as a transformers ``DynamicCache``; T5 reuses a filled
    cross-attention cache instead of projecting the encoder output again.
    """
    from transformers import DynamicCache

    shape = (hidden.shape[0], hidden.shape[1], -1, model.config.d_kv)
    cache = DynamicCache()
    for layer, block in enumerate(model.decoder.block):
        attn = block.layer[1].EncDecAttention
        keys, values = attn.k(hidden).view(shape), attn.v(hidden).view(shape)
        cache.update(keys.transpose(1, 2), values.transpose(1, 2), layer)
    return cache


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No per-shard progress bars while saving checkpoints inside a training loop."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()




def count_parameters(module: nn.Module) -> int:
    """Distinct trainable parameters (tied embeddings counted once)."""
    seen = {id(p): p for p in module.parameters() if p.requires_grad}
    return sum(p.numel() for p in seen.values())
