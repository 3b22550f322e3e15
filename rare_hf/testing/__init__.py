"""Offline stand-ins for the services rare_hf talks to, for tests and demos: :class:`LocalTeacher`, an
OpenAI-compatible chat, embeddings, tokenize and Batch API server on 127.0.0.1 with fault injection.

Example:
    >>> from rare_hf.testing import LocalTeacher, Reply
    >>> with LocalTeacher(lambda request: "Hello") as teacher:
    ...     llm = rare_hf.LLM("test-model", base_url=teacher.url, api_key="EMPTY", cache_dir=False)
    ...     llm.complete([{"role": "user", "content": "Hi"}]).text
    'Hello'
"""

from __future__ import annotations

from ..demo import demo_responder
from ._embeddings import hashed_embedding, word_overlap
from .server import LocalTeacher, Reply, constrain_to_schema, count_tokens

__all__ = [
    "LocalTeacher",
    "Reply",
    "demo_responder",
    "count_tokens",
    "constrain_to_schema",
    "hashed_embedding",
    "word_overlap",
]
