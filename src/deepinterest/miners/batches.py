"""Bulk runs through a provider's batch API, at its batch price (docs/miners-api.md).

With ``batch=True`` a remote miner does not send one request per item: the
requests the answer cache does not already answer go to the provider as one
batch job, which is polled every ``batch_poll_seconds`` until it ends. Mining
a catalogue is exactly the work batch APIs are for (no one waits for an
answer, and the provider charges less for it); a backend provides four
coroutines (submit, status, results, cancel) and this module does the rest:

- every request still gets exactly one result, in order; each reply is parsed
  by the same :func:`~.replies.to_result` as the per-request path and stored in
  the cache as soon as the batch's results are read;
- a line the provider answered with an error, or that expired or was
  cancelled, is a recorded failure saying so, never dropped; a batch not
  finished after ``batch_timeout_seconds`` is cancelled and its requests are
  recorded as failures with that reason;
- costs are the price table's prices times ``batch_price_factor``;
- the budget reserves the worst case of the whole batch before submitting,
  and refuses the whole batch (every request failing with error ``"budget"``,
  unsent) when that does not fit.

There is no re-ask after an invalid answer (a batch is one round): such
replies are recorded failures, and the next run (batch or not) asks again,
since invalid replies are not cached. Rate limits do not apply: providers
meter batches separately.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..errors import DeepInterestError
from .base import MineRequest, MineResult
from .cache import Reply
from .engine import Conversation, RemoteMiner, RemoteOptions, _Run, scrub, token_estimates
from .replies import failure, to_result

CANCEL_WAIT = 30.0  # seconds a cancellation may take before the run gives up on it


class BatchOptions(RemoteOptions):
    """The shared remote settings plus the batch ones."""

    batch: bool = Field(False, description="send the uncached requests as one batch job")
    batch_poll_seconds: float = Field(30.0, gt=0, description="seconds between status checks")
    batch_timeout_seconds: float = Field(86_400.0, gt=0, description="seconds to wait for the "
                                         "batch; then it is cancelled and its requests fail")
    batch_price_factor: float = Field(1.0, gt=0, le=1, description="share of the price table's "
                                      "prices a batch costs")


@dataclass(frozen=True)
class Line:
    """One request in a batch: what is asked, and what it may cost at most."""

    index: int  # position in the run's requests
    request: MineRequest
    key: str  # its cache key
    meta: dict[str, str]
    conversation: Conversation
    bound: int  # upper bound of its input tokens
    worst: float  # dollars at most

    @property
    def custom_id(self) -> str:
        # The position, not the cache key: the same request twice in one run is two lines.
        return f"q{self.index}"


@dataclass(frozen=True)
class Outcome:
    """What the batch says about one line: a raw reply with its counts, or an error."""

    raw: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    error: str | None = None


class BatchMiner(RemoteMiner):
    """A remote miner that can also mine through its provider's batch API."""

    Options = BatchOptions

    # -- what a backend provides (the SDK's exceptions propagate)

    async def _batch_submit(self, client: Any, lines: Sequence[Line]) -> str:
        """Create the batch job; its id."""
        raise NotImplementedError

    async def _batch_status(self, client: Any, batch_id: str) -> tuple[bool, str]:
        """(ended, status text; with why when it ended without results)."""
        raise NotImplementedError

    async def _batch_results(self, client: Any, batch_id: str) -> dict[str, Outcome]:
        """The ended batch's outcomes by custom id."""
        raise NotImplementedError

    async def _batch_cancel(self, client: Any, batch_id: str) -> None:
        raise NotImplementedError

    # -- running

    async def _mine_all(self, run: _Run, requests: Sequence[MineRequest]) -> list[MineResult]:
        if not self.options.batch:
            return await super()._mine_all(run, requests)
        results: list[MineResult | None] = [None] * len(requests)
        lines: list[Line] = []
        factor = self.options.batch_price_factor
        for index, request in enumerate(requests):
            prompt, meta, key, results[index] = self._lookup(request)
            if results[index] is not None:
                self._progress(run, results[index])
                continue
            try:
                conversation = self._conversation(request, prompt)
            except (DeepInterestError, OSError) as exc:
                results[index] = failure(request, str(exc), attempts=0, **meta)
                self._progress(run, results[index])
                continue
            bound = token_estimates(conversation)[1]
            worst = self.price.cost(bound, self.options.max_tokens) * factor if self.price else 0.0
            lines.append(Line(index, request, key, meta, conversation, bound, worst))
        if lines:
            for line, result in zip(lines, await self._run_batch(run, lines)):
                results[line.index] = result
                self._progress(run, result)
        return results  # type: ignore[return-value] - every slot is filled above

    async def _run_batch(self, run: _Run, lines: list[Line]) -> list[MineResult]:
        worst = sum(line.worst for line in lines)
        if not await self.budget.reserve(worst):
            return [failure(line.request, "budget", attempts=0, **line.meta) for line in lines]
        start = time.monotonic()
        try:
            # Not retried by the SDK: a submission retried after a lost connection may
            # create a second batch, paid twice.
            batch_id = await self._batch_submit(run.client, lines)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            # An HTTP error means nothing was created; a lost connection may have created it.
            charged = 0.0 if isinstance(getattr(exc, "status_code", None), int) else worst
            await self.budget.settle(worst, charged)
            why = f"batch not submitted: {self._describe(exc, run.secret)}"
            return [failure(line.request, why, attempts=0, **line.meta) for line in lines]
        # Status checks and result reads only look, so the SDK may retry them.
        client = run.client.with_options(max_retries=self.options.retries)
        try:
            ended, status = await self._wait(client, batch_id, start, run.secret)
        except asyncio.CancelledError:  # the run was stopped: stop paying for the batch too
            await self._cancel(client, batch_id)
            await self.budget.settle(worst, worst)  # what ran before is paid for
            raise
        outcomes: dict[str, Outcome] = {}
        unknown = not ended  # whether a line without an outcome may have run (and been charged)
        if not ended:
            await self._cancel(client, batch_id)
            missing = (f"batch {batch_id} did not finish within "
                       f"{self.options.batch_timeout_seconds:g} s ({status}); cancelled")
        else:
            missing = f"batch {batch_id} ended ({status}) without a result for this request"
            try:
                outcomes = await self._batch_results(client, batch_id)
            except Exception as exc:  # noqa: BLE001
                unknown = True
                missing = (f"batch {batch_id} results could not be read: "
                           f"{self._describe(exc, run.secret)}")
        results, charged = [], 0.0
        latency = time.monotonic() - start
        for line in lines:
            outcome = outcomes.get(line.custom_id)
            if outcome is None:
                # Of unknown fate, a line stays counted at its worst case.
                charged += line.worst if unknown else 0.0
                results.append(failure(line.request, missing, **line.meta))
                continue
            if outcome.error is not None:  # providers do not charge a failed line
                results.append(failure(line.request, scrub(outcome.error, run.secret),
                                       **line.meta))
                continue
            reply = self._priced(outcome.raw, outcome.tokens_in, outcome.tokens_out, line.bound,
                                 latency)
            reply = Reply(reply.raw, reply.tokens_in, reply.tokens_out,
                          reply.cost_usd * self.options.batch_price_factor, latency)
            charged += reply.cost_usd
            result = to_result(line.request, reply, **line.meta)
            if result.ok and self.cache is not None:
                self.cache.put(line.key, reply, request=line.request, **line.meta)
            results.append(result)
        await self.budget.settle(worst, charged)
        return results

    async def _wait(self, client: Any, batch_id: str, start: float,
                    secret: str) -> tuple[bool, str]:
        """Poll until the batch ends (True, status) or time runs out (False, last status)."""
        deadline = start + self.options.batch_timeout_seconds
        status = "not checked yet"
        while True:
            try:
                ended, status = await asyncio.wait_for(self._batch_status(client, batch_id),
                                                       self.options.timeout)
                if ended:
                    return True, status
            except Exception as exc:  # noqa: BLE001 - a failed check is not a failed batch
                status = f"last check failed: {self._describe(exc, secret)}"
            left = deadline - time.monotonic()
            if left <= 0:
                return False, status
            await asyncio.sleep(min(self.options.batch_poll_seconds, left))

    async def _cancel(self, client: Any, batch_id: str) -> None:
        """Cancel the batch, as far as the provider lets (a failure only means it runs on)."""
        try:
            await asyncio.wait_for(self._batch_cancel(client, batch_id), CANCEL_WAIT)
        except Exception:  # noqa: BLE001, S110 - its requests are recorded failures anyway
            pass
