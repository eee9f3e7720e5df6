"""A scripted miner for tests and examples: replies come from a table or a function.

``ScriptedMiner(replies={"item-1": '{"descriptors": [...]}'})`` answers each
request with the reply stored under its key (a list gives successive
replies, for retries), or ``replies=fn`` with ``fn(request) -> str``. Replies
go through the same parsing as every backend's (:mod:`.replies`), so a
malformed scripted reply fails exactly as a model's would. Token counts are
whitespace words, and cost is ``price_per_token`` times their sum, so cost
accounting can be tested without a model.

:func:`planted_replies` scripts the *oracle* of a synthetic dataset: each item
answered with its planted motivation phrases, read from the answer key that
no real miner sees. It measures a ceiling (what perfect interests would give)
and is never a default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from ..data.model import Dataset
from .base import MineRequest, MineResult
from .cache import Reply
from .prompts import prompt_for
from .replies import failure, to_result


class ScriptedMiner:
    """Answers from a table or a function (module docstring)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

        price_per_token: float = 0.0
        retries: int = 1  # re-asks after an invalid reply, as a real backend does
        # Judge requests without a scripted reply: label descriptor j with
        # judge_pattern[j % len], so a judge can be scripted without knowing counts.
        judge_pattern: list[int] | None = None

    def __init__(self, replies: dict[str, str | list[str]] | Callable[[MineRequest], str]
                 | None = None, *, model: str = "scripted", **options):
        self.model = model
        self.options = self.Options(**options)
        self._replies = replies or {}
        self._served: dict[str, int] = {}
        self.calls: list[MineRequest] = []  # every request actually answered, for tests

    def _reply(self, request: MineRequest) -> str | None:
        self.calls.append(request)
        pattern = self.options.judge_pattern
        scripted = callable(self._replies) or request.key in self._replies
        if request.task == "judge" and pattern and not scripted:
            n = len(request.descriptors)
            return json.dumps({"labels": [pattern[j % len(pattern)] for j in range(n)]})
        if callable(self._replies):
            return self._replies(request)
        found = self._replies.get(request.key)
        if isinstance(found, list):
            n = self._served.get(request.key, 0)
            self._served[request.key] = n + 1
            return found[min(n, len(found) - 1)] if found else None
        return found

    def _one(self, request: MineRequest) -> MineResult:
        version = prompt_for(request.task).version
        meta = dict(backend="scripted", model=self.model, prompt_version=version)
        result, spent = None, (0, 0.0)  # every attempt is paid for, answered or not
        for attempt in range(1, self.options.retries + 2):
            raw = self._reply(request)
            if raw is None:
                return failure(request, "no scripted reply", attempts=attempt, **meta)
            words = len(raw.split())
            spent = (spent[0] + words, spent[1] + words * self.options.price_per_token)
            reply = Reply(raw, tokens_in=0, tokens_out=spent[0], cost_usd=spent[1])
            result = to_result(request, reply, attempts=attempt, **meta)
            if result.ok:
                return result
        return result

    def mine(self, requests: Sequence[MineRequest]) -> list[MineResult]:
        return [self._one(request) for request in requests]


def planted_replies(dataset: Dataset) -> dict[str, str]:
    """Per item, a reply naming exactly its planted motivation phrases (the oracle).

    Only a dataset from the synthetic generator has an answer key
    (``attributes["planted"]``); any other is an error.
    """
    planted = dataset.attributes.get("planted")
    if not planted:
        raise ValueError(f"dataset {dataset.name!r} has no planted motivations: only the "
                         "embedded synthetic dataset has an answer key for an oracle")
    phrase = {m["id"]: m["phrase"] for m in planted["motivations"]}
    return {item: json.dumps({"descriptors": [{"text": phrase[m], "confidence": 1.0}
                                              for m in info["motivations"]]})
            for item, info in planted["items"].items()}
