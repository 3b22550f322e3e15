"""A token count without a tokenizer: conservative, so a budget built on it is not overrun."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """A conservative token count: ASCII characters / 4 plus one token per other character."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)
