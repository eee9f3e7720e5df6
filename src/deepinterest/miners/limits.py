"""Rate limits and the dollar budget of the remote miners (:mod:`.engine`).

:class:`Throttle` keeps a remote miner under its requests-per-minute and
tokens-per-minute limits (two :class:`TokenBucket` instances) and pauses it after a
429; :class:`Budget` stops it before the dollars spent and reserved pass
``budget``. Both run inside the engine's event loop.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Budget", "Throttle", "TokenBucket"]


class TokenBucket:
    """At most ``per_minute`` units in any 60 seconds.

    A burst of one second's worth may go at once; the rest of the minute's
    allowance refills at a steady rate, so a long run sustains close to the
    limit without ever exceeding it in a minute.
    """

    def __init__(self, per_minute: float):
        self.burst = min(max(1.0, per_minute / 60), per_minute / 2)
        self.rate = (per_minute - self.burst) / 60  # units per second
        self.level = self.burst
        self.stamp = time.monotonic()

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` may be taken (0: now). A request larger than
        the burst goes when the bucket is full and leaves it in debt."""
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(amount, self.burst)
        # The slack absorbs float rounding (a wait too short to advance the clock).
        return 0.0 if self.level >= need - 1e-9 else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.burst, self.level + amount)


class Throttle:
    """Requests-per-minute and tokens-per-minute limits, and a pause after a 429."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.not_before = 0.0

    async def acquire(self, tokens: int) -> None:
        while True:
            now = time.monotonic()
            waits = [self.not_before - now]
            if self.requests:
                waits.append(self.requests.wait(1, now))
            if self.tokens:
                waits.append(self.tokens.wait(tokens, now))
            if max(waits) <= 0:
                break
            await asyncio.sleep(max(waits))
        if self.requests:
            self.requests.take(1)
        if self.tokens:
            self.tokens.take(tokens)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket from the estimate to the reported count."""
        if self.tokens:
            self.tokens.give(estimated - actual)

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the server asked every client to wait)."""
        self.not_before = max(self.not_before, time.monotonic() + seconds)


class Budget:
    """Dollars spent and reserved, never more than ``limit`` together.

    Kept by the miner across runs; :meth:`start_run` makes the condition that
    coroutines of one event loop wait on for reservations to settle.
    """

    def __init__(self, limit: float | None):
        self.limit = limit
        self.spent = 0.0
        self.held = 0.0
        self.exhausted = False
        self._changed: asyncio.Condition | None = None

    def start_run(self) -> None:
        self._changed = asyncio.Condition()
        self.exhausted = False

    async def reserve(self, amount: float) -> bool:
        """Hold ``amount``; False (and no more this run) once it cannot fit."""
        if self.limit is None:
            return True
        async with self._changed:
            while not self.exhausted:
                if self.spent + self.held + amount <= self.limit:
                    self.held += amount
                    return True
                if self.held <= 0:  # nothing in flight can free room: stop here
                    self.exhausted = True
                    self._changed.notify_all()
                    break
                await self._changed.wait()
            return False

    async def settle(self, reserved: float, actual: float) -> None:
        self.spent += actual
        if self.limit is None:
            return
        async with self._changed:
            self.held -= reserved
            self._changed.notify_all()
