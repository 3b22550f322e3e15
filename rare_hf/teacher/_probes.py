"""Questions to a server beside chat completions: can it serve us at all, and how does it count tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from ._http import connection_problem
from .replies import fix_hint


async def server_tokens(client: openai.AsyncOpenAI, model: str | None, text: str, timeout: float) -> int | None:
    """Tokens of ``text`` by the server's ``/tokenize`` (None when it has none, or its reply has no count)."""
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    # vLLM answers {"count": n}; llama.cpp's server answers {"tokens": [...]} to {"content": ...}.
    body = {"model": model, "prompt": text, "content": text, "add_special_tokens": False}
    try:
        reply = await asyncio.wait_for(client.post(f"{root}/tokenize", body=body, cast_to=dict), timeout)
    except (openai.APIError, asyncio.TimeoutError, TypeError, ValueError):
        return None
    if not isinstance(reply, dict):
        return None
    if isinstance(reply.get("count"), int):
        return reply["count"]
    return len(reply["tokens"]) if isinstance(reply.get("tokens"), list) else None


async def endpoint_problem(client: openai.AsyncOpenAI, display_url: str, timeout: float) -> str | None:
    """Why this endpoint cannot serve (one line), or None. Servers without ``/models`` pass."""
    try:
        await asyncio.wait_for(client.models.list(), timeout)
    except openai.APIStatusError as exc:
        if exc.status_code in (401, 403):
            return f"{display_url} refused the API key (HTTP {exc.status_code}). {fix_hint(401)}"
    except (asyncio.TimeoutError, openai.APITimeoutError, openai.APIConnectionError) as exc:
        problem = connection_problem(exc) or f"no answer within {timeout:g} s"
        return (
            f"Cannot reach the teacher at {display_url} ({problem}). "
            "Check --base-url / OPENAI_BASE_URL and that the server is running."
        )
    return None


async def server_context(client: openai.AsyncOpenAI, model: str, timeout: float) -> tuple[int | None, str]:
    """The tokens one request may hold (prompt and reply), and where that was read; ``(None, "")`` when the
    server does not say (OpenAI and most hosted APIs)."""
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    reply = await _get(client, f"{root}/props", timeout)  # llama.cpp: the window of one slot
    settings = reply.get("default_generation_settings") if isinstance(reply, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
        return settings["n_ctx"], "server /props"
    reply = await _get(client, "models", timeout)  # vLLM: max_model_len of each model it serves
    for entry in reply.get("data", []) if isinstance(reply, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == model and isinstance(entry.get("max_model_len"), int):
            return entry["max_model_len"], "server /v1/models"
    return None, ""


async def _get(client: openai.AsyncOpenAI, path: str, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(client.get(path, cast_to=dict), timeout)
    except (openai.APIError, asyncio.TimeoutError, TypeError, ValueError):
        return None
