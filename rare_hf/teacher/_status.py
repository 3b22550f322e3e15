"""One chat request on the wire, and what an HTTP error means for it: retry, fail the row, or stop the run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import openai

from ..errors import LLMRequestError
from ._endpoint import Endpoint
from ._http import error_code, error_message, short
from ._limiter import Slot
from .replies import (
    Completion,
    fix_hint,
    parse_reply,
    refused_parameter,
    rejection_reason,
    rejection_signature,
    retry_after,
    status_kind,
)
from .usage import LLMRun

logger = logging.getLogger(__name__)


async def post_chat(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    options: dict[str, Any],
    timeout: float,
    optional: list[str],
    refused: dict[str, str],
) -> Completion:
    """Send ``body``, less the ``optional`` parameters in ``refused``, decided as the request leaves: rows
    queued behind the limiter when the first refusal came back never carry the refused parameter. A refusal
    of one (HTTP 400/422 naming it) is recorded in ``refused`` and the request goes again at once without it."""
    dropped = tuple(name for name in optional if name in refused)
    try:
        completion = await _post(client, {k: v for k, v in body.items() if k not in dropped}, options, timeout)
    except openai.APIStatusError as exc:
        reason = short(error_message(exc))
        name = refused_parameter(exc.status_code, reason, [n for n in optional if n not in dropped])
        if name is None:
            raise
        if name not in refused:
            logger.warning("The server refused %s (HTTP %s: %s); sending without it.", name, exc.status_code, reason)
        refused[name] = f"HTTP {exc.status_code}: {reason}"
        return await post_chat(client, body, options, timeout, optional, refused)
    return dataclasses.replace(completion, dropped=dropped) if dropped else completion


async def _post(
    client: openai.AsyncOpenAI, body: dict[str, Any], options: dict[str, Any], timeout: float
) -> Completion:
    # The SDK's typed create() re-walks every message through its TypedDict transformer and builds
    # pydantic models of the reply (~2 ms a request together, more than the rest of the client); our
    # messages are plain JSON already, so we send them through the SDK's documented generic request,
    # which keeps its error classes, and read the reply's few fields ourselves. The transport's own
    # timeouts are per read, so a server dripping bytes would never time out: the deadline is ours.
    reply = await asyncio.wait_for(client.post("/chat/completions", body=body, cast_to=dict, options=options), timeout)
    return parse_reply(reply)


def classify_status_error(
    exc: openai.APIStatusError, key: str, run: LLMRun, slot: Slot, endpoint: Endpoint, optional: bool
) -> tuple[str, float | None]:
    """Classify an HTTP error: returns (error, delay) for a retry, or raises for this row or the run.
    ``optional``: the request carried a parameter its step drops when refused (``response_format``), so a
    rejection says nothing about the prompts and does not count toward stopping the run."""
    status, message = exc.status_code, short(error_message(exc))
    error = f"HTTP {status}: {message}"
    kind = status_kind(status, error_code(exc))
    if kind == "fatal":
        run.stop(f"the endpoint {endpoint.display_url} answered {error.rstrip('.')}. {fix_hint(status)}")
        run.check()
    if kind == "rejected":
        slot.outcome = "error"
        if not optional:
            run.rejected(rejection_signature(status, message), key, error, fix_hint(status))
        run.check()
        run.count("failed")
        raise LLMRequestError(rejection_reason(status, message), status_code=status) from exc
    slot.outcome = "overload" if kind == "overload" else "error"
    return error, retry_after(exc.response.headers)
