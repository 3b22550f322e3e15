"""One teacher endpoint of an :class:`rare_hf.LLM`: its HTTP client, its concurrency limit and its health.

An LLM given several endpoints (replicas of one model) sends each attempt to the endpoint with the most
spare capacity: the fewest requests in flight or queued relative to its current limit, so a slow replica
gets less work and a fast one more (join-the-shortest-queue). An endpoint whose attempts keep failing
(refused connections, timeouts, 5xx) rests for a cool-down that doubles while it stays down, and then
gets one probe request before it takes traffic again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import openai

from ._limiter import AdaptiveLimiter, Slot
from ._urls import redact_url, split_credentials

_FAILURES_TO_REST = 3
_FIRST_REST_S = 2.0
_MAX_REST_S = 60.0


class Endpoint:
    """A base URL with its own client, limiter and health.

    Args:
        url: The base URL (credentials in it are sent as basic auth and never shown).
        max_concurrency: Most requests in flight at this endpoint.
        rests: Whether failures take it out of rotation for a while (only useful beside other endpoints).
    """

    def __init__(self, url: str, max_concurrency: int, *, rests: bool) -> None:
        self.url = url
        self.display_url = redact_url(url) or ""
        self.limiter = AdaptiveLimiter(max_concurrency)
        self.client: openai.AsyncOpenAI | None = None
        self.sent = 0
        self._rests = rests
        self._failures = 0
        self._rest_s = _FIRST_REST_S
        self._down_until = 0.0
        self._probing = False

    def client_for(self, api_key: str, timeout: float, http_client: Any) -> openai.AsyncOpenAI:
        if self.client is None:
            url, basic_auth = split_credentials(self.url)
            # Retries are ours (they must go through the limiter and honour Retry-After).
            self.client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=url,
                timeout=timeout,
                max_retries=0,
                http_client=http_client,
                default_headers={"Authorization": basic_auth} if basic_auth else None,
            )
        return self.client

    # -- routing ----------------------------------------------------------------------------------------
    @property
    def load(self) -> float:
        """Requests in flight or waiting for a slot, per slot of the current limit."""
        return (self.limiter.in_flight + self.limiter.waiting) / self.limiter.limit

    def resting_for(self, now: float) -> float:
        """Seconds until this endpoint takes traffic again (0 when it does now)."""
        if self._probing and self.limiter.in_flight:
            return 0.05  # one probe at a time after a rest
        return max(0.0, self._down_until - now)

    # -- health -----------------------------------------------------------------------------------------
    def succeeded(self) -> None:
        self._failures, self._rest_s, self._probing = 0, _FIRST_REST_S, False

    def failed(self) -> None:
        self._failures += 1
        if self._rests and (self._failures >= _FAILURES_TO_REST or self._probing):
            self._down_until = time.monotonic() + self._rest_s
            self._rest_s = min(_MAX_REST_S, self._rest_s * 2)
            self._failures, self._probing = 0, True


class Fleet:
    """Routes attempts over endpoints: an attempt takes a free slot on the live endpoint with the most
    spare capacity, or waits here (not in one endpoint's queue) until a slot frees anywhere, so work never
    commits early to a replica that turns out slow or dead."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        if len(endpoints) > 1:
            for endpoint in endpoints:
                endpoint.limiter.on_free = self._wake

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[tuple[Endpoint, Slot]]:
        """A slot at one endpoint: the only one's (waiting in its own queue), or the fleet's pick."""
        if len(self.endpoints) == 1:
            endpoint = self.endpoints[0]
            async with endpoint.limiter.slot() as slot:
                yield endpoint, slot
        else:
            endpoint = await self.acquire()
            async with endpoint.limiter.held() as slot:
                yield endpoint, slot

    async def acquire(self) -> Endpoint:
        """An endpoint with a slot taken for the caller (release it with ``endpoint.limiter.held()``)."""
        while True:
            now = time.monotonic()
            live = [e for e in self.endpoints if e.resting_for(now) == 0]
            for endpoint in sorted(live, key=lambda e: e.load):
                if endpoint.limiter.try_acquire():
                    return endpoint
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            resting = [e.resting_for(now) for e in self.endpoints if e.resting_for(now) > 0]
            try:  # woken by a freed slot, or when the first resting endpoint comes back
                await asyncio.wait_for(asyncio.shield(waiter), min(resting) if resting and not live else None)
            except asyncio.TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        free = sum(max(0, e.limiter.limit - e.limiter.in_flight) for e in self.endpoints)
        while self._waiters and free > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
