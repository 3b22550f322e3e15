"""What the embeddings and rerank clients share: the teacher's engine (adaptive concurrency, retries with
``Retry-After``, the breaker, the response cache, usage and dollars) under another model and another route."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import openai

from ..errors import LLMConfigError
from ._http import split_params
from .cache import ResponseCache, cache_key
from .client import LLM
from .replies import Completion
from .usage import LLMRun, Usage


class ServiceClient:
    """A model behind one OpenAI-style route (``/embeddings``, ``/rerank``) on the teacher's engine."""

    #: The environment variable naming the model when none is given, and what the model is, for messages.
    model_env: str = ""
    model_kind: str = ""

    def __init__(
        self,
        model: str | None,
        *,
        max_chars: int | None,
        base_url: str | Sequence[str] | None,
        api_key: str | None,
        max_concurrency: int,
        timeout: float,
        max_retries: int,
        cache_dir: str | os.PathLike[str] | ResponseCache | Literal[False] | None,
        cache_namespace: str | None,
        price_per_million: float | None,
    ) -> None:
        model = model or os.environ.get(self.model_env)
        name = type(self).__name__
        if not model:
            raise LLMConfigError(f"No {self.model_kind} model given: pass {name}(model=...) or set {self.model_env}.")
        if max_chars is not None and max_chars < 1:
            raise LLMConfigError(f"max_chars must be >= 1 or None, got {max_chars}.")
        self.max_chars = max_chars
        self._engine = LLM(
            model, base_url=base_url, api_key=api_key, max_concurrency=max_concurrency, timeout=timeout,
            max_retries=max_retries, cache_dir=cache_dir, cache_namespace=cache_namespace, temperature=None,
            price_per_million=None if price_per_million is None else (price_per_million, 0.0),
        )  # fmt: skip
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The endpoint URL(s) without credentials."""
        return self._engine.display_url

    @property
    def usage(self) -> Usage:
        """Tokens (and dollars) of every request so far; ``cached`` counts answers the response cache gave."""
        return self._engine.usage

    @property
    def cache_path(self) -> Path | None:
        return self._engine.cache_path

    def new_run(self, name: str) -> LLMRun:
        """A run whose usage is counted apart (a step's share of this client's usage)."""
        return self._engine.new_run(name)

    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine on this client's loop (where its HTTP client and limiter live) and wait for it."""
        return self._engine.run_sync(coro)

    @contextlib.contextmanager
    def cache_only(self) -> Iterator[None]:
        """Within the block, what the cache cannot answer fails (``NOT_CACHED``) instead of being sent."""
        with self._engine.cache_only():
            yield

    def check_connection(self) -> None:
        """Raise :class:`LLMConfigError` if the endpoint is unreachable or refuses the key."""
        self._engine.check_connection()

    def close(self) -> None:
        """Close the HTTP client and the background loop (the cache stays on disk)."""
        self._engine.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses -------------------------------------------------------------------------------------
    def _key(self, payload: dict[str, Any], params: dict[str, Any]) -> str:
        return cache_key(model=self.model, messages=[payload], params=params, sample_index=0,
                         namespace=self._engine.cache_namespace)  # fmt: skip

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        cache = self._engine.cache
        return cache.get(key) if cache is not None else None

    def _cache_put(self, key: str, value: dict[str, Any]) -> None:
        if self._engine.cache is not None:
            self._engine.cache.put(key, value)

    @property
    def _cache_only(self) -> bool:
        return self._engine._cache_only

    async def _send(
        self, route: str, request: dict[str, Any], params: dict[str, Any], key: str, run: LLMRun,
        parse: Callable[[Any], Any],
    ) -> Any:  # fmt: skip
        """One request to ``route`` through the engine (limiter, retries, breaker); ``parse`` reads the reply
        and raises :class:`MalformedReply` for one it cannot use (retried like any malformed reply)."""
        body, options = split_params({}, params)
        request = {"model": self.model, **request, **body}

        async def post(client: openai.AsyncOpenAI) -> Any:
            reply = client.post(route, body=request, cast_to=dict, options=options)
            return parse(await asyncio.wait_for(reply, self._engine.timeout))

        return await self._engine._request(request, [], options, key, run, post)

    def _count(self, run: LLMRun, completion: Completion) -> None:
        self._engine._count(run, completion)
