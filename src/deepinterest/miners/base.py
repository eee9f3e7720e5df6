"""The miner contract: requests in, results out.

A miner is any object with ``mine(requests) -> list[MineResult]`` (one result
per request, same order), registered under the ``deepinterest.miners`` entry
points. Optional abilities are attributes: ``amine`` (the same, as a
coroutine, for callers that run their own event loop), ``Options`` (a nested
pydantic model of the backend's settings, unknown keys rejected),
``key_env_var`` (the environment variable its API key is read from; a key is
never written to a log, cache, manifest, record or error message) and
``takes_images``.

A request names one task (``item``, ``user``, ``judge`` or ``caption``), the key it is for
(an item or user id) and the evidence shown to the model. A result always
comes back: with a validated ``answer``, or with ``error`` saying why there
is none, so no item is ever silently dropped. Each result carries what the
cost study needs: backend, model, prompt version, tokens in and out,
dollars, latency, whether it came from the cache, and how many attempts it
took.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

Task = Literal["item", "user", "judge", "caption"]
# Item fields shown to a miner, in this order (the paper's evidence: title,
# description, categories, brand, price and an image caption).
EVIDENCE_FIELDS = ("title", "description", "categories", "brand", "price", "caption")


@dataclass(frozen=True)
class MineRequest:
    """One question for a miner."""

    task: Task
    key: str  # item id (item, judge) or user id (user)
    evidence: dict[str, Any]  # item fields, or for a user {"history": [titles, oldest first]}
    descriptors: tuple[str, ...] = ()  # judge: the descriptors to label, in order
    image: str | None = None  # URL or local path, for backends that take images


@dataclass(frozen=True)
class MineResult:
    """A miner's answer to one request, or the reason there is none."""

    key: str
    task: Task
    backend: str
    model: str
    prompt_version: str
    answer: BaseModel | None  # Interests (item, user) or Verdicts (judge)
    raw: str = ""  # the model's reply as received ("" when there was none)
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.error is None

    def record(self) -> dict[str, Any]:
        """JSON-ready form (the answer as plain data)."""
        data = asdict(self)
        data["answer"] = self.answer.model_dump() if self.answer is not None else None
        return data


@runtime_checkable
class Miner(Protocol):
    """Requests in, one result per request out (module docstring)."""

    model: str

    def mine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        """Answer every request; failures come back as results with ``error`` set."""


def item_evidence(fields: dict[str, str], caption: str | None = None) -> dict[str, Any]:
    """The evidence of an item: its known fields in :data:`EVIDENCE_FIELDS` order; an item
    with none of them (a RecBole table whose text column is ``text``, say) shows its
    other fields instead, in the table's order, so a miner never sees nothing."""
    evidence = {name: fields[name] for name in EVIDENCE_FIELDS if fields.get(name)}
    if not evidence:
        evidence = {name: value for name, value in fields.items() if value}
    if caption:
        evidence["caption"] = caption
    return evidence
