"""The semantic false-negative guard: candidates an embedding model finds too close to the positive are
rewritten copies of it (a re-edited version, a mirror, the next manual's section) and answer the question.

Only what the miner is about to serve is embedded — the positives and the candidates picked — never the
whole corpus; each document once per run (and once ever, through the response cache)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ..retrieval.bm25 import BM25Index
from ..retrieval.dense import DenseIndex
from ..teacher.embedder import Embedder
from ..teacher.usage import LLMRun
from .row_error import RowError

# "auto": a candidate is a twin when its similarity to the positive is past this share of the way from the
# run's median candidate to an exact copy (similarity 1). Embedding models spread cosines very differently
# (MiniLM over 0..1, e5 within 0.7..1): anchored at the run's own median and at a copy, the cut-off travels
# across models and corpora where a fixed number does not. A spread-based rule (median + 2.5 robust standard
# deviations) put it above 1 on the Django benchmark, where candidates' similarities range widely.
AUTO_SHARE = 0.5
# Below this many candidates seen, "auto" has too little to go on and guards nothing yet (a median of ten
# is already stable enough for a cut-off that sits halfway to a copy).
AUTO_MIN_CANDIDATES = 10

Threshold = float | Literal["auto"]


@dataclasses.dataclass
class Verdict:
    """A judge's verdict on chosen candidates (rows x slots): which answer as the positive does, and which it
    could not judge (neither is served)."""

    answers: np.ndarray
    failed: np.ndarray


class SemanticGuard:
    """Embeds positives and picked candidates, and says which are too close to the positive."""

    guard, failed_guard = "semantic", "not_embedded"  # their counts in GUARDS

    def __init__(
        self, embedder: Embedder, threshold: Threshold, index: BM25Index, run: LLMRun, dense: DenseIndex | None = None
    ) -> None:
        self.embedder, self.setting, self.index, self.run, self.dense = embedder, threshold, index, run, dense
        self._docs: dict[int, np.ndarray | None] = {}  # corpus position -> unit vector, None: not embedded
        self._positives: dict[bytes, np.ndarray] = {}  # a positive's text digest -> its vector: often a candidate too
        self._seen: list[np.ndarray] = []
        self.threshold: float | None = None if threshold == "auto" else float(threshold)  # the one in use
        self.seen_count = 0
        self._batch = np.zeros((0, 1), dtype=np.float32)  # the batch's positive vectors, a row each

    def prepare(self, texts: list[Any], questions: list[Any], errors: list[Any]) -> None:
        """Embed the batch's positives; a row whose positive cannot be embedded fails instead of going unguarded."""
        rows = [i for i, e in enumerate(errors) if e is None]
        found, reasons = self.positives([texts[i] for i in rows])
        self._batch = np.full((len(texts), found.shape[1]), np.nan, dtype=np.float32)
        self._batch[rows] = found
        for i, reason in zip(rows, reasons):
            if reason is not None:
                errors[i] = RowError("embedding", f"the positive was not embedded: {reason}")

    def judge(self, rows: np.ndarray, candidates: np.ndarray, record: bool) -> Verdict:
        """Candidates (corpus positions of batch ``rows``) above the cut-off; ``record``: the round's first look,
        which "auto" learns from."""
        similarity, failed = self._similarities(self._batch[rows], candidates)
        limit = self.limit(similarity if record else similarity[:0])
        return Verdict(np.nan_to_num(similarity, nan=-np.inf) > limit, failed)

    def positives(self, texts: list[Any]) -> tuple[np.ndarray, list[str | None]]:
        """Unit vectors of the rows' positive documents, and per row why it has none. With the corpus embedded
        (dense, hybrid) a positive found in it is not embedded again."""
        usable = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        known = {i: self._corpus_vector(texts[i]) for i in usable} if self.dense is not None else {}
        asked = [i for i in usable if known.get(i) is None]
        vectors, errors = self._embed([texts[i] for i in asked])
        width = self.dense.vectors.shape[1] if self.dense is not None else vectors.shape[1]
        out = np.full((len(texts), width), np.nan, dtype=np.float32)
        reasons: list[str | None] = ["the positive document is empty"] * len(texts)
        for i, vector in known.items():
            if vector is not None:
                out[i], reasons[i] = vector, None
        for i, vector, error in zip(asked, vectors, errors):
            reasons[i] = error
            if error is None:
                out[i] = self._positives[_digest(texts[i])] = vector
        return out, reasons

    def _corpus_vector(self, text: str) -> np.ndarray | None:
        assert self.dense is not None
        position = self.index.position_of(text)
        vector = self.dense.vectors[position] if position >= 0 else None
        return vector if vector is not None and vector.any() else None

    def _similarities(self, positives: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Similarity of each candidate (corpus positions, -1: none) to its row's positive vector (NaN: none, or
        not embedded), and which chosen candidates could not be embedded."""
        self._embed_documents(np.unique(candidates[candidates >= 0]))
        width = positives.shape[1]
        missing = np.full(width, np.nan, dtype=np.float32)
        vectors = np.stack([self._vector(d, missing) for d in candidates.ravel().tolist()] or [missing])
        vectors = vectors[: candidates.size].reshape(*candidates.shape, width)
        similarity = np.einsum("rkd,rd->rk", vectors, positives)
        failed = (candidates >= 0) & np.isnan(similarity) & ~np.isnan(positives).any(axis=1)[:, None]
        return similarity, failed

    def limit(self, first_look: np.ndarray) -> float:
        """The cut-off: the given number, or (``"auto"``) one derived from every candidate seen so far."""
        if self.setting != "auto":
            return float(self.setting)
        values = first_look[np.isfinite(first_look)]
        if len(values):
            self._seen.append(values)
            self.seen_count += len(values)
        if self.seen_count < AUTO_MIN_CANDIDATES:
            return np.inf
        median = float(np.median(np.concatenate(self._seen)))
        self.threshold = median + AUTO_SHARE * (1.0 - median)
        return self.threshold

    def params(self) -> dict[str, Any]:
        return {"embedder": self.embedder.fingerprint, "max_semantic_similarity": self.setting}

    def _vector(self, position: int, missing: np.ndarray) -> np.ndarray:
        vector = self._docs.get(position) if position >= 0 else None
        return missing if vector is None else vector

    def _embed_documents(self, positions: np.ndarray) -> None:
        new = [p for p in positions.tolist() if p not in self._docs]
        if not new:
            return
        if self.dense is not None:  # the corpus is embedded already (dense and hybrid mining)
            rows = self.dense.vectors[new]
            self._docs.update({p: (v if v.any() else None) for p, v in zip(new, rows)})
            return
        texts = self.index.text_array.take(pa.array(new, type=pa.int64())).to_pylist()
        self._docs.update(dict.fromkeys(new))
        for i, text in enumerate(texts):
            if isinstance(text, str):
                self._docs[new[i]] = self._positives.get(_digest(text))
        usable = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip() and self._docs[new[i]] is None]
        vectors, errors = self._embed([texts[i] for i in usable])
        for i, vector, error in zip(usable, vectors, errors):
            self._docs[new[i]] = None if error is not None else vector

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, list[str | None]]:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32), []
        return self.embedder.run_sync(self.embedder.aembed(texts, kind="document", run=self.run))  # type: ignore[no-any-return]


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
