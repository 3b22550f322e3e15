"""Adaptive concurrency limit of one endpoint: tells sustained overload from noise.

The limit is judged once per *window* (about one limit's worth of finished requests, at least 32, so
roughly one round trip), the way TCP and Netflix's concurrency-limits judge congestion, never per reply:

- slow start: the limit opens at 16 and doubles each clean window, until the first sign of congestion
  or latency half as high again as at the start (TCP's HyStart); then it grows by one per clean window;
- 429/503s or timeouts in a quarter of two windows in a row (or in a window with no success) shrink it;
  an isolated 429 only delays the request it hit (which sleeps its ``Retry-After`` without a slot);
- latency: the window's median is compared with the best window median of this epoch (the server's
  unloaded latency); two windows in a row over ``_LATENCY_TOLERANCE`` times that shrink it: self-hosted
  servers (vLLM, SGLang) signal overload by queueing, not by status codes.

A new step starts a new epoch (:meth:`AdaptiveLimiter.new_epoch`): its prompts have another latency
profile, and a limit shrunk by the previous step's trouble starts healthy again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import statistics
from collections.abc import AsyncIterator, Callable
from typing import Literal

Outcome = Literal["ok", "overload", "timeout", "error", "cancelled"]

_INITIAL_LIMIT = 16
# A window is at least this many replies: the median of fewer is too noisy under heavy-tailed generation
# lengths, and a quarter of fewer is too few 429s to call overload.
_MIN_WINDOW = 32
_OVERLOAD_FRACTION = 0.25
_OVERLOAD_DECREASE = 0.7
_LATENCY_TOLERANCE = 2.5
# Slow start ends as soon as latency rises this much (as TCP's HyStart does): a doubled limit shows in
# the latencies only a round later, so doubling until the tolerance is crossed would overshoot it.
_SLOW_START_EXIT = 1.5
_LATENCY_DECREASE = 0.8


@dataclasses.dataclass
class Slot:
    """One holder's report of how its request went, read when the slot is released."""

    outcome: Outcome = "cancelled"
    latency: float | None = None


class AdaptiveLimiter:
    """At most ``limit`` holders at once; ``limit`` follows the endpoint's health between 1 and ``max_limit``.

    Args:
        max_limit: The user's ``max_concurrency``: the limit never goes above it.
        initial: Where each epoch's slow start begins (capped by ``max_limit``).
    """

    def __init__(self, max_limit: int, initial: int = _INITIAL_LIMIT) -> None:
        self.max_limit = max_limit
        self.initial = min(max_limit, initial)
        self.limit = self.initial
        self.in_flight = 0
        self.decreases = 0
        self.on_free: Callable[[], None] | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.new_epoch()

    @property
    def waiting(self) -> int:
        """Holders queued for a slot."""
        return len(self._waiters)

    def new_epoch(self) -> None:
        """Forget the latency baseline and restart slow start from a healthy limit."""
        self.limit = max(self.limit, self.initial)
        self._slow_start = True
        self._baseline: float | None = None
        self._slow_windows = self._overloaded_windows = 0
        self._reset_window()
        self._wake()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one slot for a request; fill in the yielded :class:`Slot` with the outcome."""
        await self._acquire()
        async with self.held() as slot:
            yield slot

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Slot]:
        """Release, with its outcome, a slot already taken (by :meth:`try_acquire`)."""
        slot = Slot()
        try:
            yield slot
        finally:
            self.in_flight -= 1
            self._record(slot)
            self._wake()

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (and nobody queues here); never waits."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def _acquire(self) -> None:
        if self.try_acquire():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake() counted us in before resolving the future
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # woken and cancelled in the same tick: hand the slot on
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._wake()
            raise

    def _wake(self) -> None:
        """Give every free slot to a waiter (not just one), so a grown limit is used at once; then tell
        whoever routes between endpoints that slots are free here."""
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
        if self.on_free is not None and self.in_flight < self.limit:
            self.on_free()

    # -- the controller -----------------------------------------------------------------------------
    def _reset_window(self) -> None:
        self._outcomes: collections.Counter[str] = collections.Counter()
        self._latencies: list[float] = []

    def _record(self, slot: Slot) -> None:
        if slot.outcome == "cancelled":
            return
        self._outcomes[slot.outcome] += 1
        if slot.outcome == "ok" and slot.latency is not None:
            self._latencies.append(slot.latency)
        if sum(self._outcomes.values()) >= max(self.limit, _MIN_WINDOW):
            self._end_window()

    def _end_window(self) -> None:
        total = sum(self._outcomes.values())
        overloaded = (self._outcomes["overload"] + self._outcomes["timeout"]) / total >= _OVERLOAD_FRACTION
        ratio = self._latency_ratio()
        # One bad window may be noise (random 429s, heavy-tailed generation lengths): hold the limit. Two in
        # a row is sustained overload or a queue building up at the server: shrink. A window without a
        # single success shrinks at once.
        self._overloaded_windows = self._overloaded_windows + 1 if overloaded else 0
        self._slow_windows = self._slow_windows + 1 if ratio > _LATENCY_TOLERANCE else 0
        if overloaded and (self._overloaded_windows >= 2 or not self._outcomes["ok"]):
            self._decrease(_OVERLOAD_DECREASE)
        elif self._slow_windows >= 2:
            self._decrease(_LATENCY_DECREASE)
        elif overloaded or self._slow_windows or (self._slow_start and ratio > _SLOW_START_EXIT):
            self._slow_start = False
        elif self._outcomes["ok"] * 2 >= total:  # growth is earned by successes, not by fast errors
            self.limit = min(self.max_limit, self.limit * 2 if self._slow_start else self.limit + 1)
        self._reset_window()

    def _latency_ratio(self) -> float:
        """This window's median latency over the epoch's best window median (1.0 when too few replies)."""
        if len(self._latencies) < _MIN_WINDOW // 2:
            return 1.0
        median = statistics.median(self._latencies)
        if self._baseline is None or median < self._baseline:
            self._baseline = median
        return median / self._baseline if self._baseline > 0 else 1.0

    def _decrease(self, factor: float) -> None:
        self.limit = max(1, int(self.limit * factor))
        self._slow_start = False
        self._slow_windows = self._overloaded_windows = 0
        self.decreases += 1
