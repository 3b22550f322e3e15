"""The embeddings client: any OpenAI-compatible ``/v1/embeddings`` (OpenAI, vLLM, Text Embeddings Inference,
llama.cpp, Ollama, Infinity) on the same engine as the teacher — adaptive concurrency, retries, the breaker, the
response cache (one entry per text, so a resumed run re-sends nothing), usage and dollars, and the dry run."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ..errors import LLMConfigError, LLMRequestError, MalformedReply
from ..text.tokens import estimate_tokens
from ._http import gather_or_cancel
from ._service import ServiceClient
from .cache import ResponseCache
from .client import NOT_CACHED
from .replies import Completion
from .usage import LLMRun

__all__ = ["Embedder", "EmbeddingEstimate"]

Kind = Literal["query", "document"]


@dataclasses.dataclass(frozen=True)
class EmbeddingEstimate:
    """What embedding some texts would cost, found without sending anything (:meth:`Embedder.estimate`).

    Attributes:
        texts: Distinct texts asked for.
        cached: Of them, answered by the response cache.
        requests: Requests the others need (``batch_size`` texts each).
        tokens: Their estimated input tokens.
        usd: Their estimated price, when the embedder has one.
    """

    texts: int
    cached: int
    requests: int
    tokens: int
    usd: float | None


class Embedder(ServiceClient):
    """An embedding model behind any OpenAI-compatible ``/v1/embeddings`` endpoint.

    Vectors come back L2-normalised (float32), so a dot product is the cosine similarity. Texts are sent
    ``batch_size`` at a time; each text's vector is cached on its own, so a run killed half-way, or one that
    asks again for texts it already embedded, sends only what is missing.

    Args:
        model: The embedding model's name on the server, e.g. ``"text-embedding-3-small"`` or
            ``"BAAI/bge-small-en-v1.5"``. Defaults to ``$RARE_HF_EMBEDDING_MODEL``.
        base_url: Endpoint (or a list of replicas), e.g. ``http://localhost:8080/v1`` for Text Embeddings
            Inference. Defaults to ``$OPENAI_BASE_URL``, then OpenAI.
        api_key: Defaults to ``$OPENAI_API_KEY``; not needed for a server on this machine.
        query_prefix: Put before every query (questions): the instruction models such as e5 (``"query: "``),
            bge (``"Represent this sentence for searching relevant passages: "``) or gte-Qwen expect.
        document_prefix: Put before every document (``"passage: "`` for e5).
        dimensions: Ask for vectors of this size (OpenAI's ``text-embedding-3`` models and Matryoshka models
            on vLLM); ``None`` takes the model's own.
        batch_size: Texts per request. 32 is the default request limit of Text Embeddings Inference; OpenAI
            takes up to 2,048.
        max_chars: Texts are cut to this many characters before they are sent: embedding models read their
            first 512 tokens or so anyway, and some servers refuse longer inputs instead of truncating them.
            ``None`` sends them whole.
        max_concurrency: Most requests in flight per endpoint (the engine starts lower and probes upward).
        timeout: Seconds one attempt may take; then it is abandoned and retried.
        max_retries: Retries of a request on 408/409/429/5xx, timeouts and malformed replies.
        cache_dir: Folder of the response cache (shared with the teacher's), a :class:`ResponseCache`, or
            ``False``. Default: :func:`rare_hf.default_cache_dir`.
        cache_namespace: Kept apart in the cache: two servers that serve different models under one name.
        price_per_million: US dollars per million input tokens; summaries then show dollars.
        **extra_params: Sent with every request (e.g. ``extra_body={"truncate": True}`` on TEI).

    Example:
        >>> embedder = rare_hf.Embedder("BAAI/bge-small-en-v1.5", base_url="http://localhost:8080/v1",
        ...                             query_prefix="Represent this sentence for searching relevant passages: ")
        >>> vectors = embedder.embed(["BM25 ranks documents by term statistics."])
        >>> vectors.shape
        (1, 384)
    """

    model_env, model_kind = "RARE_HF_EMBEDDING_MODEL", "embedding"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        dimensions: int | None = None,
        batch_size: int = 32,
        max_chars: int | None = 4096,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 6,
        cache_dir: str | os.PathLike[str] | ResponseCache | Literal[False] | None = None,
        cache_namespace: str | None = None,
        price_per_million: float | None = None,
        **extra_params: Any,
    ) -> None:
        if batch_size < 1:
            raise LLMConfigError(f"batch_size must be >= 1, got {batch_size}.")
        if dimensions is not None and dimensions < 1:
            raise LLMConfigError(f"dimensions must be >= 1 or None, got {dimensions}.")
        super().__init__(
            model, max_chars=max_chars, base_url=base_url, api_key=api_key, max_concurrency=max_concurrency,
            timeout=timeout, max_retries=max_retries, cache_dir=cache_dir, cache_namespace=cache_namespace,
            price_per_million=price_per_million,
        )  # fmt: skip
        self.prefixes = {"query": query_prefix, "document": document_prefix}
        self.batch_size = batch_size
        params = {"dimensions": dimensions, "encoding_format": "base64", **extra_params}
        self.params = {k: v for k, v in params.items() if v is not None}

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What determines the vectors: recorded with the data, and part of a stored index's name."""
        return {"model": self.model, "prefixes": self.prefixes, "max_chars": self.max_chars, "params": self.params}

    # -- public API -------------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, kind: Kind = "document", show_progress: bool = False) -> np.ndarray:
        """The L2-normalised vectors of ``texts`` (``float32``, one row per text, in order).

        Args:
            texts: Strings to embed; repeated ones are sent once.
            kind: ``"query"`` or ``"document"``: which prefix is put before them.
            show_progress: Show a progress bar over the texts.

        Raises:
            LLMRequestError: some texts could not be embedded after all retries (the message says how many
                and why); the vectors that came back are cached, so calling again sends only the rest.
            LLMFatalError: the endpoint refuses the key or the model.
        """
        vectors, errors = self.run_sync(self.aembed(texts, kind=kind, show_progress=show_progress))
        failed = [e for e in errors if e is not None]
        if failed:
            raise LLMRequestError(f"{len(failed)} of {len(texts)} texts were not embedded: {failed[0]}")
        return vectors

    async def aembed(
        self, texts: Sequence[str], *, kind: Kind = "document", show_progress: bool = False, run: LLMRun | None = None
    ) -> tuple[np.ndarray, list[str | None]]:
        """Coroutine twin of :meth:`embed` that does not raise for failed texts: returns the vectors (a failed
        text's row is NaN) and, per text, why it failed or ``None``. Must run on this embedder's loop
        (:meth:`run_sync`)."""
        self._check(texts, kind)
        sent = [self._prepared(t, kind) for t in texts]
        unique = list(dict.fromkeys(sent))
        found: dict[str, np.ndarray | str] = {}
        run = run or self.new_run("embeddings")
        missing = []
        for text in unique:
            hit = self._cached(text)
            if hit is None:
                missing.append(text)
            else:
                found[text], tokens = hit
                self._count(run, Completion("", None, tokens, cached=True))
        if missing and self._cache_only:
            for text in missing:
                found[text] = NOT_CACHED
            missing = []
        bar = tqdm(total=len(unique), initial=len(unique) - len(missing), desc="Embedding", unit="text",
                   disable=not show_progress)  # fmt: skip
        batches = [missing[i : i + self.batch_size] for i in range(0, len(missing), self.batch_size)]
        try:
            await gather_or_cancel([self._batch(batch, run, found, bar) for batch in batches])
        finally:
            bar.close()
        return self._assemble(sent, found)

    def estimate(self, texts: Sequence[str], *, kind: Kind = "document") -> EmbeddingEstimate:
        """Requests, tokens and dollars that :meth:`embed` would spend on ``texts``, without sending anything."""
        self._check(texts, kind)
        unique = list(dict.fromkeys(self._prepared(t, kind) for t in texts))
        missing = [t for t in unique if self._cached(t) is None]
        tokens = sum(estimate_tokens(t) for t in missing)
        usd = None if self._engine.price is None else self._engine.price.usd(tokens, 0)
        requests = -(-len(missing) // self.batch_size)
        return EmbeddingEstimate(len(unique), len(unique) - len(missing), requests, tokens, usd)

    # -- engine -----------------------------------------------------------------------------------------
    def _check(self, texts: Sequence[str], kind: str) -> None:
        if kind not in self.prefixes:
            raise ValueError(f"kind: expected 'query' or 'document', got {kind!r}.")
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got one string; wrap it in a list.")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
        if bad is not None:
            raise ValueError(f"texts[{bad}]: expected a non-empty string, got {texts[bad]!r}.")

    def _prepared(self, text: str, kind: str) -> str:
        text = self.prefixes[kind] + text
        return text if self.max_chars is None else text[: self.max_chars]

    def _text_key(self, text: str) -> str:
        return self._key({"role": "input", "content": text}, self.params)

    def _cached(self, text: str) -> tuple[np.ndarray, int] | None:
        hit = self._cache_get(self._text_key(text))
        if hit is None:
            return None
        return np.frombuffer(base64.b64decode(hit["vector"]), dtype=np.float32), int(hit["prompt_tokens"])

    async def _batch(self, texts: list[str], run: LLMRun, found: dict[str, Any], bar: Any) -> None:
        try:
            vectors, tokens = await self._send(
                "/embeddings", {"input": texts}, self.params, self._text_key(texts[0]), run,
                lambda reply: _parse(reply, len(texts)),
            )  # fmt: skip
        except LLMRequestError as exc:
            found.update(dict.fromkeys(texts, f"embedding: {exc.reason}"))
            return
        for text, vector, share in zip(texts, vectors, _token_shares(texts, tokens)):
            found[text] = vector
            self._cache_put(
                self._text_key(text), {"vector": base64.b64encode(vector.tobytes()).decode(), "prompt_tokens": share}
            )
        self._count(run, Completion("", None, tokens))
        bar.update(len(texts))

    @staticmethod
    def _assemble(sent: list[str], found: dict[str, Any]) -> tuple[np.ndarray, list[str | None]]:
        width = next((len(v) for v in found.values() if isinstance(v, np.ndarray)), 1)
        out = np.full((len(sent), width), np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * len(sent)
        for i, text in enumerate(sent):
            value = found[text]
            if isinstance(value, str):
                errors[i] = value
            elif len(value) != width:
                errors[i] = f"embedding: the server returned {len(value)} dimensions, earlier replies {width}"
            else:
                out[i] = value
        return out, errors


def _parse(reply: Any, expected: int) -> tuple[list[np.ndarray], int]:
    """The normalised vectors of an embeddings reply in input order, and its prompt tokens."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    tokens = int((usage or {}).get("prompt_tokens") or 0)
    data = reply.get("data") if isinstance(reply, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise MalformedReply(f"embeddings reply has {got} vectors for {expected} inputs", tokens, 0)
    vectors: list[np.ndarray | None] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        raw = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or raw is None:
            raise MalformedReply("embeddings reply has an item without a usable index or embedding", tokens, 0)
        vector = (
            np.frombuffer(base64.b64decode(raw), np.float32) if isinstance(raw, str) else np.asarray(raw, np.float32)
        )
        if vector.ndim != 1 or not len(vector) or not np.isfinite(vector).all():
            raise MalformedReply("embeddings reply has an empty or non-finite vector", tokens, 0)
        norm = float(np.linalg.norm(vector))
        vectors[index] = (vector / norm if norm else vector).astype(np.float32)
    if any(v is None for v in vectors):
        raise MalformedReply("embeddings reply repeats an index", tokens, 0)
    return vectors, tokens  # type: ignore[return-value]


def _token_shares(texts: list[str], tokens: int) -> list[int]:
    """A request's tokens shared among its texts by length, so cached texts keep what they cost."""
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    shares = np.floor(tokens * lengths / max(1.0, lengths.sum())).astype(int)
    shares[: tokens - int(shares.sum())] += 1
    return shares.tolist()
