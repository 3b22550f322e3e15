"""The teacher client: one engine for every LLM call, on the official ``openai`` SDK.

Adaptive concurrency (AIMD on 429/503, honouring ``Retry-After``), retries with exponential backoff and
jitter, a fail-fast stop on configuration errors, a circuit breaker, a crash-proof response cache and
per-run token accounting. Public methods are synchronous (they work in a notebook cell); ``a``-prefixed
twins are coroutines usable from any event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import random
import threading
import weakref
from pathlib import Path
from typing import Any, Literal

import openai

from ._limiter import AdaptiveLimiter
from ._loop import LoopThread
from .cache import ResponseCache, cache_key, default_cache_dir
from .errors import LLMConfigError, LLMFatalError, LLMRequestError

__all__ = ["LLM", "Completion", "Usage", "LLMRun"]

logger = logging.getLogger(__name__)

Messages = list[dict[str, Any]]

_RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_OVERLOAD_STATUS = frozenset({429, 503})
# Always a configuration problem, whichever request hits it: the key or the model is wrong.
_FATAL_STATUS = frozenset({401, 403, 404})
# A configuration problem when it is what the first requests of a run get (e.g. an unsupported
# parameter); later on it is more likely one row's fault (e.g. a document over the context length).
_FATAL_IF_FIRST_STATUS = frozenset({400, 422})
_BREAKER_WINDOW = 50
_BREAKER_FAILURE_RATIO = 0.9
_MAX_BACKOFF_S = 60.0


@dataclasses.dataclass(frozen=True)
class Completion:
    """One teacher reply.

    Attributes:
        text: The message content.
        finish_reason: As the server sent it; ``"length"`` means the reply was cut off.
        prompt_tokens / completion_tokens: Usage the server reported for it.
        cached: True when served from the response cache (no request was sent).
    """

    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclasses.dataclass
class Usage:
    """Counts for one run (a step) or for the whole life of an :class:`LLM`."""

    requests: int = 0
    cached: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, completion: Completion) -> None:
        if completion.cached:
            self.cached += 1
            return
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total_tokens": self.total_tokens}


@dataclasses.dataclass
class LLMRun:
    """State of one run (one step over one dataset): its usage, its circuit breaker and its fail-fast stop.

    Create it with :meth:`LLM.new_run` and pass it to every call of that run.
    """

    name: str = "run"
    usage: Usage = dataclasses.field(default_factory=Usage)
    fatal: LLMFatalError | None = None
    succeeded: bool = False
    recent: collections.deque[bool] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_BREAKER_WINDOW)
    )

    def check(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    def record(self, ok: bool, last_error: str = "") -> None:
        self.recent.append(ok)
        self.succeeded = self.succeeded or ok
        failures = self.recent.count(False)
        if len(self.recent) == self.recent.maxlen and failures >= _BREAKER_FAILURE_RATIO * len(self.recent):
            self.fatal = LLMFatalError(
                f"Stopped '{self.name}': {failures} of the last {len(self.recent)} requests failed "
                f"(last error: {last_error}). Check the endpoint; responses received so far are cached, "
                "so running the same call again resumes."
            )


class LLM:
    """A teacher model behind any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, Ollama, llama.cpp).

    Args:
        model: Model name. Defaults to ``$RARE_HF_MODEL``.
        base_url: Endpoint, e.g. ``http://localhost:8000/v1``. Defaults to ``$OPENAI_BASE_URL``, then OpenAI.
        api_key: Defaults to ``$OPENAI_API_KEY``. Local servers without auth accept any value, e.g. ``"EMPTY"``.
        max_concurrency: Most requests in flight at once, across every step using this object.
        temperature: Default sampling temperature (steps may override it per call).
        max_tokens: Default completion budget; ``None`` leaves it to the server.
        timeout: Seconds before one request is abandoned (and retried).
        max_retries: Retries of one request on 408/409/429/5xx, timeouts and connection errors.
        cache_dir: Folder of the response cache; ``False`` disables it. Default: :func:`default_cache_dir`.
        **extra_params: Sent with every request (``top_p``, ``seed``, ``response_format``, ...).

    Example:
        >>> llm = LLM("gpt-4o-mini")                                  # key from $OPENAI_API_KEY
        >>> llm = LLM("Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1", api_key="EMPTY")
        >>> llm.complete([{"role": "user", "content": "Hi"}]).text
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
        **extra_params: Any,
    ) -> None:
        self.model = model or os.environ.get("RARE_HF_MODEL")
        if not self.model:
            raise LLMConfigError(
                "No teacher model given: pass LLM(model=...) or set the RARE_HF_MODEL environment variable."
            )
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not self.api_key:
            raise LLMConfigError(
                "No API key: pass LLM(api_key=...) or set OPENAI_API_KEY. Local servers without "
                "authentication (vLLM, Ollama, llama.cpp) accept any value, e.g. api_key='EMPTY'."
            )
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise LLMConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}.")
        if max_concurrency < 1:
            raise LLMConfigError(f"max_concurrency must be >= 1, got {max_concurrency}.")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.default_params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, **extra_params}
        self.default_params = {k: v for k, v in self.default_params.items() if v is not None}
        self.cache_path: Path | None = (
            None if cache_dir is False else Path(cache_dir or default_cache_dir()) / "responses.sqlite"
        )
        self.usage = Usage()
        self._cache = ResponseCache(self.cache_path) if self.cache_path else None
        self._loop = LoopThread(name=f"rare_hf-llm-{self.model}")
        self._client: openai.AsyncOpenAI | None = None
        self._limiter: AdaptiveLimiter | None = None
        # Closes the HTTP session on the loop that owns it even when close() is never called (a notebook
        # that drops the object, or interpreter exit), instead of leaving aiohttp to complain at teardown.
        self._clients: list[openai.AsyncOpenAI] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._clients, self._cache)
        self._usage_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LLM(model={self.model!r}, base_url={self.base_url!r}, max_concurrency={self.max_concurrency})"

    # -- public API -------------------------------------------------------------------------------------
    def new_run(self, name: str = "run") -> LLMRun:
        """Start a run: its usage is counted apart and its failures stop only itself."""
        return LLMRun(name=name)

    def complete(
        self, messages: Messages, *, sample_index: int = 0, run: LLMRun | None = None, **params: Any
    ) -> Completion:
        """Send one chat request (or answer it from the cache) and return the reply.

        Args:
            messages: OpenAI chat messages.
            sample_index: Distinguishes deliberate resamples of the same prompt in the cache.
            run: The run to count this call in; a fresh one if omitted.
            **params: Sampling parameters overriding the defaults for this call.

        Raises:
            LLMRequestError: the request failed after all retries.
            LLMFatalError: the endpoint rejects requests for a reason no retry can fix.
        """
        return self._loop.run(self._complete(messages, sample_index, run or self.new_run(), params))

    async def acomplete(
        self, messages: Messages, *, sample_index: int = 0, run: LLMRun | None = None, **params: Any
    ) -> Completion:
        """Coroutine twin of :meth:`complete`, awaitable from any event loop."""
        coro = self._complete(messages, sample_index, run or self.new_run(), params)
        if self._loop.owns_running_loop():
            return await coro
        return await asyncio.wrap_future(self._loop.submit(coro))

    def complete_many(
        self, prompts: list[Messages], *, run: LLMRun | None = None, **params: Any
    ) -> list[Completion | LLMRequestError]:
        """Send many chat requests concurrently (within ``max_concurrency``) and return replies in order.

        A request that fails for good comes back as its :class:`LLMRequestError` in its slot instead of
        raising, so one bad prompt never discards the others; :class:`LLMFatalError` still raises.

        Example:
            >>> replies = llm.complete_many([[{"role": "user", "content": q}] for q in questions])
        """
        run = run or self.new_run()
        return self._loop.run(self._complete_many(prompts, run, params))

    async def _complete_many(
        self, prompts: list[Messages], run: LLMRun, params: dict[str, Any]
    ) -> list[Completion | LLMRequestError]:
        async def one(messages: Messages) -> Completion | LLMRequestError:
            try:
                return await self._complete(messages, 0, run, params)
            except LLMRequestError as exc:
                return exc

        return await gather_or_cancel([one(m) for m in prompts])

    def check_connection(self) -> None:
        """Ask the endpoint for its model list (free) and raise :class:`LLMConfigError` if it is
        unreachable or refuses the key. Servers that do not implement ``/models`` pass."""
        self._loop.run(self._check_connection())

    def close(self) -> None:
        """Close the HTTP client and the background loop (the cache stays on disk)."""
        self._finalizer()
        self._client = None
        self._cache = None

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- engine -----------------------------------------------------------------------------------------
    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine on this LLM's loop (where its client and limiter live) and wait for it."""
        return self._loop.run(coro)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.default_params, **params}
        return {k: v for k, v in merged.items() if v is not None}

    async def _complete(self, messages: Messages, sample_index: int, run: LLMRun, params: dict[str, Any]) -> Completion:
        run.check()
        params = self._params(params)
        key = cache_key(
            base_url=self.base_url, model=self.model, messages=messages, params=params, sample_index=sample_index
        )
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is not None:
            completion = Completion(**hit, cached=True)
        else:
            completion = await self._request(messages, params, run)
            if self._cache is not None:
                self._cache.put(key, completion.to_json())
        run.usage.add(completion)
        with self._usage_lock:
            self.usage.add(completion)
        return completion

    def _ensure_client(self) -> tuple[openai.AsyncOpenAI, AdaptiveLimiter]:
        if self._client is None or self._limiter is None:
            # Retries are ours (they must go through the limiter and honour Retry-After).
            self._client = openai.AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
                http_client=_http_client(),
            )
            self._limiter = AdaptiveLimiter(self.max_concurrency)
            self._clients.append(self._client)
        return self._client, self._limiter

    async def _request(self, messages: Messages, params: dict[str, Any], run: LLMRun) -> Completion:
        client, limiter = self._ensure_client()
        # The SDK's typed create() re-walks every message through its TypedDict transformer and builds
        # pydantic models of the reply (~2 ms a request together, more than the rest of the client); our
        # messages are plain JSON already, so we send them through the SDK's documented generic request,
        # which keeps its error classes, and read the reply's few fields ourselves.
        body = {"model": self.model, "messages": messages, **params}
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            run.check()
            retry_after: float | None = None
            async with limiter.slot() as slot:  # released even when this task is cancelled
                run.check()  # a fatal stop may have come while this request waited for its slot
                try:
                    completion = _to_completion(await client.post("/chat/completions", body=body, cast_to=dict))
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    error = f"HTTP {status}: {_short(_error_message(exc))}"
                    retry_after = _retry_after(exc.response.headers)
                    slot.overloaded, slot.retry_after = status in _OVERLOAD_STATUS, retry_after
                    self._mark_if_fatal(status, error, run)  # before the slot frees: no waiter sends after
                    if status not in _RETRYABLE_STATUS:
                        run.check()
                        run.record(False, error)
                        raise LLMRequestError(error, status_code=status) from exc
                except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                    error = f"{type(exc).__name__}: {_short(str(exc))}"
                except (openai.APIError, ValueError, TypeError) as exc:  # malformed body or reply
                    error = f"malformed response: {_short(str(exc))}"
                else:
                    slot.success = True
                    run.record(True)
                    return completion
            if attempt < self.max_retries:
                run.usage.retries += 1
                await asyncio.sleep(retry_after if retry_after is not None else _backoff(attempt))
        run.record(False, error)
        run.check()
        raise LLMRequestError(f"{error} (after {self.max_retries + 1} attempts)")

    def _mark_if_fatal(self, status: int, error: str, run: LLMRun) -> None:
        if status in _FATAL_STATUS or (status in _FATAL_IF_FIRST_STATUS and not run.succeeded):
            run.fatal = run.fatal or LLMFatalError(
                f"Stopped '{run.name}': the endpoint {self.base_url} answered {error}. {_fix_hint(status)}"
            )

    async def _check_connection(self) -> None:
        client, _ = self._ensure_client()
        try:
            await client.models.list()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise LLMConfigError(
                    f"{self.base_url} refused the API key (HTTP {exc.status_code}). {_fix_hint(401)}"
                ) from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise LLMConfigError(
                f"Cannot reach the teacher at {self.base_url} ({type(exc).__name__}). "
                "Check --base-url / OPENAI_BASE_URL and that the server is running."
            ) from exc


def _http_client() -> Any:
    """The SDK's aiohttp transport: its default httpx pool scans every connection for every request, which
    caps a few hundred concurrent requests at a fraction of what aiohttp sustains (openai's own advice)."""
    try:
        return openai.DefaultAioHttpClient()
    except (RuntimeError, AttributeError):  # aiohttp missing, or an SDK without it: the default transport
        return None


def _shutdown(loop: LoopThread, clients: list[openai.AsyncOpenAI], cache: ResponseCache | None) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            loop.run(client.close())
    clients.clear()
    loop.close()
    if cache is not None:
        cache.close()


async def gather_or_cancel(coros: list[Any]) -> list[Any]:
    """``asyncio.gather`` that cancels the siblings when one raises, so a fatal stop sends no more requests."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _to_completion(response: Any) -> Completion:
    """Read the fields we use from a chat completion body; anything else is a malformed reply."""
    if not isinstance(response, dict) or not response.get("choices"):
        raise ValueError("reply has no choices")
    choice = response["choices"][0]
    text = (choice.get("message") or {}).get("content")
    if not isinstance(text, str):
        raise ValueError("reply has no message content")
    usage = response.get("usage") or {}
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return min(float(value), _MAX_BACKOFF_S) if value is not None else None
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _backoff(attempt: int) -> float:
    return min(_MAX_BACKOFF_S, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _fix_hint(status: int) -> str:
    return {
        401: "Check the API key (OPENAI_API_KEY or LLM(api_key=...)).",
        403: "The key is not allowed to use this model or endpoint.",
        404: "Check the model name (RARE_HF_MODEL or LLM(model=...)) and that base_url ends with /v1.",
    }.get(
        status,
        "The server rejects the request itself: check the model's supported parameters "
        "(max_tokens, response_format, extra params) and the prompt length.",
    )
