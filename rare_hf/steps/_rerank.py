"""The reranker false-negative guard: a cross-encoder reads the question with the positive and with each candidate
about to be served; a candidate it scores about as high as the positive answers the question as well as the
source does, and is not a negative. One request per row per look, each (question, document) score cached."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..retrieval.bm25 import BM25Index
from ..teacher._http import gather_or_cancel
from ..teacher.reranker import Reranker
from ..teacher.usage import LLMRun
from ._semantic import Verdict
from .row_error import RowError


class RerankGuard:
    """Drops candidates whose reranker score reaches ``max_ratio`` of the positive's. Scores outside [0, 1]
    (raw logits, as some servers return) are mapped through a sigmoid first, so the ratio means the same."""

    guard, failed_guard = "reranker", "not_reranked"  # their counts in GUARDS

    def __init__(self, reranker: Reranker, max_ratio: float, index: BM25Index) -> None:
        self.reranker, self.max_ratio, self.index = reranker, max_ratio, index
        self.run: LLMRun = reranker.new_run("hard negatives (rerank)")
        self._questions: list[Any] = []
        self._positives: list[Any] = []
        self._scores: dict[tuple[int, int], float] = {}

    def prepare(self, texts: list[Any], questions: list[Any], errors: list[RowError | None]) -> None:
        self._questions, self._positives = questions, texts
        # This batch's scores by (row, corpus position; -1: the positive): a row judged again (after losing a
        # candidate) sends only its new candidates, and nothing is counted twice.
        self._scores: dict[tuple[int, int], float] = {}

    def judge(self, rows: np.ndarray, candidates: np.ndarray, record: bool) -> Verdict:
        texts = self.index.text_array.take(pa.array(np.maximum(candidates, 0).ravel(), type=pa.int64())).to_pylist()
        jobs, asked = [], []
        for r, row in enumerate(rows.tolist()):
            wanted = [(-1, self._positives[row])] + [
                (int(candidates[r, j]), texts[r * candidates.shape[1] + j]) for j in np.flatnonzero(candidates[r] >= 0)
            ]
            new = [(position, text) for position, text in wanted if (row, position) not in self._scores]
            new = new if len(wanted) > 1 else []  # no candidate to judge: nothing to send
            asked.append([position for position, _ in new])
            jobs.append((self._questions[row], [text for _, text in new]))
        results = self.reranker.run_sync(self._all(jobs))
        answers = np.zeros(candidates.shape, dtype=bool)
        failed = np.zeros(candidates.shape, dtype=bool)
        for r, (row, (scores, _)) in enumerate(zip(rows.tolist(), results)):
            slots = np.flatnonzero(candidates[r] >= 0)
            if not len(slots):
                continue
            if scores is None:
                failed[r, slots] = True
                continue
            self._scores.update({(row, position): score for position, score in zip(asked[r], scores)})
            found = np.array([self._scores[(row, -1)], *(self._scores[(row, int(candidates[r, j]))] for j in slots)])
            if found.min() < 0 or found.max() > 1:
                found = 1 / (1 + np.exp(-found))
            answers[r, slots] = found[1:] >= self.max_ratio * found[0]
        return Verdict(answers, failed)

    async def _all(self, jobs: list[tuple[str, list[str]]]) -> list[tuple[list[float] | None, str | None]]:
        return await gather_or_cancel([self._one(q, d) for q, d in jobs])  # type: ignore[no-any-return]

    async def _one(self, query: Any, documents: list[Any]) -> tuple[list[float] | None, str | None]:
        if not documents:  # every pair scored already, or no candidate to judge
            return [], None
        if not (isinstance(query, str) and query.strip()) or not all(d and d.strip() for d in documents):
            return None, "an empty text cannot be reranked"  # the row's candidates go unserved
        return await self.reranker.arerank(query, documents, run=self.run)  # type: ignore[no-any-return]

    def params(self) -> dict[str, Any]:
        return {"reranker": self.reranker.fingerprint, "max_rerank_ratio": self.max_ratio}
