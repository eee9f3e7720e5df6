"""Mining through the Anthropic messages API.

``registry.create("miners", "anthropic", model="claude-haiku-4-5")`` reads
the key from ``ANTHROPIC_API_KEY``; ``base_url`` points it at another server
speaking the same API. The strict JSON answer DeepInterestGR (arXiv
2602.18907) asks for is obtained through a tool the model must call
(``tool_choice`` forces the one tool, ``answer``, whose input schema is the
task's :func:`~.schema.json_schema`); the raw reply is that tool input as JSON
text, or the reply's text when a server answers without the tool, which is
then validated like any reply. Everything else (cache, rate limits, retries,
budget) is the shared :mod:`.engine`; ``batch=True`` sends the uncached
requests as one Message Batch instead (:mod:`.batches`), with the same params.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from .batches import BatchMiner, BatchOptions, Line, Outcome
from .engine import Conversation, Image
from .schema import json_schema

TOOL = "answer"


class AnthropicMiner(BatchMiner):
    """Messages through the ``anthropic`` SDK (module docstring)."""

    backend = "anthropic"
    key_env_var = "ANTHROPIC_API_KEY"
    sdk, client_class = "anthropic", "AsyncAnthropic"

    class Options(BatchOptions):
        """The shared settings (:class:`~.batches.BatchOptions`), but ``temperature`` is
        sent only when set: the newest models reject sampling parameters. A batch costs
        half the table's prices, as Anthropic's batch processing page states."""

        temperature: float | None = Field(None, ge=0.0, description="sent only when set")
        batch_price_factor: float = Field(0.5, gt=0, le=1, description="share of the price "
                                          "table's prices a batch costs")

    def _params(self, conversation: Conversation) -> dict[str, Any]:
        """The request body, for a single request and a batch line alike."""
        tool = {"name": TOOL, "description": "Record the answer, in the format the "
                "instructions give.", "input_schema": json_schema(conversation.task)}
        params = dict(model=self.model, max_tokens=self.options.max_tokens,
                      system=conversation.system, messages=_messages(conversation),
                      tools=[tool], tool_choice={"type": "tool", "name": TOOL})
        if self.options.temperature is not None:
            params["temperature"] = self.options.temperature
        return params

    async def _send(self, client: Any, conversation: Conversation) -> tuple[str, int | None,
                                                                            int | None]:
        params = self._params(conversation)
        # Recent SDKs dropped the sampling keywords; the API still takes them in the body
        # for the models that accept them.
        sampling = ({"extra_body": {"temperature": params.pop("temperature")}}
                    if "temperature" in params else {})
        reply = await client.messages.create(**params, **sampling)
        usage = reply.usage
        return (_raw(reply.content), usage.input_tokens if usage else None,
                usage.output_tokens if usage else None)

    async def _batch_submit(self, client: Any, lines: Sequence[Line]) -> str:
        batch = await client.messages.batches.create(requests=[
            {"custom_id": line.custom_id, "params": self._params(line.conversation)}
            for line in lines])
        return batch.id

    async def _batch_status(self, client: Any, batch_id: str) -> tuple[bool, str]:
        batch = await client.messages.batches.retrieve(batch_id)
        return batch.processing_status == "ended", batch.processing_status

    async def _batch_results(self, client: Any, batch_id: str) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        async for entry in await client.messages.batches.results(batch_id):
            outcomes[entry.custom_id] = _outcome(entry.result)
        return outcomes

    async def _batch_cancel(self, client: Any, batch_id: str) -> None:
        await client.messages.batches.cancel(batch_id)


def _outcome(result: Any) -> Outcome:
    """One request's result in a Message Batch."""
    if result.type == "succeeded":
        usage = result.message.usage
        return Outcome(_raw(result.message.content), usage.input_tokens if usage else None,
                       usage.output_tokens if usage else None)
    if result.type == "errored":
        error = getattr(result.error, "error", None)
        detail = f"{error.type}: {error.message}" if error else "no detail"
        return Outcome(error=f"errored: {detail}"[:300])
    return Outcome(error=f"{result.type}: the batch ended before this request ran")


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
