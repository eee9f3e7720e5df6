"""From a model's raw reply to a :class:`~.base.MineResult`, the same for every backend.

The reply is parsed and validated (:func:`~.schema.parse_answer`); a reply cut
off mid-JSON gets one local repair (its complete descriptors kept, marked
``extra["repaired"]``); descriptors that repeat the title or each other are
dropped; a judge must label every descriptor it was shown. Anything else
becomes a result with ``error`` set, never an exception, so the caller can
retry the request or record the failure.
"""

from __future__ import annotations

from .base import MineRequest, MineResult
from .cache import Reply
from .schema import AnswerError, Interests, Verdicts, drop_copies, parse_answer, repair_truncated


def failure(request: MineRequest, error: str, *, backend: str, model: str, prompt_version: str,
            raw: str = "", attempts: int = 1, **usage) -> MineResult:
    """A result that records why ``request`` has no answer."""
    return MineResult(request.key, request.task, backend, model, prompt_version, None, raw=raw,
                      error=error, attempts=attempts, **usage)


def to_result(request: MineRequest, reply: Reply, *, backend: str, model: str,
              prompt_version: str, attempts: int = 1, cached: bool = False) -> MineResult:
    """Parse ``reply`` into a result (an answer, or the reason there is none)."""
    usage = dict(tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                 cost_usd=reply.cost_usd, latency_s=reply.latency_s, cached=cached)
    meta = dict(backend=backend, model=model, prompt_version=prompt_version, raw=reply.raw,
                attempts=attempts)
    extra: dict = {}
    try:
        answer = parse_answer(reply.raw, request.task)
    except AnswerError as exc:
        repaired = repair_truncated(reply.raw) if request.task in ("item", "user") else None
        try:
            answer = parse_answer(repaired, request.task) if repaired else None
        except AnswerError:
            answer = None
        if answer is None:
            return failure(request, str(exc), **meta, **usage)
        if isinstance(answer, Interests) and not answer.descriptors:
            # A repair that keeps nothing is a cut-off reply, not an answer of "none":
            # it must fail (and stay out of the cache) so a rerun asks again.
            return failure(request, f"{exc}; the reply was cut off before its first "
                           "complete descriptor", **meta, **usage)
        extra["repaired"] = True
    if isinstance(answer, Interests):
        answer = drop_copies(answer, request.evidence)
    elif isinstance(answer, Verdicts) and len(answer.labels) != len(request.descriptors):
        return failure(request, f"{len(answer.labels)} labels for {len(request.descriptors)} "
                       "descriptors", **meta, **usage)
    return MineResult(request.key, request.task, backend, model, prompt_version, answer,
                      raw=reply.raw, attempts=attempts, extra=extra, **usage)
