"""Mining through the Anthropic messages API.

``registry.create("miners", "anthropic", model="claude-haiku-4-5")`` reads
the key from ``ANTHROPIC_API_KEY``; ``base_url`` points it at another server
speaking the same API. The strict JSON answer DeepInterestGR (arXiv
2602.18907) asks for is obtained through a tool the model must call
(``tool_choice`` forces the one tool, ``answer``, whose input schema is the
task's :func:`~.schema.json_schema`); the raw reply is that tool input as JSON
text, or the reply's text when a server answers without the tool, which is
then validated like any reply. Everything else (cache, rate limits, retries,
budget) is the shared :mod:`.engine`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from .engine import Conversation, Image, RemoteMiner, RemoteOptions
from .schema import json_schema

TOOL = "answer"


class AnthropicMiner(RemoteMiner):
    """Messages through the ``anthropic`` SDK (module docstring)."""

    backend = "anthropic"
    key_env_var = "ANTHROPIC_API_KEY"
    sdk, client_class = "anthropic", "AsyncAnthropic"

    class Options(RemoteOptions):
        """The shared settings (:class:`~.engine.RemoteOptions`), but ``temperature`` is
        sent only when set: the newest models reject sampling parameters."""

        temperature: float | None = Field(None, ge=0.0, description="sent only when set")

    async def _send(self, client: Any, conversation: Conversation) -> tuple[str, int | None,
                                                                            int | None]:
        tool = {"name": TOOL, "description": "Record the answer, in the format the "
                "instructions give.", "input_schema": json_schema(conversation.task)}
        # Recent SDKs dropped the sampling keywords; the API still takes them in the body
        # for the models that accept them.
        sampling = ({} if self.options.temperature is None
                    else {"extra_body": {"temperature": self.options.temperature}})
        reply = await client.messages.create(
            model=self.model, max_tokens=self.options.max_tokens, system=conversation.system,
            messages=_messages(conversation), tools=[tool],
            tool_choice={"type": "tool", "name": TOOL}, **sampling)
        usage = reply.usage
        return (_raw(reply.content), usage.input_tokens if usage else None,
                usage.output_tokens if usage else None)


def _raw(content: list[Any]) -> str:
    """The forced tool's input as JSON text, else the reply's text."""
    for block in content:
        if block.type == "tool_use" and block.name == TOOL:
            return json.dumps(block.input, ensure_ascii=False)
    return "".join(block.text for block in content if block.type == "text")


def _image_block(image: Image) -> dict[str, Any]:
    if image.url:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type,
                                        "data": image.data}}


def _messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The turns as messages; the image goes first in the question's content."""
    messages = []
    for n, (role, text) in enumerate(conversation.turns):
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if n == 0 and conversation.image is not None:
            content.insert(0, _image_block(conversation.image))
        messages.append({"role": role, "content": content})
    return messages
