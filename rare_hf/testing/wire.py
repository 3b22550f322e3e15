"""What :class:`~rare_hf.testing.LocalTeacher` puts on the wire: a scripted :class:`Reply` (faults included),
its body written at once or dripped byte by byte, token counts, and what a schema-constrained server returns."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from ..text.parsing import iter_json_objects  # the parser the steps use

__all__ = ["Reply", "Responder", "count_tokens", "constrain_to_schema", "write_body", "error_body", "completion_body"]


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the server answers to one request; build faults with the class methods."""

    content: str = ""
    finish_reason: str = "stop"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False
    malformed: bool = False
    delay: float | None = None
    drip: float | None = None

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None, message: str = "injected fault") -> Reply:
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        return cls(content=message, status=status, headers=headers)

    @classmethod
    def hang_forever(cls) -> Reply:
        """Never answer (until the client gives up): a request past the client's timeout."""
        return cls(hang=True)

    @classmethod
    def malformed_body(cls) -> Reply:
        """HTTP 200 with a body that is not a chat completion."""
        return cls(malformed=True)

    @classmethod
    def truncated(cls, content: str) -> Reply:
        return cls(content=content, finish_reason="length")

    @classmethod
    def slow_drip(cls, content: str = "slow", *, interval: float = 1.0) -> Reply:
        """Send the headers at once, then the body one byte every ``interval`` seconds (a proxy keeping a
        stalled connection alive, a GPU box swapping)."""
        return cls(content=content, drip=interval)


Responder = Callable[[dict[str, Any]], "str | Reply"]


def count_tokens(text: str) -> int:
    """The server's token count: whitespace-separated words (deterministic, so tests can sum it)."""
    return len(text.split())


async def write_body(writer: asyncio.StreamWriter, payload: bytes, drip: float | None) -> None:
    if drip is None:
        writer.write(payload)
        await writer.drain()
        return
    for i in range(len(payload)):
        writer.write(payload[i : i + 1])
        await writer.drain()
        await asyncio.sleep(drip)


def constrain_to_schema(text: str, schema: dict[str, Any]) -> str:
    """What a schema-constrained server makes of a reply: a JSON object with exactly the schema's properties.

    The responder's last JSON object supplies the fields it has; the first string property (the reasoning
    field) gets the text before that object; a missing string is ``""``, a missing list ``[]``. The values
    are not otherwise checked, as constrained decoding guarantees the shape, not the content.
    """
    objects = list(iter_json_objects(text))
    found = objects[-1] if objects else {}
    before = text.split("```json")[0].strip()
    out: dict[str, Any] = {}
    for i, (name, spec) in enumerate(schema.get("properties", {}).items()):
        kind = spec.get("type")
        if name in found:
            out[name] = found[name]
        elif kind == "string":
            out[name] = before if i == 0 else ""
        else:
            out[name] = [] if kind == "array" else {}
    return json.dumps(out, ensure_ascii=False)


def error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}}).encode()


def completion_body(
    reply_id: str,
    request: dict[str, Any],
    reply: Reply,
    message: dict[str, Any],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A chat completion's JSON body, as OpenAI-compatible servers send it."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
    choice = {"index": 0, "finish_reason": reply.finish_reason, "message": message}
    body = {"id": reply_id, "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", ""), "choices": [choice], "usage": usage}  # fmt: skip
    return json.dumps(body).encode()
