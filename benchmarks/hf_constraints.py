"""The SID trie constraint for Hugging Face ``generate``: the baselines of bench_decoding.

The toolkit decodes with its own
:func:`~deepinterest.backbones.decoding.constrained_beam_search`; these
constraints exist to compare it with ``generate`` on the same model
(``benchmarks/bench_decoding.py``, docs/training.md) and are tested against
it in ``tests/backbones/test_decoding.py``, so they live beside the benchmark
rather than in the package.

Two ways to keep ``model.generate(num_beams=...)`` on valid SIDs:

- :class:`SIDTrieLogitsProcessor`, vectorised: each call re-walks every row's
  generated SID tokens through the tensor trie (at most ``P`` gathers over all
  rows) and masks the scores with one ``masked_fill``. Re-walking keeps it
  stateless, so it is correct however ``generate`` reorders beams, and costs
  little since a SID is only ``P`` tokens long.
- :func:`make_prefix_allowed_tokens_fn`, the per-row Python callback that
  ``generate(prefix_allowed_tokens_fn=...)`` expects: the baseline a user
  would write (a dict from token prefix to allowed tokens).

Both see ``input_ids`` as ``prompt_length`` leading tokens that are not SID
tokens (1 for an encoder-decoder: the decoder start token ``BOS``; the prompt
length for a left-padded decoder-only model), then the generated SID tokens.
Once ``P`` SID tokens are out only ``eos_token_id`` is allowed, so a caller
that sets ``max_new_tokens`` above ``P`` still gets complete SIDs.

Settings that make ``generate`` return the same ranking and scores as
:func:`~deepinterest.backbones.decoding.constrained_beam_search`:
``max_new_tokens=P`` (every hypothesis then ends at the same length),
``length_penalty=0.0`` (``sequences_scores`` are then plain summed
log-probs; any length penalty divides all of them by the same ``P**lp`` and
keeps the order), ``do_sample=False``. ``generate`` applies logits processors
to log-softmax scores, so, like our search, it does not renormalise over the
allowed tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LogitsProcessor

from deepinterest.backbones.base import EOS, SIDCatalog
from deepinterest.backbones.trie import SIDTrie
from deepinterest.errors import DeepInterestError


class SIDTrieLogitsProcessor(LogitsProcessor):
    """Set the scores of tokens that leave the SID trie to ``-inf``."""

    def __init__(
        self, trie: SIDTrie, catalog: SIDCatalog, *, prompt_length: int = 1, eos_token_id: int = EOS
    ):
        if tuple(catalog.sizes) != trie.sizes:
            raise DeepInterestError(
                f"catalogue codebook sizes {tuple(catalog.sizes)} differ from the trie's {trie.sizes}"
            )
        self.trie = trie
        self.offsets = catalog.offsets
        self.vocab_size = catalog.vocab_size
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = self.allowed_tokens(input_ids, scores.shape[-1])
        return scores.masked_fill(~allowed, float("-inf"))

    def allowed_tokens(self, input_ids: torch.Tensor, vocab: int) -> torch.Tensor:
        """Bool [rows, vocab]: the tokens that keep each row inside the trie."""
        t = input_ids.shape[1] - self.prompt_length
        if t < 0 or vocab < self.vocab_size:
            raise DeepInterestError(
                f"input_ids of length {input_ids.shape[1]} and vocabulary {vocab} do not fit a "
                f"prompt of {self.prompt_length} tokens and a SID vocabulary of {self.vocab_size}"
            )
        if self.trie.device != input_ids.device:  # move once, not per call
            self.trie, self.offsets = self.trie.to(input_ids.device), self.offsets.to(input_ids.device)
        trie, offsets = self.trie, self.offsets
        allowed = torch.zeros((input_ids.shape[0], vocab), dtype=torch.bool, device=input_ids.device)
        if t >= trie.positions:
            allowed[:, self.eos_token_id] = True
            return allowed
        nodes = trie.walk(input_ids[:, self.prompt_length :] - offsets[:t])
        # Rows that already left the trie (never produced under this processor) get no allowed token.
        codes = trie.allowed_mask(t, nodes.clamp(min=0)) & (nodes >= 0).unsqueeze(-1)
        start = int(offsets[t])
        allowed[:, start : start + trie.sizes[t]] = codes
        return allowed


def make_prefix_allowed_tokens_fn(
    trie: SIDTrie, catalog: SIDCatalog, *, prompt_length: int = 1, eos_token_id: int = EOS
) -> Callable[[int, torch.Tensor], list[int]]:
    """The per-row callback for ``generate(prefix_allowed_tokens_fn=...)`` (the usual baseline).

    ``trie`` is taken for symmetry with :class:`SIDTrieLogitsProcessor` and to
    check the catalogue; the callback itself uses a plain dict, as users write it.
    """
    if tuple(catalog.sizes) != trie.sizes:
        raise DeepInterestError(
            f"catalogue codebook sizes {tuple(catalog.sizes)} differ from the trie's {trie.sizes}"
        )
    table = _prefix_table(catalog)
    positions = catalog.positions

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        prefix = tuple(input_ids[prompt_length:].tolist())
        if len(prefix) >= positions:
            return [eos_token_id]
        return table.get(prefix, [])

    return allowed


def _prefix_table(catalog: SIDCatalog) -> dict[tuple[int, ...], list[int]]:
    """Token prefix -> sorted next tokens, for every prefix of every SID."""
    nexts: dict[tuple[int, ...], set[int]] = {}
    for tokens in catalog.item_tokens(torch.arange(len(catalog.item_ids))).tolist():
        for p in range(len(tokens)):
            nexts.setdefault(tuple(tokens[:p]), set()).add(tokens[p])
    return {prefix: sorted(tokens) for prefix, tokens in nexts.items()}
