"""The teacher client: one engine for every LLM call, on the official ``openai`` SDK.

Each attempt has a deadline that covers connect, headers and body. An adaptive concurrency limit per
endpoint (``_limiter``) tells overload from noise; retries back off with jitter and honour ``Retry-After``;
a breaker over attempts stops a run against a dead endpoint within a few dozen requests; a rejected
prompt fails its own row unless several different prompts are rejected alike before any success.
Replies (and their usage) go to a crash-proof response cache. Public methods are synchronous (they work
in a notebook cell); ``a``-prefixed twins are coroutines usable from any event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import openai

from ..errors import LLMClosedError, LLMRequestError
from ._batch import BatchQueue
from ._config import resolve
from ._endpoint import Endpoint, Fleet
from ._http import backoff, connection_problem, gather_or_cancel, http_client, short
from ._http import shutdown, single_call_run, split_params
from ._loop import LoopThread
from .local import local_llm
from ._probes import ServerFacts, check_endpoints
from ._status import classify_status_error, post_chat
from .cache import ResponseCache, cache_key, open_cache
from .replies import Completion, MalformedReply
from .usage import LLMRun, Price, Usage

__all__ = ["LLM", "Completion", "Price", "Usage", "LLMRun", "NOT_CACHED"]

NOT_CACHED = "not in the response cache (cache_only)"

logger = logging.getLogger(__name__)

Messages = list[dict[str, Any]]


class LLM:
    """A teacher model behind any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, Ollama, llama.cpp).

    Args:
        model: Model name. Defaults to ``$RARE_HF_MODEL``.
        base_url: Endpoint, e.g. ``http://localhost:8000/v1``, or a list of replicas serving the same model
            (``["http://gpu1:8000/v1", "http://gpu2:8000/v1"]``): each attempt goes to the one with the most
            spare capacity, and a failing one rests while the others carry on. Defaults to
            ``$OPENAI_BASE_URL``, then OpenAI. Credentials in a URL (``http://user:password@host/v1``, for a
            proxy with basic auth) are sent as basic auth in place of the API key, and never shown.
        api_key: Defaults to ``$OPENAI_API_KEY``; not needed for a server on this machine (``localhost``,
            ``127.0.0.1``), which gets ``"EMPTY"``.
        max_concurrency: Most requests in flight at once per endpoint, across every step using this object.
            The engine starts lower and probes upward while the endpoint stays healthy.
        temperature: Default sampling temperature (steps may override it per call).
        max_tokens: Default completion budget; ``None`` leaves it to the server.
        timeout: Seconds one attempt may take from connecting to the last byte of the reply; then it is
            abandoned and retried.
        max_retries: Retries of one request on 408/409/429/500/502/503/504, timeouts, connection errors
            and malformed replies.
        cache_dir: Folder of the response cache, or a :class:`rare_hf.ResponseCache` to use as it is (a worker's
            own file in a shared folder); ``False`` disables it. Default: :func:`default_cache_dir`.
        cache_namespace: Kept apart in the cache: two different servers that serve one model name.
        batch: Send the requests through the OpenAI Batch API (half the price, no rate limits, results
            within 24 h) instead of one by one; the steps do not change. Needs the cache, which also keeps
            the submitted batch ids: a killed run re-run with the same cache collects its batches instead
            of submitting them again.
        batch_poll_interval: Most seconds between two status checks of a submitted batch (the first checks
            come sooner, backing off from half a second).
        price_per_million: ``(input_usd, output_usd)`` per million tokens: summaries, progress bars and the
            dataset card then show dollars (the batch discount applied in batch mode).
        context_window: Tokens the server holds per request, prompt and reply together; prompts that show
            documents are cut to fit it. Default: asked of the server (llama.cpp ``/props``, vLLM
            ``max_model_len`` in ``/v1/models``); unknown elsewhere, where nothing is cut for it.
        max_failure_rate: Stop a step (:class:`LLMFatalError`, replies stay cached) once 200 rows have finished
            and this share of them failed: a teacher that cannot follow the prompt costs a few hundred rows, not
            the corpus. ``None`` turns the check off.
        **extra_params: Sent with every request (``top_p``, ``seed``, ``response_format``, ...), and the
            openai SDK's ``extra_body``, ``extra_headers`` and ``extra_query``, which behave as there
            (e.g. ``extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}`` on vLLM).

    Example:
        >>> llm = LLM("gpt-4o-mini")                                  # key from $OPENAI_API_KEY
        >>> llm = LLM("Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1", api_key="EMPTY")
        >>> llm.complete([{"role": "user", "content": "Hi"}]).text
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        cache_dir: str | os.PathLike[str] | ResponseCache | Literal[False] | None = None,
        cache_namespace: str | None = None,
        batch: bool = False,
        batch_poll_interval: float = 30.0,
        price_per_million: tuple[float, float] | None = None,
        max_failure_rate: float | None = 0.9,
        context_window: int | None = None,
        **extra_params: Any,
    ) -> None:
        self.model, self.api_key, urls = resolve(
            model, api_key, base_url, max_concurrency, timeout, max_retries, max_failure_rate, context_window,
            batch=batch, cache=cache_dir is not False,
        )  # fmt: skip
        self.max_failure_rate = max_failure_rate
        self.base_urls, self.base_url = urls, urls[0]
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.cache_namespace = cache_namespace
        self.default_params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, **extra_params}
        self.default_params = {k: v for k, v in self.default_params.items() if v is not None}
        self.batch = batch
        self.price = None if price_per_million is None else Price(*price_per_million, discount=0.5 if batch else 1.0)
        self.usage = Usage(price=self.price)
        self._cache = open_cache(cache_dir)
        self.cache_path: Path | None = self._cache.path if self._cache is not None else None
        self._loop = LoopThread(name=f"rare_hf-llm-{self.model}")
        self._endpoints = [Endpoint(u, max_concurrency, rests=len(urls) > 1) for u in urls]
        self._fleet = Fleet(self._endpoints)
        self._closed = self._cache_only = False
        # Closes the HTTP session on the loop that owns it even when close() is never called (a notebook
        # that drops the object, or interpreter exit), instead of leaving aiohttp to complain at teardown.
        self._clients: list[openai.AsyncOpenAI] = []
        self._owned: list[Any] = []  # what closes with this object (a local server), after the clients
        self._finalizer = weakref.finalize(self, shutdown, self._loop, self._clients, self._cache, self._owned)
        self._usage_lock = threading.Lock()
        self._batch_poll_interval = batch_poll_interval
        self.refused_params: dict[str, str] = {}  # optional parameters the server refused, and how
        self.facts = ServerFacts(context_window)  # its tokenizer and context window, asked once
        self._batches: BatchQueue | None = None

    local = classmethod(local_llm)

    @property
    def display_url(self) -> str:
        """The endpoint URL(s) without credentials: the form every message, summary and card shows."""
        return ", ".join(e.display_url for e in self._endpoints)

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (``None`` when disabled)."""
        return self._cache

    @property
    def total_concurrency(self) -> int:
        """Most requests in flight over all endpoints."""
        return self.max_concurrency * len(self._endpoints)

    def __repr__(self) -> str:
        return f"LLM(model={self.model!r}, base_url={self.display_url!r}, max_concurrency={self.max_concurrency})"

    # -- public API -------------------------------------------------------------------------------------
    def new_run(self, name: str = "run") -> LLMRun:
        """Start a run: its usage is counted apart, its failures stop only itself, and the endpoint's
        concurrency starts it from a healthy state."""
        self._check_open()
        return LLMRun(name, Usage(price=self.price), lifetime=self.usage, max_failure_rate=self.max_failure_rate)

    def complete(
        self, messages: Messages, *, sample_index: int = 0, run: LLMRun | None = None, **params: Any
    ) -> Completion:
        """Send one chat request (or answer it from the cache) and return the reply.

        Args:
            messages: OpenAI chat messages.
            sample_index: Distinguishes deliberate resamples of the same prompt in the cache.
            run: The run to count this call in (:meth:`new_run`); without one the call counts on its own.
            **params: Sampling parameters overriding the defaults for this call.

        Raises:
            LLMRequestError: the request failed after all retries, or the server rejected it.
            LLMFatalError: the endpoint rejects requests for a reason no retry can fix.
            LLMClosedError: :meth:`close` was called.
        """
        self._check_open()
        return self._loop.run(self._complete(messages, sample_index, run or single_call_run(self.usage), params, {}))

    async def acomplete(
        self,
        messages: Messages,
        *,
        sample_index: int = 0,
        run: LLMRun | None = None,
        optional: dict[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        """Coroutine twin of :meth:`complete`, awaitable from any event loop. ``optional``: parameters a server
        may not implement (``response_format``), sent until it refuses one (400/422 naming it), then left out of
        every request as it leaves; the reply's ``dropped`` and :attr:`refused_params` say so."""
        self._check_open()
        coro = self._complete(messages, sample_index, run or single_call_run(self.usage), params, optional or {})
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

        async def one(messages: Messages) -> Completion | LLMRequestError:
            try:
                return await self._complete(messages, 0, run, params, {})
            except LLMRequestError as exc:
                return exc

        return self._loop.run(gather_or_cancel([one(m) for m in prompts]))

    def is_cached(self, messages: Messages, *, sample_index: int = 0, **params: Any) -> bool:
        """Whether :meth:`complete` with these arguments would be answered from the cache (nothing is sent)."""
        self._check_open()
        if self._cache is None:
            return False
        key = self._cache_key(messages, sample_index, *split_params(self.default_params, params))
        return self._cache.get(key) is not None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the server's own tokenizer (``/tokenize``, as vLLM and llama.cpp serve it), or
        a conservative estimate (:func:`rare_hf.text.tokens.estimate_tokens`) when the server has none;
        ``facts.tokenizer`` says which was used."""
        self._check_open()
        return self._loop.run(self.acount_tokens(text))

    async def acount_tokens(self, text: str) -> int:
        """Coroutine twin of :meth:`count_tokens`."""
        return await self.facts.tokens(self._client(self._endpoints[0]), self.model, text, self.timeout)

    async def acontext_window(self) -> int | None:
        """Tokens the server holds per request (prompt and reply), or None when it does not say; asked once
        (:attr:`facts` says where it was read)."""
        return await self.facts.window(self._client(self._endpoints[0]), self.model, self.timeout)

    def check_connection(self) -> None:
        """Ask the endpoint for its model list (free) and raise :class:`LLMConfigError` if it is
        unreachable or refuses the key. Servers that do not implement ``/models`` pass."""
        self._check_open()
        self._loop.run(check_endpoints([(self._client(e), e.display_url) for e in self._endpoints], self.timeout))

    @contextlib.contextmanager
    def cache_only(self) -> Iterator[None]:
        """Within the block, a call the cache cannot answer raises ``LLMRequestError(NOT_CACHED)`` (dry runs)."""
        before, self._cache_only = self._cache_only, True
        self.facts.offline = True  # nor a token count, nor the window: a dry run sends nothing
        try:
            yield
        finally:
            self._cache_only = self.facts.offline = before

    def close(self) -> None:
        """Close the HTTP client and the background loop (the cache stays on disk). Using the object
        afterwards raises :class:`LLMClosedError`."""
        self._closed = True
        self._finalizer()
        self._cache = None

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- engine -----------------------------------------------------------------------------------------
    def run_sync(self, coro: Any) -> Any:
        """Run a coroutine on this LLM's loop (where its client and limiter live) and wait for it."""
        if self._closed:
            coro.close()
        self._check_open()
        return self._loop.run(coro)

    def _check_open(self) -> None:
        if self._closed:
            raise LLMClosedError(
                f"{self!r} was closed; its HTTP session and cache are released. Create a new rare_hf.LLM "
                "(the response cache on disk is reused)."
            )

    def _cache_key(self, messages: Messages, sample_index: int, body: dict[str, Any], options: dict[str, Any]) -> str:
        params = {**body, "extra_query": options.get("params")}
        return cache_key(model=self.model, messages=messages, params=params, sample_index=sample_index,
                         namespace=self.cache_namespace)  # fmt: skip

    async def _complete(
        self, messages: Messages, sample_index: int, run: LLMRun, params: dict[str, Any], optional: dict[str, Any]
    ) -> Completion:
        run.check()
        body, options = split_params(self.default_params, {**params, **optional})
        key = self._cache_key(messages, sample_index, body, options)
        hit = self._cache.get(key) if self._cache is not None else None
        request = {"model": self.model, "messages": messages, **body}
        if hit is not None:
            completion = Completion(**hit, cached=True)
            run.succeeded = True
        elif self._cache_only:
            raise LLMRequestError(NOT_CACHED)
        elif self.batch:
            completion = await self._batch_queue().request(key, request, run)
        else:
            completion = await self._request(request, list(optional), options, key, run)
            if self._cache is not None:
                self._cache.put(key, completion.to_json())
        run.last_reply = completion.text
        self._count(run, completion)
        return completion

    def _batch_queue(self) -> BatchQueue:
        if self._batches is None:
            assert self._cache is not None and self.cache_path is not None
            self._batches = BatchQueue(
                self._client(self._endpoints[0]), self._cache, self.cache_path.parent / "batches.jsonl",
                poll_interval=self._batch_poll_interval, quiet=min(1.0, self._batch_poll_interval),
                max_rounds=self.max_retries, count_paid=lambda run, p, c: self._count(run, Completion("", None, p, c)),
            )  # fmt: skip
        return self._batches

    def _client(self, endpoint: Endpoint) -> openai.AsyncOpenAI:
        self._check_open()
        if endpoint.client is None:
            # The batch calls (file upload) use the SDK's default transport; the chat calls use aiohttp.
            transport = None if self.batch else http_client()
            self._clients.append(endpoint.client_for(self.api_key, self.timeout, transport))
        assert endpoint.client is not None
        return endpoint.client

    async def _request(
        self, body: dict[str, Any], optional: list[str], options: dict[str, Any], key: str, run: LLMRun,
        post: Callable[[openai.AsyncOpenAI], Awaitable[Any]] | None = None,
    ) -> Any:  # fmt: skip
        """One request through the limiter, retries and breaker: a chat completion, or what ``post`` sends."""
        send = post or (lambda client: post_chat(client, body, options, self.timeout, optional, self.refused_params))
        if not run.started:
            run.started = True
            for endpoint in self._endpoints:
                endpoint.limiter.new_epoch()
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            run.check()
            delay: float | None = None
            throttled = False
            async with self._fleet.slot() as (endpoint, slot):  # released even when this task is cancelled
                run.check()  # a fatal stop may have come while this request waited for its slot
                client = self._client(endpoint)
                endpoint.sent += 1
                run.endpoints[endpoint.display_url] += 1
                sent_at = time.monotonic()
                try:
                    completion = await send(client)
                except openai.APIStatusError as exc:
                    error, delay = classify_status_error(exc, key, run, slot, endpoint, "response_format" in body)
                    throttled = exc.status_code == 429
                except (asyncio.TimeoutError, openai.APIConnectionError) as exc:  # timeouts included
                    problem = connection_problem(exc)
                    slot.outcome = "timeout" if problem is None else "error"
                    error = problem or f"timeout: no complete reply within {self.timeout:g} s"
                except (openai.APIError, ValueError, TypeError) as exc:  # malformed body or reply
                    if isinstance(exc, MalformedReply):
                        self._count(run, Completion("", None, exc.prompt_tokens, exc.completion_tokens))
                    slot.outcome, error = "error", f"malformed response: {short(str(exc))}"
                else:
                    slot.outcome, slot.latency = "ok", time.monotonic() - sent_at
                    endpoint.succeeded()
                    run.attempt(True)
                    return completion
                if not throttled:  # a throttling endpoint is alive: that is the limiter's business
                    endpoint.failed()
                    run.attempt(False, error)
            if attempt < self.max_retries:
                run.count("retries")
                await asyncio.sleep(delay if delay is not None else backoff(attempt))
        run.count("failed")
        run.check()
        raise LLMRequestError(f"{error} (after {self.max_retries + 1} attempts)")

    def _count(self, run: LLMRun, completion: Completion) -> None:
        """A reply (sent or cached), in the run's usage and this LLM's; the embeddings and rerank clients too."""
        run.usage.add(completion)
        with self._usage_lock:
            self.usage.add(completion)
