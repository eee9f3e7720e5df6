"""SID tokens inside a Hugging Face tokenizer and model: names, new rows, id maps.

Used by :class:`~.causal_lm.CausalLMBackbone`; anything here works on a plain
``transformers`` tokenizer and model.

Design decisions:

- **One new token per (position, code)**, spelled as :mod:`..schemas.sids`
  spells SID tokens: ``<a_c>`` for position 0, ``<b_c>`` for 1, ... (``<p26_c>``
  past ``z``). They are ordinary added tokens, so the
  tokenizer keeps each one whole inside any text, and the model gets new
  embedding rows (and ``lm_head`` rows when they are not tied).
- **New rows start around the mean of the existing rows** (Hewitt, 2021,
  "Initializing new word embeddings"): a row drawn from the model's own init
  has a norm unlike any trained one and, in ``lm_head``, can swamp or vanish
  from the softmax; centring on the mean gives every new token about the
  average logit, so the pretrained model's distribution over its old tokens
  barely moves before fine-tuning. Departure from "exactly the mean": we add
  Gaussian noise with the existing rows' per-dimension spread (Hewitt's
  N(mu, Sigma), diagonal; ``init_noise`` scales it, 0 = exact mean). With
  identical rows every SID in a history looks the same, so the model must
  first break that symmetry through gradients: a tiny Llama with exact-mean
  rows ended 80 steps at loss 0.74 predicting one item for every user, with
  the noise at loss 0.003 and every user right. The noise comes from a fixed
  seed, so a base model plus its adapter rebuild the same weights.
- **Catalogue layout.** The backbone protocol (:mod:`.base`) speaks
  catalogue token ids (``PAD``/``EOS``/``BOS``, then one block per SID
  position); :func:`catalog_lm_maps` maps each to its LM token id, with the
  LM's eos token for ``EOS`` and ``PAD``/``BOS`` marked unsayable.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DeepInterestError
from .base import BOS, EOS, NUM_SPECIAL, PAD, SIDCatalog

INIT_SEED = 0  # fixed: rebuilding a base for its adapter must give the same new rows


def add_sid_tokens(tokenizer: Any, model: Any, strings: list[str], *,
                   init_noise: float) -> torch.Tensor:
    """Add the SID tokens (once), grow the embeddings, initialise the new rows; their LM ids."""
    known, vocab = len(tokenizer), tokenizer.get_vocab()
    tokenizer.add_tokens([s for s in strings if s not in vocab])
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(strings), dtype=torch.long)
    if len(set(ids.tolist())) != len(strings):
        raise DeepInterestError("the tokenizer maps two SID tokens to one id; "
                                "is a SID token string already a word of this tokenizer?")
    rows = model.get_input_embeddings().weight.shape[0]
    if int(ids.max()) >= rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    # New: added just now, or already in the tokenizer but without a row in this model.
    new = ids[(ids >= known) | (ids >= rows)]
    if len(new):
        # Old rows: real tokens only (not a padded vocabulary's unused tail, not SIDs).
        old = torch.arange(min(known, rows))
        mean_init(model, new, old[~torch.isin(old, ids)], init_noise)
    return ids


@torch.no_grad()
def mean_init(model: Any, new: torch.Tensor, old_rows: torch.Tensor, init_noise: float) -> None:
    """Rows ``new`` := mean of ``old_rows`` + seeded noise of their per-dimension spread."""
    generator = torch.Generator().manual_seed(INIT_SEED)
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    for layer in {id(m): m for m in (inputs, outputs) if m is not None}.values():  # tied: once
        old = layer.weight[old_rows.to(layer.weight.device)].float()
        noise = torch.randn(len(new), old.shape[1], generator=generator).to(old.device)
        rows = old.mean(0) + init_noise * old.std(0) * noise
        layer.weight[new.to(old.device)] = rows.to(layer.weight.dtype)


def catalog_lm_maps(catalog: SIDCatalog, sid_ids: torch.Tensor,
                    eos_token_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Catalogue token id -> LM token id, and which catalogue ids the LM can say."""
    lm = torch.zeros(catalog.vocab_size, dtype=torch.long)
    lm[NUM_SPECIAL:] = sid_ids
    valid = torch.ones(catalog.vocab_size, dtype=torch.bool)
    valid[[PAD, BOS]] = False
    lm[EOS], valid[EOS] = (eos_token_id, True) if eos_token_id is not None else (0, False)
    return lm, valid


def embedding_targets(model: Any, sid_ids: list[int]) -> dict[str, list[int]]:
    """peft ``trainable_token_indices``: the SID rows of the embedding (and untied lm_head)."""
    names = {id(m): n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    targets = {names[id(inputs)]: sid_ids}
    if outputs is not None and outputs.weight is not inputs.weight:
        targets[names[id(outputs)]] = sid_ids
    return targets
