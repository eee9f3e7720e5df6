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
limits, retries, budget) is the shared :mod:`.engine`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .engine import Conversation, RemoteMiner, RemoteOptions
from .schema import json_schema


class OpenAIMiner(RemoteMiner):
    """Chat completions through the ``openai`` SDK (module docstring)."""

    backend = "openai"
    key_env_var = "OPENAI_API_KEY"
    sdk, client_class = "openai", "AsyncOpenAI"
    answer_options = ("max_tokens", "temperature", "response_format")

    class Options(RemoteOptions):
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
