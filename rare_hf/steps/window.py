"""Prompts that fit the server's context window: the shown documents are cut, never the instructions.

A server with a small window (llama.cpp slots of 2,048 tokens, a 4k model) refuses a prompt plus reply
budget that does not fit it with an HTTP 400, for every row alike. When the window is known, a step
measures its prompt with the server's tokenizer and, if needed, cuts the documents to fit: each to an equal
token share (short ones stay whole and leave their share to the others), so no document, the positive
included, is told apart by its length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..teacher.client import LLM

__all__ = ["Fit", "fit_documents", "cut_to_tokens", "equal_shares"]

Messages = list[dict[str, Any]]

_PER_MESSAGE = 8  # tokens a chat template adds around each message's text (roles, separators)
_MIN_SHARE = 32  # fewer tokens than this per document is not a document any more


@dataclasses.dataclass(frozen=True)
class Fit:
    """Documents fitted to a window.

    Attributes:
        documents: The documents to show (cut where needed).
        room: Reply tokens the window leaves after the prompt; None when the window is unknown.
        cut: Whether the window made any document shorter.
        problem: Why no prompt fits (then nothing should be sent), else None.
    """

    documents: list[str]
    room: int | None = None
    cut: bool = False
    problem: str | None = None


def equal_shares(counts: list[int], space: int) -> list[int]:
    """Token caps summing to at most ``space``: equal shares, a document shorter than its share keeps its
    length and leaves the rest to the longer ones."""
    caps = [0] * len(counts)
    left = space
    for k, i in enumerate(sorted(range(len(counts)), key=counts.__getitem__)):
        caps[i] = min(counts[i], left // (len(counts) - k))
        left -= caps[i]
    return caps


async def cut_to_tokens(llm: LLM, text: str, limit: int, tokens: int | None = None) -> tuple[str, int]:
    """``text`` cut to at most ``limit`` tokens as the server counts them (in proportion with a margin,
    counting again, a few times), and its token count."""
    tokens = await llm.acount_tokens(text) if tokens is None else tokens
    for _ in range(4):
        if tokens <= limit:
            break
        text = text[: int(len(text) * limit / tokens * 0.95)]
        tokens = await llm.acount_tokens(text)
    return text, tokens


async def fit_documents(llm: LLM, documents: list[str], render: Callable[[list[str]], Messages], budget: int) -> Fit:
    """``documents`` cut so that ``render(documents)`` plus a reply fits the server's context window.

    The reply keeps its full ``budget`` when that fits; otherwise it gets at most half the window and the
    documents share the rest.
    """
    window = await llm.acontext_window()
    if window is None:
        return Fit(documents)
    counts = [await llm.acount_tokens(d) for d in documents]
    fixed = await _message_tokens(llm, render([""] * len(documents)))
    margin = 16 + window // 50  # tokenizer drift at the cut points and in the template
    if fixed + margin + sum(counts) + budget <= window:
        return Fit(documents, room=window - fixed - margin - sum(counts))
    reply = min(budget, window // 2)
    space = window - fixed - margin - reply
    if space < _MIN_SHARE * len(documents):
        return Fit(
            documents,
            problem=f"the prompt needs {fixed} tokens before its documents and the reply {reply}: the server's "
            f"{window}-token context window leaves no room for {len(documents)} document(s)",
        )
    shown, used = [], 0
    for text, count, cap in zip(documents, counts, equal_shares(counts, space)):
        text, count = await cut_to_tokens(llm, text, cap, count)
        shown.append(text)
        used += count
    cut = any(len(s) < len(d) for s, d in zip(shown, documents))
    return Fit(shown, room=window - fixed - margin - used, cut=cut)


async def _message_tokens(llm: LLM, messages: Messages) -> int:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return await llm.acount_tokens(text) + _PER_MESSAGE * len(messages)
