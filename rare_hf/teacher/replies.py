"""What a teacher's HTTP answer means: a reply (with its thinking), a retryable fault, a row's own fault,
or a configuration error that stops the run."""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any, Literal

from ..errors import MalformedReply

# Retried: a later attempt can succeed (as huggingface_hub's http_backoff: 429 and 500/502/503/504).
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_OVERLOAD_STATUS = frozenset({429, 503})
# Always a configuration problem, whichever request hits it: the key or the model is wrong.
_FATAL_STATUS = frozenset({401, 403, 404})
# A 429 that no waiting fixes: OpenAI's answer when the account's credit is used up.
_FATAL_CODES = frozenset({"insufficient_quota"})
_MAX_RETRY_AFTER_S = 60.0

StatusKind = Literal["overload", "retry", "fatal", "rejected"]

_CONTEXT_LENGTH = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long|input is too long"
    r"|exceeds? the (model'?s? )?(max|maximum|context)|longer than the model",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Completion:
    """One teacher reply.

    Attributes:
        text: The message content (``""`` when a reasoning model spent its whole budget thinking).
        finish_reason: As the server sent it; ``"length"`` means the reply was cut off.
        prompt_tokens / completion_tokens: Usage the server reported for it.
        cached: True when served from the response cache (no request was sent).
        reasoning: The thinking a reasoning-model server returns apart from the content
            (``reasoning_content`` on vLLM, DeepSeek and llama.cpp; ``reasoning`` on others), else ``None``.
        dropped: Optional parameters left out because the server refuses them (``LLM.acomplete(optional=...)``).
    """

    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    reasoning: str | None = None
    dropped: tuple[str, ...] = ()

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["cached"]
        return data


def parse_reply(body: Any) -> Completion:
    """Read the fields we use from a chat completion body; anything else is a :class:`MalformedReply`."""
    if not isinstance(body, dict) or not body.get("choices"):
        raise MalformedReply("reply has no choices", *_usage(body))
    choice = body["choices"][0] if isinstance(body["choices"], list) else None
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    finish_reason = choice.get("finish_reason")
    text = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, str) and reasoning.strip() else None
    if text is None and (finish_reason == "length" or reasoning is not None):
        text = ""  # a reasoning model cut off while thinking, or one that answered only in its thinking
    if not isinstance(text, str):
        raise MalformedReply("reply has no message content", *_usage(body))
    return Completion(text, finish_reason, *_usage(body), reasoning=reasoning)


def _usage(body: Any) -> tuple[int, int]:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def status_kind(status: int, code: str | None = None) -> StatusKind:
    """``overload`` and ``retry`` are retried; ``fatal`` stops the run; ``rejected`` fails the request
    (and stops the run when several different prompts are rejected alike before any success)."""
    if code in _FATAL_CODES:
        return "fatal"
    if status in _OVERLOAD_STATUS:
        return "overload"
    if status in _RETRYABLE_STATUS:
        return "retry"
    if status in _FATAL_STATUS:
        return "fatal"
    return "rejected"


def rejection_reason(status: int, message: str) -> str:
    """The row's failure reason for a rejected request, saying what to do where we know."""
    if _CONTEXT_LENGTH.search(message):
        return f"prompt too long for the model's context (HTTP {status}: {message}); lower max_doc_chars"
    return f"HTTP {status}: {message}"


def rejection_signature(status: int, message: str) -> str:
    """Rejections that differ only in numbers (token counts, offsets) are the same rejection."""
    return f"{status}:{re.sub(r'[0-9]+', '#', message)[:200]}"


def retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def fix_hint(status: int) -> str:
    return {
        401: "Check the API key (OPENAI_API_KEY or LLM(api_key=...)).",
        403: "The key is not allowed to use this model or endpoint.",
        404: "Check the model name (RARE_HF_MODEL or LLM(model=...)) and that base_url ends with /v1.",
        429: "The account's quota is used up: check the plan and billing, then run the same call again.",
    }.get(
        status,
        "The server rejects the request itself: check the model's supported parameters "
        "(max_tokens, response_format, extra_body) and the prompt length (max_doc_chars).",
    )


_LOOP_TAIL_CHARS = 4000
_LOOP_MIN_CHARS = 600
_LOOP_RATIO = 0.15  # prose compresses to ~0.35-0.5 of its size; a loop to a few percent


def is_repetitive(text: str) -> bool:
    """Whether the end of a reply is a loop (the same phrases over and over), judged by how well it compresses."""
    tail = text[-_LOOP_TAIL_CHARS:].encode()
    return len(tail) >= _LOOP_MIN_CHARS and len(zlib.compress(tail)) / len(tail) < _LOOP_RATIO


# What servers say when they refuse a parameter they do not implement, per parameter.
_PARAMETER_WORDS = {"response_format": ("response_format", "json_schema", "schema", "structured", "guided")}


def refused_parameter(status: int, message: str, candidates: list[str]) -> str | None:
    """The parameter among ``candidates`` that a 400/422 ``message`` refuses (not, say, the prompt's length)."""
    if status not in (400, 422):
        return None
    text = message.lower()
    for name in candidates:
        if any(word in text for word in _PARAMETER_WORDS.get(name, (name,))):
            return name
    return None
