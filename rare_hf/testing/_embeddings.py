"""What :class:`~rare_hf.testing.LocalTeacher` answers on ``/v1/embeddings`` and ``/v1/rerank``: deterministic
vectors that mean something (hashed word counts, so a rewritten copy of a text lands close to it and unrelated
texts do not), sent as floats or base64 as the request asks; and rerank scores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .wire import Reply, count_tokens, error_body

if TYPE_CHECKING:
    from .server import LocalTeacher

__all__ = ["hashed_embedding", "word_overlap", "EmbedFunction", "RerankFunction", "serve_vectors"]

EmbedFunction = Callable[[list[str]], Sequence[Sequence[float]]]
RerankFunction = Callable[[str, list[str]], Sequence[float]]
_WORD = re.compile(r"\w+")


def hashed_embedding(text: str, dim: int = 128) -> list[float]:
    """A unit vector of the text's lower-cased words, each hashed to a signed dimension, log-scaled counts."""
    counts: dict[str, int] = {}
    for word in _WORD.findall(text.lower()):
        counts[word] = counts.get(word, 0) + 1
    vector = [0.0] * dim
    for word, count in counts.items():
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dim
        vector[slot] += (1.0 + math.log(count)) * (1.0 if digest[4] & 1 else -1.0)
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def word_overlap(query: str, documents: list[str]) -> list[float]:
    """A reranker that reads query and document together: the share of the query's words each document holds."""
    asked = set(_WORD.findall(query.lower()))
    return [len(asked & set(_WORD.findall(d.lower()))) / max(1, len(asked)) for d in documents]


def embeddings_reply(request: dict[str, Any], embed: EmbedFunction) -> tuple[int, bytes, int]:
    """Status, body and prompt tokens of OpenAI's embeddings answer to ``request``."""
    texts = request.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return 400, error_body("'input' must be a string or a non-empty list of strings.", "invalid_request"), 0
    vectors = np.asarray(embed(texts), dtype=np.float32)
    dimensions = request.get("dimensions")
    if dimensions:  # Matryoshka-style: the first dimensions, renormalised
        vectors = vectors[:, :dimensions]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    as_base64 = request.get("encoding_format") == "base64"
    tokens = sum(count_tokens(t) for t in texts)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(v.tobytes()).decode() if as_base64 else v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    body = {"object": "list", "data": data, "model": request.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
    return 200, json.dumps(body).encode(), tokens


def rerank_reply(request: dict[str, Any], rerank: RerankFunction) -> tuple[int, bytes, int]:
    """Status, body and tokens of a Jina/Cohere-style rerank answer, best first, scored by ``rerank``."""
    query, documents = request.get("query"), request.get("documents")
    if not isinstance(query, str) or not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        return 400, error_body("'query' must be a string and 'documents' a list of strings.", "invalid_request"), 0
    scores = [float(s) for s in rerank(query, documents)]
    tokens = count_tokens(query) * len(documents) + sum(count_tokens(d) for d in documents)
    results = sorted(
        ({"index": i, "relevance_score": s} for i, s in enumerate(scores)), key=lambda r: -r["relevance_score"]
    )
    body = {"model": request.get("model", ""), "results": results, "usage": {"total_tokens": tokens}}
    return 200, json.dumps(body).encode(), tokens


async def serve_vectors(server: LocalTeacher, route: str, request: dict[str, Any]) -> tuple[int, tuple, bytes, None]:
    """A ``/v1/embeddings`` or ``/v1/rerank`` request on ``server``: logged, given the queued or random fault and
    the latency of a chat request, else answered by its ``embed`` or ``rerank`` function."""
    if server.models is not None and request.get("model") not in server.models:
        return 404, (), error_body(f"The model '{request.get('model')}' does not exist", "model_not_found"), None
    with server._lock:
        if server.keep_log:
            (server.embedding_requests if route == "embeddings" else server.rerank_requests).append(request)
        fault = server._faults.pop(0) if server._faults else server._random_fault()
    delay = server._delay(fault or Reply())
    await asyncio.sleep(3600 if fault is not None and fault.hang else delay)
    if fault is not None and fault.malformed:
        return 200, (), b'{"data": "not what was asked"}', None
    if fault is not None and fault.status != 200:
        return fault.status, fault.headers, error_body(fault.content, "injected"), None
    if route == "embeddings":
        status, payload, tokens = embeddings_reply(request, server.embed)
    else:
        status, payload, tokens = rerank_reply(request, server.rerank)
    with server._lock:
        server.prompt_tokens += tokens
    return status, (), payload, None
