"""Questions to a server beside chat completions: can it serve us at all, and how does it count tokens."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import openai

from ..errors import LLMConfigError
from ..text.tokens import estimate_tokens
from ._http import connection_problem
from .replies import fix_hint

logger = logging.getLogger(__name__)


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


class ServerFacts:
    """What a server says of its model, asked once per :class:`rare_hf.LLM` and shared by every step: how it
    counts tokens, and how many one request may hold.

    Attributes:
        tokenizer: ``"server /tokenize"`` or ``"estimated"`` once a count was asked for, else None.
        context_window: Tokens per request (prompt and reply), once asked; None when the server does not say.
        context_source: Where the window was read (``"server /props"``, ``"context_window="``...), once asked.
    """

    def __init__(self, context_window: int | None = None) -> None:
        self.tokenizer: str | None = None
        self.context_window, self.context_source = context_window, "context_window=" if context_window else ""
        self._asked = context_window is not None
        self.offline = False  # True while nothing may be sent (a dry run): estimates, and no probe
        self._probe: asyncio.Future[tuple[int | None, str]] | None = None

    async def tokens(self, client: openai.AsyncOpenAI, model: str, text: str, timeout: float) -> int:
        if self.tokenizer == "estimated" or self.offline:  # a server without /tokenize will not grow one
            return estimate_tokens(text)
        count = await server_tokens(client, model, text, timeout)
        self.tokenizer = "estimated" if count is None else "server /tokenize"
        return estimate_tokens(text) if count is None else count

    async def window(self, client: openai.AsyncOpenAI, model: str, timeout: float) -> int | None:
        # Rows ask all at once when a step starts: one probe, the others wait for its answer.
        if not self._asked and not self.offline:
            if self._probe is None or self._probe.get_loop() is not asyncio.get_running_loop():
                self._probe = asyncio.ensure_future(server_context(client, model, timeout))
            self.context_window, self.context_source = await asyncio.shield(self._probe)
            self._asked = True
        return self.context_window


async def check_endpoints(endpoints: list[tuple[openai.AsyncOpenAI, str]], timeout: float) -> None:
    """Raise :class:`LLMConfigError` when no endpoint can serve; warn about each one that cannot."""
    problems = [await endpoint_problem(client, url, timeout) for client, url in endpoints]
    if all(problems):
        raise LLMConfigError(problems[0])
    for problem in filter(None, problems):
        logger.warning("%s The other endpoints carry the run.", problem)
