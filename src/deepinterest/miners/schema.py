"""What a miner must answer, and how an answer is read back.

Each task has a strict JSON answer (a pydantic model, ``extra="forbid"``):

- ``item`` / ``user``: :class:`Interests`, an ordered list of at most
  :data:`MAX_DESCRIPTORS` deep-interest descriptors (short phrases, at most
  :data:`MAX_CHARS` characters), each with a confidence in [0, 1], plus an
  optional ``reasoning`` string (chain of thought) that is kept apart from
  the descriptors. An empty list is a valid answer ("none").
- ``judge``: :class:`Verdicts`, one 0/1 label per descriptor it was shown,
  in order (1 = specific, actionable and grounded in the item's evidence).
- ``caption``: :class:`Caption`, a factual description of the item's main
  image, added to the item's evidence before mining.

The later version of the paper (DeepInterestGR, arXiv 2602.18907) asks for
strict JSON, an ordered list of descriptors with confidences, and a binary
judge; earlier interest-mining work split free text by string matching,
which silently loses answers. :func:`parse_answer` instead finds the JSON
object in a reply (code fences and chatter around it are tolerated),
validates it, and raises :class:`AnswerError` with the reason otherwise;
:func:`repair_truncated` closes a reply cut off mid-JSON at its last
complete descriptor, for the one repair attempt a miner makes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_DESCRIPTORS = 8
MAX_CHARS = 80
MAX_CAPTION = 300


class AnswerError(ValueError):
    """A reply that is not a valid answer; the message says why (for the failure record)."""


class Descriptor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=2, max_length=MAX_CHARS)
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("text")
    @classmethod
    def _tidy(cls, value: str) -> str:
        return " ".join(value.split()).strip(" .;,")


class Interests(BaseModel):
    """An item's (or user's) deep interests, most important first."""

    model_config = ConfigDict(extra="forbid")

    reasoning: str | None = None
    descriptors: list[Descriptor] = Field(default_factory=list, max_length=MAX_DESCRIPTORS)


class Verdicts(BaseModel):
    """A judge's labels, one per descriptor shown, in order."""

    model_config = ConfigDict(extra="forbid")

    reasoning: str | None = None
    labels: list[int] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _binary(cls, labels: list[int]) -> list[int]:
        if any(label not in (0, 1) for label in labels):
            raise ValueError("every label must be 0 or 1")
        return labels


class Caption(BaseModel):
    """A factual description of an item's main image (what is visible, nothing more)."""

    model_config = ConfigDict(extra="forbid")

    caption: str = Field(min_length=1, max_length=MAX_CAPTION)


ANSWERS: dict[str, type[BaseModel]] = {"item": Interests, "user": Interests, "judge": Verdicts,
                                       "caption": Caption}


def json_schema(task: str) -> dict[str, Any]:
    """The answer's JSON schema in the strict form structured-output APIs accept.

    Every property is required and no others are allowed (OpenAI's strict
    mode); the optional reasoning is a string that may be empty.
    """
    if task == "caption":
        return _object({"caption": {"type": "string", "maxLength": MAX_CAPTION}})
    if task == "judge":
        items: dict[str, Any] = {"type": "integer", "enum": [0, 1]}
        return _object({"reasoning": {"type": "string"},
                        "labels": {"type": "array", "items": items}})
    descriptor = _object({"text": {"type": "string", "maxLength": MAX_CHARS},
                          "confidence": {"type": "number", "minimum": 0, "maximum": 1}})
    return _object({"reasoning": {"type": "string"},
                    "descriptors": {"type": "array", "items": descriptor,
                                    "maxItems": MAX_DESCRIPTORS}})


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_text(text: str) -> str:
    """The JSON object inside a reply: a fenced block, else the outermost braces."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise AnswerError("no JSON object in the reply")
    return text[start:end + 1]


def parse_answer(text: str, task: str) -> BaseModel:
    """The validated answer of ``task`` in ``text``; :class:`AnswerError` says why not."""
    try:
        data = json.loads(_json_text(text))
    except json.JSONDecodeError as exc:
        raise AnswerError(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if task in ("item", "user") and isinstance(data, dict):
        data = _empty_reasoning_is_none(data)
    try:
        return ANSWERS[task].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise AnswerError(f"invalid answer at {where}: {first['msg']}") from None


def _empty_reasoning_is_none(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("reasoning") == "":
        return {**data, "reasoning": None}
    return data


def repair_truncated(text: str) -> str | None:
    """Close a reply cut off inside its descriptor list, keeping complete descriptors.

    Returns a candidate JSON text, or None when there is nothing to keep. The
    result is parsed and validated like any reply, so a wrong guess fails there.
    """
    start = text.find("{")
    key = text.find('"descriptors"', start)
    if start < 0 or key < 0:
        return None
    last = text.rfind("}", key)
    while last > key:
        candidate = text[start:last + 1] + "]}"
        try:
            json.loads(candidate)
            return candidate
        except json.JSONDecodeError:
            last = text.rfind("}", key, last)
    opened = text.find("[", key)
    return text[start:opened + 1] + "]}" if opened > 0 else None


def drop_copies(interests: Interests, evidence: dict[str, Any]) -> Interests:
    """Remove descriptors that merely repeat the title or an earlier descriptor."""
    title = " ".join(str(evidence.get("title", "")).lower().split())
    seen: set[str] = set()
    kept = []
    for d in interests.descriptors:
        norm = d.text.lower()
        if norm == title or norm in seen:
            continue
        seen.add(norm)
        kept.append(d)
    return interests.model_copy(update={"descriptors": kept})
