"""Adaptive concurrency limit (AIMD) shared by every request of one :class:`rare_hf.LLM`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

# Multiplicative decrease on overload and +1 per this many successes: the schedule NeMo Data Designer
# uses, gentle enough that a single 429 burst does not collapse throughput for minutes.
_DECREASE = 0.75
_SUCCESSES_PER_STEP = 25
# Several requests in flight see the same overload; only the first of them within this window shrinks
# the limit, otherwise one burst would divide it many times over.
_DECREASE_COOLDOWN_S = 1.0


@dataclasses.dataclass
class Slot:
    """One holder's report of how its request went, read when the slot is released."""

    success: bool = False
    overloaded: bool = False
    retry_after: float | None = None


class AdaptiveLimiter:
    """At most ``limit`` holders at once; ``limit`` shrinks on overload and grows back after successes."""

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max_limit
        self.limit = float(max_limit)
        self.in_flight = 0
        self._cond = asyncio.Condition()
        self._paused_until = 0.0
        self._last_decrease = float("-inf")
        self._successes = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one slot for a request; fill in the yielded :class:`Slot` with the outcome."""
        await self._acquire()
        slot = Slot()
        try:
            yield slot
        finally:
            await self._release(success=slot.success, overloaded=slot.overloaded, retry_after=slot.retry_after)

    async def _acquire(self) -> None:
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            async with self._cond:
                await self._cond.wait_for(lambda: self.in_flight < int(self.limit))
                if self._paused_until <= time.monotonic():
                    self.in_flight += 1
                    return

    async def _release(self, *, success: bool, overloaded: bool = False, retry_after: float | None = None) -> None:
        now = time.monotonic()
        if overloaded:
            if now - self._last_decrease >= _DECREASE_COOLDOWN_S:
                self.limit = max(1.0, self.limit * _DECREASE)
                self._last_decrease = now
            self._successes = 0
            if retry_after:
                self._paused_until = max(self._paused_until, now + retry_after)
        elif success:
            self._successes += 1
            if self._successes >= _SUCCESSES_PER_STEP and self.limit < self.max_limit:
                self.limit = min(float(self.max_limit), self.limit + 1.0)
                self._successes = 0
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all() if overloaded else self._cond.notify(1)
