"""Where a question's candidates come from, best first: BM25, the embedder's dense index, or both fused by
reciprocal rank (hybrid). The guards downstream read the same arrays whatever the source."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..retrieval.bm25 import BM25Index
from ..retrieval.dense import DenseIndex, reciprocal_rank_fusion
from ..teacher.embedder import Embedder
from ..teacher.usage import LLMRun
from .row_error import RowError

Method = Literal["bm25", "dense", "hybrid"]
METHODS = ("bm25", "dense", "hybrid")
# How deep a dense list may go for a row still short of negatives. A BM25 list ends where the question's terms
# stop matching; a dense one never ends, and a row whose positive scores below most of the corpus (a weak
# embedding model) would otherwise be searched down to every document, each round four times deeper.
DENSE_MAX_DEPTH = 1024


class Candidates:
    """A batch's candidate lists and the scores the guards compare: BM25 scores, or (dense, hybrid) each
    document's cosine similarity with the question, the score NV-Retriever's positive-aware filter reads."""

    def __init__(
        self,
        index: BM25Index,
        method: Method = "bm25",
        dense: DenseIndex | None = None,
        embedder: Embedder | None = None,
        run: LLMRun | None = None,
        total: int = 0,
    ) -> None:
        self.index, self.method, self.dense, self.embedder, self.run, self.total = (
            index, method, dense, embedder, run, total,
        )  # fmt: skip
        self._searched: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # a batch's vectors and lists

    def embed_questions(self, questions: list[Any], errors: list[RowError | None]) -> np.ndarray | None:
        """Unit vectors of the rows' questions (dense, hybrid; NaN for rows not mined); a row whose question
        cannot be embedded fails."""
        if self.method == "bm25":
            return None
        assert self.embedder is not None
        rows = [i for i, e in enumerate(errors) if e is None]
        out = np.full((len(questions), self.dense.vectors.shape[1] if self.dense else 1), np.nan, dtype=np.float32)
        if not rows:
            return out
        found, reasons = self.embedder.run_sync(
            self.embedder.aembed([questions[i] for i in rows], kind="query", run=self.run)
        )
        for i, vector, reason in zip(rows, found, reasons):
            if reason is not None:
                errors[i] = RowError("embedding", f"the question was not embedded: {reason}")
            elif len(vector) == out.shape[1]:
                out[i] = vector
            else:
                errors[i] = RowError(
                    "embedding", f"the question has {len(vector)} dimensions, the corpus {out.shape[1]}"
                )
        return out

    def search(
        self, queries: list[list[int]], vectors: np.ndarray | None, pending: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``k`` candidates of each pending row (``2k`` at most in hybrid, padded with -1, scored 0)."""
        if self.method != "dense":
            docs, scores = self.index.search([queries[i] for i in pending], k, expected_queries=self.total)
            order = np.lexsort((docs, -scores))  # best first; ties by corpus position, for determinism
            docs, scores = np.take_along_axis(docs, order, 1), np.take_along_axis(scores, order, 1)
            if self.method == "bm25":
                return docs, scores
        assert self.dense is not None and vectors is not None
        dense_docs, cosines = self._dense_lists(vectors)
        dense_docs, cosines = dense_docs[pending, :k], cosines[pending, :k]
        if self.method == "dense":
            return dense_docs, cosines
        fused, _ = reciprocal_rank_fusion(np.where(scores > 0, docs, -1), dense_docs)
        return fused, np.nan_to_num(self.dense.scores(vectors[pending], fused), nan=0.0)

    def _dense_lists(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row's dense list at full depth, searched once per batch: a deeper round takes more of it instead
        of scoring the corpus again (10,000 rows x 1,024 candidates: 120 MB)."""
        if self._searched is None or self._searched[0] is not vectors:
            assert self.dense is not None
            self._searched = (vectors, *self.dense.search(vectors, self.max_depth))
        return self._searched[1], self._searched[2]

    @property
    def max_depth(self) -> int:
        """The longest candidate list a row gets."""
        return len(self.index) if self.method == "bm25" else min(len(self.index), DENSE_MAX_DEPTH)

    def exhausted(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Rows whose list already holds every candidate there is (a deeper search finds nothing new), or
        (dense, hybrid) reached :data:`DENSE_MAX_DEPTH`."""
        everything = np.full(len(scores), k >= self.max_depth)
        if self.method == "hybrid":  # padding is no sign of an end: the two lists overlapped
            return everything
        return everything | (scores <= 0).any(axis=1)  # type: ignore[no-any-return]

    def positive_scores(
        self,
        pending: np.ndarray,
        docs: np.ndarray,
        scores: np.ndarray,
        pos_doc: np.ndarray,
        queries: list[list[int]],
        vectors: np.ndarray | None,
        out: np.ndarray,
    ) -> None:
        """The positive's own score for each pending row, into ``out`` (NaN when it is not in the corpus)."""
        if self.method != "bm25":
            assert self.dense is not None and vectors is not None
            known = pos_doc[pending] >= 0
            scored = self.dense.scores(vectors[pending], pos_doc[pending][:, None])[:, 0]
            out[pending[known]] = scored[known]
            return
        is_pos = docs == pos_doc[pending][:, None]
        found = is_pos.any(axis=1)
        out[pending[found]] = scores[is_pos][: int(found.sum())] if found.any() else []
        for row in np.flatnonzero(~found & (pos_doc[pending] >= 0)):  # ranked below the list: score it alone
            i = int(pending[row])
            out[i] = self.index.score(queries[i], int(pos_doc[i]))

    def params(self) -> dict[str, Any]:
        return {"mining": self.method}
