"""Mining through the OpenAI chat completions API, or any server that speaks it.

``registry.create("miners", "openai", model="gpt-4o-mini")`` reads the key
from ``OPENAI_API_KEY``. With ``base_url`` the same miner talks to any
OpenAI-compatible server: a vLLM or llama.cpp server, Ollama, or the
OpenAI-compatible endpoints of hosted models (docs/miners-api.md). The answer
is asked for as strict structured output (``response_format`` with the task's
JSON schema, :func:`~.schema.json_schema`), the strict JSON answers
DeepInterestGR (arXiv 2602.18907) asks for; ``response_format="json_object"``
or ``"none"`` serves servers without it (the prompt still asks for the same
JSON, and replies are validated all the same). Everything else (cache, rate
limits, retries, budget) is the shared :mod:`.engine`; ``batch=True`` sends
the uncached requests through the Batch API instead (:mod:`.batches`), each
line's body exactly what a single request sends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from .batches import BatchMiner, BatchOptions, Line, Outcome
from .engine import Conversation
from .schema import json_schema

ENDPOINT = "/v1/chat/completions"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


class OpenAIMiner(BatchMiner):
    """Chat completions through the ``openai`` SDK (module docstring)."""

    backend = "openai"
    key_env_var = "OPENAI_API_KEY"
    sdk, client_class = "openai", "AsyncOpenAI"
    answer_options = ("max_tokens", "temperature", "response_format")

    class Options(BatchOptions):
        """The batch price is left at the table's price (``batch_price_factor`` 1): set it
        to the share OpenAI's pricing page gives for batches (docs/miners-api.md)."""

        response_format: Literal["json_schema", "json_object", "none"] = Field(
            "json_schema", description="structured output: strict JSON schema, any JSON "
            "object, or none (for servers without it)")
        limit_param: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
            "auto", description="how the reply cap is sent: auto is max_completion_tokens for "
            "OpenAI itself and max_tokens for other servers")

    async def _send(self, client: Any, conversation: Conversation) -> tuple[str, int | None,
                                                                            int | None]:
        reply = await client.chat.completions.create(**self._arguments(conversation))
        message = reply.choices[0].message if reply.choices else None
        usage = reply.usage
        return ((message.content or "") if message else "",
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None)

    async def _batch_submit(self, client: Any, lines: Sequence[Line]) -> str:
        jsonl = "".join(json.dumps({"custom_id": line.custom_id, "method": "POST",
                                    "url": ENDPOINT, "body": self._arguments(line.conversation)},
                                   ensure_ascii=False) + "\n" for line in lines)
        # Uploaded from memory: nothing is written to disk.
        upload = await client.files.create(
            file=("deepinterest-batch.jsonl", jsonl.encode("utf-8"), "application/jsonl"),
            purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT,
                                            completion_window="24h")
        return batch.id

    async def _batch_status(self, client: Any, batch_id: str) -> tuple[bool, str]:
        batch = await client.batches.retrieve(batch_id)
        errors = [e.message or e.code or "" for e in (batch.errors.data or [])] if (
            batch.errors) else []
        return batch.status in ENDED, "; ".join([batch.status, *filter(None, errors)])

    async def _batch_results(self, client: Any, batch_id: str) -> dict[str, Outcome]:
        batch = await client.batches.retrieve(batch_id)
        outcomes: dict[str, Outcome] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                text = (await client.files.content(file_id)).text
                for row in filter(None, map(str.strip, text.splitlines())):
                    entry = json.loads(row)
                    outcomes[entry.get("custom_id", "")] = _outcome(entry)
        return outcomes

    async def _batch_cancel(self, client: Any, batch_id: str) -> None:
        await client.batches.cancel(batch_id)

    def _arguments(self, conversation: Conversation) -> dict[str, Any]:
        options = self.options
        limit = options.limit_param
        if limit == "auto":
            limit = "max_completion_tokens" if options.base_url is None else "max_tokens"
        arguments: dict[str, Any] = {"model": self.model, "messages": _messages(conversation),
                                     "temperature": options.temperature,
                                     limit: options.max_tokens}
        if options.response_format == "json_schema":
            arguments["response_format"] = {"type": "json_schema", "json_schema": {
                "name": f"{conversation.task}_answer", "schema": json_schema(conversation.task),
                "strict": True}}
        elif options.response_format == "json_object":
            arguments["response_format"] = {"type": "json_object"}
        return arguments


def _outcome(entry: dict[str, Any]) -> Outcome:
    """One line of a batch's output or error file."""
    response, error = entry.get("response") or {}, entry.get("error") or {}
    body = response.get("body") or {}
    status = response.get("status_code")
    if error or status != 200:
        detail = error or body.get("error") or {}
        head = f"HTTP {status}" if status else (detail.get("code") or "error")
        return Outcome(error=f"{head}: {detail.get('message') or 'no reply'}"[:300])
    choices = body.get("choices") or [{}]
    usage = body.get("usage") or {}
    return Outcome((choices[0].get("message") or {}).get("content") or "",
                   usage.get("prompt_tokens"), usage.get("completion_tokens"))


def _messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Chat messages: the system text, then the turns; the image goes with the first."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": conversation.system}]
    for n, (role, text) in enumerate(conversation.turns):
        content: Any = text
        if n == 0 and conversation.image is not None:
            content = [{"type": "text", "text": text},
                       {"type": "image_url", "image_url": {"url": conversation.image.data_url}}]
        messages.append({"role": role, "content": content})
    return messages
