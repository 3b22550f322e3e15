"""The HTTP plumbing under :class:`rare_hf.LLM`: the shared connection pool, shutdown, backoff and the
wording of an endpoint's errors."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from typing import Any

import openai

from ._loop import LoopThread
from .cache import ResponseCache
from .usage import LLMRun, Usage

_MAX_BACKOFF_S = 60.0


def single_call_run(lifetime: Usage) -> LLMRun:
    """The run of a call made without one: it counts apart but, unlike a step, does not restart the
    endpoint's concurrency probing (callers may gather thousands of such calls)."""
    return LLMRun(name="call", started=True, lifetime=lifetime)


def http_client() -> Any:
    """The SDK's aiohttp transport: its default httpx pool scans every connection for every request, which
    caps a few hundred concurrent requests at a fraction of what aiohttp sustains (openai's own advice)."""
    try:
        return openai.DefaultAioHttpClient()
    except (RuntimeError, AttributeError):  # aiohttp missing, or an SDK without it: the default transport
        return None


def shutdown(
    loop: LoopThread, clients: list[openai.AsyncOpenAI], cache: ResponseCache | None, owned: list[Any]
) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            loop.run(client.close())
    clients.clear()
    loop.close()
    if cache is not None:
        cache.close()
    while owned:  # after the clients: no request is left to cut off
        owned.pop().close()


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


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message


def error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    return body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else None


def backoff(attempt: int) -> float:
    return min(_MAX_BACKOFF_S, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)


def short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# openai SDK request options that are not body fields.
_OPTION_KEYS = ("extra_body", "extra_headers", "extra_query")


def split_params(defaults: dict[str, Any], params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Body fields (``extra_body`` merged in, as the SDK does) and request options (headers, query) of a call's
    parameters over the LLM's defaults."""
    merged = {k: v for k, v in {**defaults, **params}.items() if v is not None}
    extra = {k: merged.pop(k) for k in _OPTION_KEYS if k in merged}
    body = {**merged, **(extra.get("extra_body") or {})}
    options = {"headers": extra.get("extra_headers"), "params": extra.get("extra_query")}
    return body, {k: v for k, v in options.items() if v}


def connection_problem(exc: BaseException) -> str | None:
    """What went wrong on the way to the server, from the innermost cause (``None``: a plain timeout). The
    SDK's aiohttp transport reports a refused connection as a timeout (``APITimeoutError`` from
    ``ConnectTimeout``), which sends people looking at the wrong thing."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in reversed(seen):
        if isinstance(error, ConnectionRefusedError):
            return "connection refused: nothing listens at that address"
        if isinstance(error, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(error, ssl.SSLError):
            return f"the TLS handshake failed ({short(str(error))})"
        if isinstance(error, (ConnectionResetError, ConnectionAbortedError)):
            return "the server closed the connection"
    if any(isinstance(e, (asyncio.TimeoutError, openai.APITimeoutError)) for e in seen):
        return None
    return f"{type(exc).__name__}: {short(str(exc))}"
