"""A Hugging Face causal LM (Qwen, Llama, SmolLM2) that reads and writes SID tokens.

The LM sees a short instruction and the user's history as SID token strings
(``<a_12><b_7><c_200><d_0>``, most recent last, optionally each followed by
its title) and generates the next item's SID, one token per position, as
MiniOneRec and LC-Rec do. It implements the decode protocol of
:class:`~.base.GenerativeBackbone`, so the shared constrained beam search
(:func:`~.decoding.constrained_beam_search`) drives it unchanged.

This module is the model; its parts live beside it: the SID tokens and the
initialisation of their rows in :mod:`.sid_vocab`, the prompts and their
left-padded layout in :mod:`.causal_lm_prompts`, the transformers cache API
in :mod:`.hf_cache`. docs/backbones-causal-lm.md is the user's guide.

Design decisions:

- **Catalogue layout out, full-vocabulary normalisation.** ``step`` takes the
  log-softmax over all LM tokens, then gathers the SID tokens into the
  catalogue layout of :mod:`.base` (``PAD``/``BOS`` get ``-inf``, ``EOS`` the
  LM's eos token). Mass the LM puts on words is lost, as in ``generate`` with
  a masking logits processor, so scores rank the same way.
- **Explicit positions.** Prompts are left-padded
  (:func:`~.causal_lm_prompts.pack`) and ``position_ids`` are
  ``cumsum(mask) - 1``: a row's positions do not depend on its padding,
  which keeps batched and single-row results equal.
- **KV cache per user, re-read prefix per step.** ``start`` runs the prompt
  once and keeps each layer's keys and values; ``expand`` repeats them per
  beam (row ``r`` -> user ``r // beam``). As the search reorders beams
  between steps, ``step`` never extends a shared cache: it builds a fresh
  cache from the stored prompt keys/values and feeds the whole prefix (at
  most ``P - 1`` tokens) on top. The state stays immutable and no beam
  bookkeeping is needed; the cost per step is copying the expanded prompt
  cache (:mod:`.hf_cache`). Models whose cache is not a plain per-layer
  key/value store fall back to recomputing prompt + prefix every step.
- **LoRA** through peft, imported lazily. New SID rows must train, so unless
  the ``lora`` dict says otherwise (``trainable_token_indices`` or
  ``modules_to_save``) the SID token ids go to peft's
  ``trainable_token_indices`` for the input embedding and, when untied, for
  ``lm_head``: only those rows train, not the whole matrix.
- **Saving.** Full fine-tuning: the model and tokenizer (``save_pretrained``).
  LoRA: the adapter (with its trained SID rows) plus a reference to the base
  (name/path and GGUF file), unless ``merge=True`` or the base was a bare
  config (random weights that cannot be rebuilt), which save merged weights.
  A merged checkpoint reloads with a fresh (zero) LoRA on top when it was
  trained with LoRA, so RL can go on with an adapter (DeepInterestGR, arXiv
  2602.18907, trains GRPO with LoRA).
- **Alignment tasks** (LC-Rec, MiniOneRec): title -> SID and SID -> title,
  teacher-forced, in :meth:`CausalLMBackbone.alignment_loss`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DeepInterestError, require
from ..hub import smollm2_path  # offline models live in hub.py; re-exported
from .base import HistoryBatch, SIDCatalog, read_backbone_info, write_backbone_info
from .causal_lm_prompts import (
    MAX_TITLE_TOKENS,
    alignment_prompts,
    clean_title,
    encode_prompts,
    history_prompt,
    pack,
)
from .hf_cache import KV, cache_from, cache_keyword, new_cache, plain_kv
from ..schemas.sids import item_sid_strings, sid_token_strings
from .sid_vocab import add_sid_tokens, catalog_lm_maps, embedding_targets

__all__ = ["CausalLMBackbone", "CausalLMState", "sid_token_strings", "smollm2_path"]

TITLES_FILE = "titles.json"
KIND = "causal-lm"


@dataclass(frozen=True)
class CausalLMState:
    """Per-row prompt (left-padded), its first-token scores and its KV cache."""

    ids: torch.Tensor  # [rows, L] LM token ids
    mask: torch.Tensor  # [rows, L] 1 = real token
    first: torch.Tensor  # [rows, catalog vocab] log-probs of the first SID token
    kv: KV | None  # per layer; None = recompute


class CausalLMBackbone(nn.Module):
    """A causal LM with SID tokens added, behind the decode protocol (module docstring)."""

    def __init__(self, *, catalog: SIDCatalog, model: str | Any, gguf_file: str | None = None,
                 tokenizer: Any = None, lora: dict[str, Any] | None = None,
                 with_titles: bool = False, titles: list[str] | None = None,
                 max_prompt_items: int = 20, init_noise: float = 1.0,
                 torch_dtype: str | torch.dtype | None = None):
        super().__init__()
        if with_titles and titles is None:
            raise DeepInterestError("with_titles=True needs `titles` (one per catalogue item)")
        if titles is not None and len(titles) != len(catalog.item_ids):
            raise DeepInterestError(f"got {len(titles)} titles for {len(catalog.item_ids)} items")
        self.catalog, self.titles, self.with_titles = catalog, titles, with_titles
        self.max_prompt_items, self.init_noise = max_prompt_items, init_noise
        dtype = _dtype(torch_dtype)
        self.options = {"model": model if isinstance(model, str) else None, "gguf_file": gguf_file,
                        "tokenizer": tokenizer if isinstance(tokenizer, str) else None,
                        "lora": lora, "with_titles": with_titles,
                        "max_prompt_items": max_prompt_items, "init_noise": init_noise,
                        "torch_dtype": str(dtype).removeprefix("torch.") if dtype else None}
        self.tokenizer, self.model = _load(model, gguf_file, tokenizer, dtype)
        self._cache_kw = cache_keyword(self.model)
        strings = sid_token_strings(catalog)
        sid_ids = add_sid_tokens(self.tokenizer, self.model, strings, init_noise=init_noise)
        self._build_maps(sid_ids)
        self._sid_text = item_sid_strings(catalog, strings)
        if lora is not None:
            self.apply_lora(lora)

    # -- vocabulary ------------------------------------------------------------

    def _build_maps(self, sid_ids: torch.Tensor) -> None:
        # Buffers, so that .to(device) moves them with the model; not saved (rebuilt on load).
        lm, valid = catalog_lm_maps(self.catalog, sid_ids, self.tokenizer.eos_token_id)
        self.register_buffer("lm_ids", lm, persistent=False)
        self.register_buffer("lm_valid", valid, persistent=False)
        self.sid_lm_ids = sid_ids.tolist()

    def apply_lora(self, lora: dict[str, Any]) -> None:
        """Wrap the model in a fresh peft LoRA (SID rows trainable unless ``lora`` says so)."""
        peft = require("peft", "peft", "LoRA fine-tuning")
        kwargs = dict(lora)
        for short, full in (("alpha", "lora_alpha"), ("dropout", "lora_dropout")):
            if short in kwargs:
                kwargs[full] = kwargs.pop(short)
        kwargs.setdefault("task_type", "CAUSAL_LM")
        if "trainable_token_indices" not in kwargs and "modules_to_save" not in kwargs:
            kwargs["trainable_token_indices"] = embedding_targets(self.model, self.sid_lm_ids)
        self.model = peft.get_peft_model(self.model, peft.LoraConfig(**kwargs))

    # -- prompts ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.lm_ids.device

    def prompt_text(self, history: list[int]) -> str:
        """The user message for a history of item indices (most recent last)."""
        history = history[-self.max_prompt_items:] if self.max_prompt_items else []
        titles = [self.titles[i] for i in history] if self.with_titles else None
        return history_prompt([self._sid_text[i] for i in history], titles)

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        """Token ids of user messages, ending where the answer's first token goes."""
        return encode_prompts(self.tokenizer, texts)

    def _history_prompts(self, items: torch.Tensor) -> list[list[int]]:
        rows = [[i for i in row if i >= 0] for row in items.tolist()]
        return self.encode_prompts([self.prompt_text(row) for row in rows])

    def _pack(self, prompts: list[list[int]],
              answers: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[n, L + A]`` ids and mask on the model's device (:func:`.causal_lm_prompts.pack`)."""
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0
        ids, mask = pack(prompts, answers, pad)
        return ids.to(self.device), mask.to(self.device)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, *, keep: int, cache: Any = None,
                 positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the last ``keep`` columns."""
        if positions is None:
            positions = (mask.cumsum(1) - 1).clamp(min=0)
        extra = {"use_cache": cache is not None}
        if cache is not None:
            extra[self._cache_kw] = cache
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         logits_to_keep=keep, **extra)
        return out.logits

    # -- training --------------------------------------------------------------

    def answer_logprobs(self, prompts: list[list[int]],
                        answers: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log-probs ``[n, A]`` of each answer's tokens, and their mask."""
        ids, mask = self._pack(prompts, answers)
        width = max(len(a) for a in answers)
        # The last width + 1 columns; column j predicts answer token j.
        logits = self._forward(ids, mask, keep=width + 1)[:, :-1]
        targets = ids[:, -width:]
        logprobs = logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return logprobs, mask[:, -width:].bool()

    def token_logprobs(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Log-probs ``[B, P]`` of the target items' SID tokens (full-vocabulary softmax)."""
        answers = self.lm_ids[self.catalog.item_tokens(targets.to(self.device))].tolist()
        logprobs, _ = self.answer_logprobs(self._history_prompts(batch.items), answers)
        return logprobs

    def loss(self, batch: HistoryBatch, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the P target SID tokens; prompt tokens carry no loss."""
        return -self.token_logprobs(batch, targets).mean()

    def alignment_loss(self, items: torch.Tensor) -> torch.Tensor:
        """Mean CE of two language-alignment tasks: title -> SID and SID -> title."""
        if self.titles is None:
            raise DeepInterestError("alignment_loss needs item titles: pass titles=[...]")
        sid_answers = self.lm_ids[self.catalog.item_tokens(items.to(self.device))].tolist()
        items = items.tolist()
        eos = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        raw = [self.titles[i] for i in items]
        titles = self.tokenizer([clean_title(t) for t in raw],
                                add_special_tokens=False)["input_ids"]
        prompts = self.encode_prompts(alignment_prompts(raw, [self._sid_text[i] for i in items]))
        logprobs, mask = self.answer_logprobs(
            prompts, sid_answers + [t[:MAX_TITLE_TOKENS] + eos for t in titles])
        return -logprobs[mask].mean()

    # -- decoding --------------------------------------------------------------

    def _to_catalog(self, logits: torch.Tensor) -> torch.Tensor:
        logprobs = logits.float().log_softmax(-1).index_select(1, self.lm_ids)
        return logprobs.masked_fill(~self.lm_valid, float("-inf"))

    @torch.no_grad()
    def start(self, batch: HistoryBatch) -> CausalLMState:
        """Run every prompt once; keep its keys/values and the first SID token's scores."""
        ids, mask = self._pack(self._history_prompts(batch.items))
        cache = new_cache(self.model)
        logits = self._forward(ids, mask, keep=1, cache=cache)
        return CausalLMState(ids, mask, self._to_catalog(logits[:, -1]), plain_kv(cache))

    def expand(self, state: CausalLMState, beam: int) -> CausalLMState:
        def rep(x: torch.Tensor) -> torch.Tensor:
            return x.repeat_interleave(beam, dim=0)

        kv = None if state.kv is None else tuple((rep(k), rep(v)) for k, v in state.kv)
        return CausalLMState(rep(state.ids), rep(state.mask), rep(state.first), kv)

    @torch.no_grad()
    def step(self, state: CausalLMState, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probs ``[rows, catalog.vocab_size]`` of the SID token after ``prefix``."""
        if prefix.shape[0] != state.ids.shape[0]:
            raise DeepInterestError(f"step got {prefix.shape[0]} prefix rows for a state of "
                                    f"{state.ids.shape[0]}; call expand(state, beam) first")
        if prefix.shape[1] == 0:
            return state.first
        tokens = self.lm_ids[prefix.long()]
        mask = torch.cat([state.mask, torch.ones_like(tokens)], dim=1)
        if state.kv is None:  # fallback: the whole prompt again
            logits = self._forward(torch.cat([state.ids, tokens], 1), mask, keep=1)
            return self._to_catalog(logits[:, -1])
        after = state.mask.sum(1, keepdim=True)  # next position of each row
        positions = after + torch.arange(tokens.shape[1], device=self.device)
        logits = self._forward(tokens, mask, keep=1, cache=cache_from(state.kv),
                               positions=positions)
        return self._to_catalog(logits[:, -1])

    # -- persistence -----------------------------------------------------------

    def save(self, folder: str | Path, *, merge: bool = False) -> None:
        """Model (or LoRA adapter) + tokenizer + ``backbone.json`` (module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lora = self.options["lora"] is not None
        adapter = lora and not merge and self.options["model"] is not None
        if adapter:
            self.model.save_pretrained(folder, save_embedding_layers=False)
        elif lora:
            import copy

            copy.deepcopy(self.model).merge_and_unload().save_pretrained(folder)
        else:
            self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        if self.titles is not None:  # the checkpoint then loads without the dataset
            (folder / TITLES_FILE).write_text(json.dumps(self.titles) + "\n", encoding="utf-8")
        write_backbone_info(folder, KIND, self.options, self.catalog,
                            format="adapter" if adapter else "full")

    @classmethod
    def load(cls, folder: str | Path, catalog: SIDCatalog, *,
             titles: list[str] | None = None) -> CausalLMBackbone:
        """Rebuild a saved backbone; the catalogue must match the one it was trained on."""
        folder = Path(folder)
        info = read_backbone_info(folder, KIND, catalog)
        options = dict(info["options"])
        lora = options.pop("lora")
        if titles is None and (folder / TITLES_FILE).is_file():
            titles = json.loads((folder / TITLES_FILE).read_text(encoding="utf-8"))
        if info["format"] == "full":  # model and tokenizer (with its SID tokens) are here
            options.update(model=str(folder), gguf_file=None, tokenizer=None)
            backbone = cls(catalog=catalog, titles=titles, **options)
            if lora is not None:
                backbone.apply_lora(lora)
        else:  # rebuild the base exactly as for training, then put the adapter on
            peft = require("peft", "peft", "LoRA fine-tuning")
            backbone = cls(catalog=catalog, titles=titles, **options)
            backbone.model = peft.PeftModel.from_pretrained(backbone.model, str(folder),
                                                            is_trainable=True)
        backbone.options["lora"] = lora
        return backbone


# -- helpers -------------------------------------------------------------------


def _dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise DeepInterestError(f"torch_dtype {value!r} is not a torch dtype (e.g. 'bfloat16')")
    return dtype


def _load(model: str | Any, gguf_file: str | None, tokenizer: Any,
          dtype: torch.dtype | None) -> tuple[Any, Any]:
    """Tokenizer and model from a name/path (optionally GGUF) or a config (random weights)."""
    import transformers

    if gguf_file is not None:
        require("gguf", "gguf", "Loading GGUF checkpoints")
    if isinstance(model, transformers.PretrainedConfig):
        if tokenizer is None:
            raise DeepInterestError(
                "a model built from a config needs `tokenizer=` (a tokenizer object or path)")
        lm = transformers.AutoModelForCausalLM.from_config(model)
        lm = lm.to(dtype) if dtype else lm
    else:
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        # No dtype given: transformers' default (the checkpoint's own dtype in transformers 5).
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            model, **kwargs, **({"dtype": dtype} if dtype else {}))
        tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model, **kwargs)
    if isinstance(tokenizer, str):
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer, lm
