"""The rerank client: a cross-encoder behind an OpenAI-style rerank endpoint (``/v1/rerank`` of vLLM and
llama.cpp, Jina, Cohere-compatible gateways) on the teacher's engine, each (query, document) score cached on its
own so a resumed run re-sends nothing."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import LLMRequestError, MalformedReply
from ._service import ServiceClient
from .cache import ResponseCache
from .client import NOT_CACHED
from .replies import Completion
from .usage import LLMRun

__all__ = ["Reranker"]


class Reranker(ServiceClient):
    """A reranker (cross-encoder) that scores how well each document answers a query.

    Requests follow the Jina/Cohere shape that vLLM and llama.cpp serve: ``{"model", "query", "documents"}``
    answered by ``{"results": [{"index", "relevance_score"}]}`` (a bare list of ``{"index", "score"}``, as Text
    Embeddings Inference answers, is read too).

    Args:
        model: The reranker's name on the server, e.g. ``"BAAI/bge-reranker-v2-m3"``.
        base_url: Endpoint (or replicas), e.g. ``http://localhost:8000/v1``. Defaults to ``$OPENAI_BASE_URL``.
        api_key: Defaults to ``$OPENAI_API_KEY``; not needed for a server on this machine.
        route: The path under ``base_url`` (``"/rerank"``).
        max_chars: Documents and queries are cut to this many characters before they are sent.
        max_concurrency / timeout / max_retries / cache_dir / cache_namespace / price_per_million: As for
            :class:`rare_hf.Embedder`.
        **extra_params: Sent with every request.

    Example:
        >>> reranker = rare_hf.Reranker("BAAI/bge-reranker-v2-m3", base_url="http://localhost:8000/v1")
        >>> reranker.rerank("What lowers blood pressure?", ["Beta blockers ...", "The history of Rome ..."])
        [0.93, 0.01]
    """

    model_env, model_kind = "RARE_HF_RERANK_MODEL", "reranker"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        route: str = "/rerank",
        max_chars: int | None = 4096,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 6,
        cache_dir: str | os.PathLike[str] | ResponseCache | Literal[False] | None = None,
        cache_namespace: str | None = None,
        price_per_million: float | None = None,
        **extra_params: Any,
    ) -> None:
        super().__init__(
            model, max_chars=max_chars, base_url=base_url, api_key=api_key, max_concurrency=max_concurrency,
            timeout=timeout, max_retries=max_retries, cache_dir=cache_dir, cache_namespace=cache_namespace,
            price_per_million=price_per_million,
        )  # fmt: skip
        self.route, self.params = route, dict(extra_params)

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What determines the scores: recorded with the data."""
        return {"model": self.model, "max_chars": self.max_chars, "params": self.params}

    def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """The server's score of each document for ``query``, in order (higher: more relevant).

        Raises:
            LLMRequestError: the request failed after all retries (scores that came back are cached).
        """
        scores, error = self.run_sync(self.arerank(query, documents))
        if error is not None:
            raise LLMRequestError(error)
        return scores  # type: ignore[no-any-return]

    async def arerank(
        self, query: str, documents: Sequence[str], *, run: LLMRun | None = None
    ) -> tuple[list[float] | None, str | None]:
        """Coroutine twin of :meth:`rerank` that returns ``(scores, None)`` or ``(None, why it failed)``."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query: expected a non-empty string, got {query!r}.")
        bad = next((i for i, d in enumerate(documents) if not isinstance(d, str) or not d.strip()), None)
        if bad is not None:
            raise ValueError(f"documents[{bad}]: expected a non-empty string, got {documents[bad]!r}.")
        run = run or self.new_run("rerank")
        query, sent = self._cut(query), [self._cut(d) for d in documents]
        scores: dict[str, float] = {}
        for document in dict.fromkeys(sent):
            hit = self._cache_get(self._pair_key(query, document))
            if hit is not None:
                scores[document] = float(hit["score"])
                self._count(run, Completion("", None, int(hit.get("prompt_tokens", 0)), cached=True))
        missing = [d for d in dict.fromkeys(sent) if d not in scores]
        if missing and self._cache_only:
            return None, NOT_CACHED
        if missing:
            try:
                found, tokens = await self._send(
                    self.route, {"query": query, "documents": missing}, self.params,
                    self._pair_key(query, missing[0]), run, lambda reply: _parse(reply, len(missing)),
                )  # fmt: skip
            except LLMRequestError as exc:
                return None, f"rerank: {exc.reason}"
            for document, score in zip(missing, found):
                scores[document] = score
                self._cache_put(
                    self._pair_key(query, document), {"score": score, "prompt_tokens": tokens // len(missing)}
                )
            self._count(run, Completion("", None, tokens))
        return [scores[d] for d in sent], None

    def _cut(self, text: str) -> str:
        return text if self.max_chars is None else text[: self.max_chars]

    def _pair_key(self, query: str, document: str) -> str:
        return self._key({"role": "rerank", "query": query, "document": document}, self.params)


def _parse(reply: Any, expected: int) -> tuple[list[float], int]:
    """Scores in input order from a Jina/Cohere-style ``{"results": [...]}`` or a TEI-style list, and the tokens."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    tokens = int((usage or {}).get("total_tokens") or (usage or {}).get("prompt_tokens") or 0)
    results = reply.get("results") if isinstance(reply, dict) else reply
    if not isinstance(results, list) or len(results) != expected:
        got = len(results) if isinstance(results, list) else "no"
        raise MalformedReply(f"rerank reply has {got} results for {expected} documents", tokens, 0)
    scores: list[float | None] = [None] * expected
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score", item.get("score")) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or not isinstance(score, (int, float)):
            raise MalformedReply("rerank reply has a result without a usable index or score", tokens, 0)
        if not math.isfinite(score):
            raise MalformedReply("rerank reply has a non-finite score", tokens, 0)
        scores[index] = float(score)
    if any(s is None for s in scores):
        raise MalformedReply("rerank reply repeats an index", tokens, 0)
    return scores, tokens  # type: ignore[return-value]
