"""A local OpenAI-compatible chat server for offline tests and demos (standard library only).

It serves ``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models`` on 127.0.0.1 with a
pluggable responder,
latency, fault injection, a request log and the peak number of requests in flight, and the Batch API
(``/v1/files``, ``/v1/batches``) with a controllable completion time, per-line errors and expiry.

Example:
    >>> from rare_hf.testing import LocalTeacher, Reply
    >>> with LocalTeacher(lambda request: "Hello") as teacher:
    ...     llm = rare_hf.LLM("test-model", base_url=teacher.url, api_key="EMPTY", cache_dir=False)
    ...     llm.complete([{"role": "user", "content": "Hi"}]).text
    'Hello'
    >>> teacher.fail_next(Reply.error(429, retry_after=1))   # the next request gets a 429
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..demo import demo_responder
from ._batch_server import BatchAPI
from ._embeddings import EmbedFunction, RerankFunction, hashed_embedding, serve_vectors, word_overlap
from .wire import Reply, Responder, completion_body, constrain_to_schema, count_tokens, error_body, write_body

__all__ = ["LocalTeacher", "Reply", "demo_responder", "count_tokens", "constrain_to_schema"]

_REASON = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_THINK = re.compile(r"^\s*<think>(.*?)(?:</think>|$)(.*)", re.DOTALL)


class LocalTeacher:
    """OpenAI-compatible server on 127.0.0.1, started and stopped by a context manager.

    Args:
        responder: Called with each request's JSON body; returns the reply text or a :class:`Reply`.
            Defaults to :func:`demo_responder`.
        latency: Seconds every reply waits before it is sent, or a function drawing it per request
            (e.g. ``lambda: random.lognormvariate(math.log(0.3), 1.0)`` for heavy-tailed generations).
        latency_per_in_flight: Seconds added per request being handled at the same time: a server that
            signals overload by queueing (vLLM, SGLang), not by status codes.
        random_faults: ``(probability, reply)`` pairs drawn independently for every chat request, e.g.
            ``[(0.1, Reply.error(429, retry_after=1))]`` for a provider's per-minute quota.
        seed: Seeds the draws of ``random_faults``.
        max_context_tokens: Prompts over this many tokens get the HTTP 400 vLLM sends (the window unsaid).
        context_window: Serve as llama.cpp does with slots of this many tokens: ``GET /props`` says it, a prompt
            over it gets llama.cpp's HTTP 400, a reply stops (``finish_reason="length"``) where the slot is full.
        reasoning_field: Serve the way reasoning-model parsers do: a reply's leading ``<think>`` block
            goes to ``message.<reasoning_field>`` (``"reasoning_content"`` on vLLM/DeepSeek/llama.cpp),
            the rest stays in ``content`` (``null`` when the reply was cut off while thinking).
        port: 0 picks a free port.
        models: Names listed by ``GET /v1/models``; a request for another model gets 404. ``None``
            accepts any model.
        api_key: When set, requests without ``Authorization: Bearer <api_key>`` get 401.
        keep_log: Keep every request body in :attr:`requests` (turn off for long benchmarks).
        structured_outputs: How a request with ``response_format`` (a JSON schema) is served: ``"ignore"``
            (the responder's reply as it is, as servers that drop unknown fields do), ``"honour"`` (as vLLM,
            SGLang, llama.cpp, Ollama and OpenAI do: the reply is JSON in the schema's shape, see
            :func:`constrain_to_schema`) or ``"reject"`` (HTTP 400, as servers without the feature do).
        tokenize: Serve vLLM's ``POST /tokenize`` (its tokens are :func:`count_tokens` words); ``False``
            answers 404 there, as OpenAI does.
        batch_seconds: Seconds a Batch API batch takes to complete. Its lines are answered like chat
            requests (responder, queued and random faults, context limit; no latency): a line whose reply
            is an error goes to the batch's error file. See :meth:`expire_next_batch`.
        embed: Serves ``POST /v1/embeddings``: a function from a list of texts to their vectors. Default:
            :func:`hashed_embedding` of each (deterministic, and a reworded copy of a text lands near it).
            Embedding requests get the queued and random faults and the latency as chat requests do.
        rerank: Serves ``POST /v1/rerank``: a function from a query and documents to their scores. Default:
            :func:`word_overlap` (the share of the query's words each document holds). Faults as for embeddings.

    Attributes:
        requests: Bodies of the chat requests received, in arrival order.
        embedding_requests / rerank_requests: Bodies of the embedding and rerank requests received, in order.
        http_log: ``(method, path with query, lower-cased headers)`` of every HTTP request.
        arrivals: ``time.monotonic()`` of each logged request.
        request_count: Chat requests that reached the responder (or a queued fault).
        http_request_count: Every HTTP request, including ones refused for the key or the model.
        peak_in_flight: Most chat requests being handled at the same time.
        batch_api: The Batch API's state: ``files``, ``batches`` and ``submitted_ids`` (the ``custom_id`` of
            every line of every batch created, in order).
        prompt_tokens / completion_tokens: Usage totals the server reported.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float | Callable[[], float] = 0.0,
        latency_per_in_flight: float = 0.0,
        random_faults: Sequence[tuple[float, Reply]] = (),
        seed: int = 0,
        max_context_tokens: int | None = None,
        context_window: int | None = None,
        reasoning_field: str | None = None,
        port: int = 0,
        models: list[str] | None = None,
        api_key: str | None = None,
        keep_log: bool = True,
        batch_seconds: float = 0.2,
        structured_outputs: str = "ignore",
        tokenize: bool = True,
        embed: EmbedFunction | None = None,
        rerank: RerankFunction | None = None,
    ) -> None:
        self.responder = responder or demo_responder
        self.latency = latency
        self.latency_per_in_flight = latency_per_in_flight
        self.random_faults = list(random_faults)
        self.max_context_tokens = max_context_tokens
        self.context_window = context_window
        self.reasoning_field = reasoning_field
        self._random = random.Random(seed)
        self.models = models
        self.api_key = api_key
        self.keep_log = keep_log
        self.requests: list[dict[str, Any]] = []
        self.http_log: list[tuple[str, str, dict[str, str]]] = []
        self.arrivals: list[float] = []
        self.request_count = 0
        self.http_request_count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._faults: list[Reply] = []
        self._lock = threading.Lock()
        self.batch_api = BatchAPI(self._answer_line, batch_seconds)
        if structured_outputs not in ("ignore", "honour", "reject"):
            raise ValueError(
                f"structured_outputs: expected 'ignore', 'honour' or 'reject', got {structured_outputs!r}."
            )
        self.structured_outputs = structured_outputs
        self.tokenize = tokenize
        self.embed = embed or (lambda texts: [hashed_embedding(t) for t in texts])
        self.rerank = rerank or word_overlap
        self.embedding_requests: list[dict[str, Any]] = []
        self.rerank_requests: list[dict[str, Any]] = []
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        """Base URL to give an OpenAI client, ending in ``/v1``."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def port(self) -> int:
        return self._port

    def fail_next(self, *faults: Reply, times: int = 1) -> None:
        """Answer the next requests with these faults (each repeated ``times``), then the responder again."""
        with self._lock:
            self._faults.extend(fault for fault in faults for _ in range(times))

    def expire_next_batch(self, after_lines: int) -> None:
        """The next batch created answers only its first ``after_lines`` lines, then expires."""
        self.batch_api.expire_next(after_lines)

    def reset(self) -> None:
        """Clear the log, the counters and pending faults."""
        with self._lock:
            self.requests.clear()
            self.embedding_requests.clear()
            self.rerank_requests.clear()
            self.http_log.clear()
            self.arrivals.clear()
            self._faults.clear()
            self.request_count = self.http_request_count = self.peak_in_flight = self.prompt_tokens = (
                self.completion_tokens
            ) = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> LocalTeacher:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="rare_hf-local-teacher", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("LocalTeacher did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    def __enter__(self) -> LocalTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self._port, backlog=4096)
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    # -- HTTP ------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if self.keep_log:
                    with self._lock:
                        self.http_log.append((method, path, headers))
                status, extra_headers, payload, drip = await self._dispatch(method, path.split("?")[0], headers, body)
                head = [
                    f"HTTP/1.1 {status} {_REASON.get(status, 'Status')}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                    *(f"{k}: {v}" for k, v in extra_headers),
                ]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                await write_body(writer, payload, drip)
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # server shutdown: end quietly instead of logging every open connection
        finally:
            writer.close()

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes, float | None]:
        with self._lock:
            self.http_request_count += 1
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, (), error_body("Incorrect API key provided.", "invalid_api_key"), None
        if method == "GET" and path.rstrip("/").endswith("/models"):
            models = [
                {"id": name, "object": "model", "owned_by": "rare_hf"} for name in self.models or ["rare-hf-local"]
            ]
            return 200, (), json.dumps({"object": "list", "data": models}).encode(), None
        if method == "GET" and path.rstrip("/") == "/props" and self.context_window is not None:
            props = {"default_generation_settings": {"n_ctx": self.context_window}, "total_slots": 1}
            return 200, (), json.dumps(props).encode(), None
        if (routed := await self.batch_api.dispatch(method, path, headers, body)) is not None:
            return routed
        if method == "POST" and path.rstrip("/") == "/tokenize" and self.tokenize:
            request = json.loads(body or b"{}")  # vLLM's shape: {"count", "tokens", "max_model_len"}
            tokens = str(request.get("prompt", "")).split()
            reply = {"count": len(tokens), "tokens": list(range(len(tokens))), "max_model_len": self.max_context_tokens}
            return 200, (), json.dumps(reply).encode(), None
        route = path.rstrip("/").rsplit("/", 1)[-1]
        if method == "POST" and route in ("embeddings", "rerank"):
            return await serve_vectors(self, route, json.loads(body or b"{}"))
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, (), error_body(f"No route {method} {path}", "not_found"), None
        request = json.loads(body or b"{}")
        if self.models is not None and request.get("model") not in self.models:
            message = f"The model '{request.get('model')}' does not exist"
            return 404, (), error_body(message, "model_not_found"), None
        fault = self._arrived(request)
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._respond(request, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _arrived(self, request: dict[str, Any]) -> Reply | None:
        """Count and log a chat request (online or a batch line); returns the fault it gets, if any."""
        with self._lock:
            self.request_count += 1
            if self.keep_log:
                self.requests.append(request)
                self.arrivals.append(time.monotonic())
            return self._faults.pop(0) if self._faults else self._random_fault()

    async def _answer_line(self, request: dict[str, Any]) -> tuple[int, bytes]:
        fault = self._arrived(request)
        if fault is not None and (fault.hang or fault.drip is not None):
            fault = Reply.error(500, message="the line's request did not complete")
        status, _, payload, _ = await self._respond(request, fault, wait=False)
        return status, payload

    def _random_fault(self) -> Reply | None:
        for probability, reply in self.random_faults:
            if self._random.random() < probability:
                return reply
        return None

    def _delay(self, reply: Reply) -> float:
        if reply.delay is not None:
            return reply.delay
        base = self.latency() if callable(self.latency) else self.latency
        return base + self.latency_per_in_flight * self.in_flight

    async def _respond(
        self, request: dict[str, Any], fault: Reply | None, *, wait: bool = True
    ) -> tuple[int, tuple, bytes, float | None]:
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in request.get("messages", []))
        if self.max_context_tokens is not None and prompt_tokens > self.max_context_tokens:
            message = (
                f"This model's maximum context length is {self.max_context_tokens} tokens. However, you "
                f"requested {prompt_tokens} tokens in the messages, Please reduce the length of the messages."
            )
            return 400, (), error_body(message, "context_length_exceeded"), None
        if self.context_window is not None and prompt_tokens > self.context_window:
            message = (
                f"request ({prompt_tokens} tokens) exceeds the available context size ({self.context_window} "
                "tokens), try increasing it"
            )
            return 400, (), error_body(message, "exceed_context_size_error"), None
        if request.get("response_format") and self.structured_outputs == "reject":
            message = "Unsupported parameter: 'response_format' is not supported by this server."
            return 400, (), error_body(message, "unsupported_parameter"), None
        reply = fault or self.responder(request)
        if isinstance(reply, str):
            reply = Reply(content=reply)
        schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema and self.structured_outputs == "honour" and reply.status == 200 and not reply.malformed:
            reply = dataclasses.replace(reply, content=constrain_to_schema(reply.content, schema))
        delay = self._delay(reply) if wait else 0.0
        if delay:
            await asyncio.sleep(delay)
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.malformed:
            return 200, (), b'{"this is": "not a chat completion"', None
        if reply.status != 200:
            return reply.status, reply.headers, error_body(reply.content, "injected"), None
        room = None if self.context_window is None else self.context_window - prompt_tokens
        if room is not None and count_tokens(reply.content) > room:  # the slot is full: generation stops
            reply = dataclasses.replace(reply, content=" ".join(reply.content.split()[:room]), finish_reason="length")
        completion_tokens = count_tokens(reply.content)
        message = self._message(reply)
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
        body = completion_body(
            f"chatcmpl-{self.request_count}", request, reply, message, prompt_tokens, completion_tokens
        )
        return 200, reply.headers, body, reply.drip

    def _message(self, reply: Reply) -> dict[str, Any]:
        match = _THINK.match(reply.content) if self.reasoning_field else None
        if match is None:
            return {"role": "assistant", "content": reply.content}
        thinking, rest = match.group(1).strip(), match.group(2).strip()
        content = None if reply.finish_reason == "length" and not rest else rest
        return {"role": "assistant", "content": content, self.reasoning_field: thinking}
