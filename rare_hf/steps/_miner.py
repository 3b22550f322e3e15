"""The hard-negative miner: a batch of questions retrieved at once, candidates filtered with array operations,
Arrow columns written directly (negative texts are taken from the corpus table, never copied through Python)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ..retrieval.bm25 import BM25Index
from ..retrieval.kernels import csr_rows, idf_cosines, pick
from ..retrieval.shingles import passage_csr
from ..utils.datasets import DOC_ID, column_values, quiet_datasets_progress
from . import _plumbing
from .base import Column, column_docs
from .row_error import RowError, Tally, render
from .summary import StepSummary


@dataclasses.dataclass(frozen=True)
class Filters:
    num_neg: int
    min_neg: int
    skip_top: int
    max_score_ratio: float | None
    max_overlap: float | None
    exclude_shared_passages: bool
    exclude_ids: frozenset[str] = frozenset()
    max_similarity: float | None = None


class Miner:
    """Retrieves a batch of questions at once, filters candidates with array operations, and writes
    Arrow arrays directly (negative texts are taken from the corpus table, never copied through Python)."""

    def __init__(
        self,
        index: BM25Index | None,
        filters: Filters,
        question_key: str,
        text_key: str,
        columns: list[Column],
        total: int,
        show_progress: bool,
    ) -> None:
        self.index, self.filters = index, filters
        self.question_key, self.text_key, self.columns = question_key, text_key, columns
        self.key = columns[0].name  # the negatives; the others are named after it
        self.dropped: collections.Counter[str] = collections.Counter()
        self.short = 0  # rows with fewer than num_neg negatives, failed or not
        self.without = 0  # rows mined with no negative at all
        self.tally = Tally()
        self.total = total
        positions = [] if index is None else [index.position_of_id(i) for i in filters.exclude_ids]
        self.excluded = np.array(sorted(p for p in positions if p >= 0), dtype=np.int64)
        self.bar = tqdm(total=total, desc="Mining hard negatives", unit="question", disable=not show_progress)

    def run(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        features = datasets.Features({**ds.features, **{c.name: c.feature for c in self.columns}})
        if len(ds) == 0:  # datasets' map drops every column of an empty table
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        # Arrow in, Arrow out: untouched columns and the negatives' texts never become Python objects.
        with quiet_datasets_progress():
            out = ds.with_format("arrow").map(
                self._batch,
                batched=True,
                batch_size=batch_size,
                writer_batch_size=batch_size,
                features=features,
                load_from_cache_file=False,
                new_fingerprint=_plumbing.fingerprint(
                    ds,
                    "add_hard_negatives",
                    {
                        "filters": dataclasses.asdict(self.filters),
                        "index": self.index.params,
                        "corpus": self.index.fingerprint,
                        "keys": [self.question_key, self.text_key, self.key],
                    },
                ),
            )
        return out.with_format(ds.format["type"], **ds.format["format_kwargs"])

    def _batch(self, table: pa.Table) -> pa.Table:
        questions = table[self.question_key].to_pylist()
        texts, ids = table[self.text_key].to_pylist(), table[DOC_ID].to_pylist()
        n = len(questions)
        errors: list[RowError | None] = [None] * n
        valid = [i for i, q in enumerate(questions) if isinstance(q, str) and q.strip()]
        tokens = dict(zip(valid, self.index.tokenize([questions[i] for i in valid]))) if valid else {}
        for i in range(n):
            if i not in tokens:
                errors[i] = RowError("skipped", "question is missing (failed upstream)")
            elif not tokens[i]:
                errors[i] = RowError("skipped", "the question has no term in the corpus vocabulary")
        rows = [i for i in range(n) if errors[i] is None]
        picks, pos_scores = self._mine([tokens[i] for i in rows], [texts[i] for i in rows], [ids[i] for i in rows])
        for i, (found, _) in zip(rows, picks):
            self.short += len(found) < self.filters.num_neg
            self.without += not found
            if len(found) < self.filters.min_neg:
                errors[i] = RowError(
                    "short",
                    f"{len(found)} of {self.filters.num_neg} negatives found (min_neg={self.filters.min_neg}); too few "
                    "candidates pass the filters: use a larger corpus= or loosen max_score_ratio/max_overlap",
                )
        for error in errors:
            self.tally.add(error)
        self.bar.update(n)
        for name, column in self._arrow_columns(n, rows, picks, pos_scores, errors).items():
            table = table.append_column(name, column)
        return table

    def _mine(
        self, queries: list[list[int]], positives: list[Any], positive_ids: list[str]
    ) -> tuple[list[tuple[list[int], list[float]]], np.ndarray]:
        """Filtered negatives for every query. Queries left short while their candidate list was full are
        retried with a deeper list, so strict filters never silently return fewer than they could."""
        pos_by_id = np.array([self.index.position_of_id(i) for i in positive_ids], dtype=np.int64)
        by_id_texts = self.index.text_array.take(pa.array(np.maximum(pos_by_id, 0))).to_pylist()
        # Hashing a text is the slow path: skip it when the row's doc_id already points at the same text.
        pos_doc = np.array(
            [
                p if p >= 0 and t == same else self.index.position_of(t) if isinstance(t, str) else -1
                for t, p, same in zip(positives, pos_by_id.tolist(), by_id_texts)
            ],
            dtype=np.int64,
        )
        pos_scores = np.full(len(queries), np.nan, dtype=np.float32)
        picks: list[Any] = [([], [])] * len(queries)
        pending = np.arange(len(queries))
        depth = self.filters.num_neg + self.filters.skip_top + 10
        # Hashed once per batch; a deeper retry round takes its rows' share.
        passages = (
            passage_csr(positives)
            if self.filters.exclude_shared_passages
            else (np.zeros(len(queries) + 1, dtype=np.int64), np.empty(0, dtype=np.uint32))
        )
        while len(pending):
            k = min(depth, len(self.index))
            docs, scores = self.index.search([queries[i] for i in pending], k, expected_queries=self.total)
            order = np.lexsort((docs, -scores))  # best first; ties by corpus position, for determinism
            docs, scores = np.take_along_axis(docs, order, 1), np.take_along_axis(scores, order, 1)
            self._positive_scores(pending, docs, scores, pos_doc, queries, pos_scores)
            keep = self._keep_mask(docs, scores, pos_doc[pending], pos_by_id[pending], pos_scores[pending])
            exhausted = (scores <= 0).any(axis=1) | (k >= len(self.index))
            max_overlap = -1.0 if self.filters.max_overlap is None else self.filters.max_overlap
            pos_passages = csr_rows(*passages, pending)
            chosen, overlapping, sharing = pick(
                docs.astype(np.int64),
                keep,
                pos_doc[pending],
                self.index.token_indptr,
                self.index.token_ids,
                self.index.passage_indptr,
                self.index.passage_ids,
                *pos_passages,
                max_overlap,
                self.filters.num_neg,
                self.filters.skip_top,
            )
            self.dropped["overlaps the positive"] += int(overlapping)
            self.dropped["shares a passage with the positive"] += int(sharing)
            retry = []
            for row, i in enumerate(pending.tolist()):
                cols = chosen[row][chosen[row] >= 0]
                picks[i] = (docs[row, cols].tolist(), scores[row, cols].tolist())
                if len(cols) < self.filters.num_neg and not exhausted[row]:
                    retry.append(i)
            pending, depth = np.array(retry, dtype=np.int64), depth * 4
        return picks, pos_scores

    def _positive_scores(
        self,
        pending: np.ndarray,
        docs: np.ndarray,
        scores: np.ndarray,
        pos_doc: np.ndarray,
        queries: list[list[int]],
        out: np.ndarray,
    ) -> None:
        is_pos = docs == pos_doc[pending][:, None]
        found = is_pos.any(axis=1)
        out[pending[found]] = scores[is_pos][: int(found.sum())] if found.any() else []
        for row in np.flatnonzero(~found & (pos_doc[pending] >= 0)):  # ranked below the list: score it alone
            i = int(pending[row])
            out[i] = self.index.score(queries[i], int(pos_doc[i]))

    def _keep_mask(
        self, docs: np.ndarray, scores: np.ndarray, pos_doc: np.ndarray, pos_by_id: np.ndarray, pos_score: np.ndarray
    ) -> np.ndarray:
        positive = (docs == pos_doc[:, None]) | (docs == pos_by_id[:, None])
        live = scores > 0  # zero-score hits are never negatives
        self.dropped["positive or exact duplicate"] += int((positive & live).sum())
        keep = live & ~positive
        if len(self.excluded):
            excluded = keep & np.isin(docs, self.excluded)
            self.dropped["excluded (exclude_ids)"] += int(excluded.sum())
            keep &= ~excluded
        if self.filters.max_score_ratio is not None:
            # A positive scoring 0 (its question shares no term with it) gives no margin to compare with.
            comparable = (pos_score > 0)[:, None]  # NaN (positive not in the index) -> False too
            close = keep & comparable & (scores > self.filters.max_score_ratio * pos_score[:, None])
            self.dropped["scores too close to the positive"] += int(close.sum())
            keep &= ~close
        if self.filters.max_similarity is not None:
            keep &= ~self._rewritten_copies(docs, keep, np.where(pos_doc >= 0, pos_doc, pos_by_id))
        return keep

    def _rewritten_copies(self, docs: np.ndarray, keep: np.ndarray, pos_doc: np.ndarray) -> np.ndarray:
        """Kept candidates whose IDF-weighted cosine with the positive is above ``max_similarity`` and more
        than twice the row's typical candidate's: a rewritten copy stands out from the other candidates,
        while in a corpus of look-alike documents (templates, records) every candidate is as similar."""
        candidates = np.where(keep, docs, -1)  # only cells still kept are scored
        cosines = idf_cosines(
            candidates, pos_doc, self.index.token_indptr, self.index.token_ids, *self.index.term_weights
        )
        typical = np.ma.median(np.ma.masked_array(cosines, ~keep), axis=1).filled(0.0)
        limit = np.maximum(self.filters.max_similarity, 2 * typical)
        similar = keep & (cosines > limit[:, None])
        self.dropped["similar to the positive (IDF cosine)"] += int(similar.sum())
        return similar

    def _arrow_columns(
        self,
        n: int,
        rows: list[int],
        picks: list[tuple[list[int], list[float]]],
        pos_scores: np.ndarray,
        errors: list[RowError | None],
    ) -> dict[str, pa.Array]:
        lengths = np.zeros(n, dtype=np.int32)
        lengths[rows] = [len(p[0]) for p in picks]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        mask = pa.array([e is not None for e in errors])
        flat_docs = pa.array([d for p in picks for d in p[0]], type=pa.int64())
        flat_scores = pa.array([s for p in picks for s in p[1]], type=pa.float32())
        positive = np.full(n, np.nan, dtype=np.float32)
        positive[rows] = pos_scores
        return {
            self.key: pa.ListArray.from_arrays(offsets, self.index.text_array.take(flat_docs), mask=mask),
            f"{self.key}_ids": pa.ListArray.from_arrays(offsets, self.index.id_array.take(flat_docs), mask=mask),
            f"{self.key}_scores": pa.ListArray.from_arrays(offsets, flat_scores, mask=mask),
            f"{self.key}_positive_score": pa.array(positive, from_pandas=True),
            f"{self.key}_error": pa.array([render(e) for e in errors], type=pa.string()),
        }

    def close(self) -> None:
        self.bar.close()

    def summary(self, out: datasets.Dataset, params: dict[str, Any], seconds: float) -> StepSummary:
        counts = [len(n) for n in column_values(out, self.key) if n is not None]
        histogram = collections.Counter(counts)
        return _plumbing.step_summary(
            "hard_negatives",
            len(out),
            self.tally,
            seconds=seconds,
            params=params,
            columns=column_docs(self.columns),
            stats={
                "short": self.short,
                "without_negatives": self.without,
                "negatives_per_row": {str(k): v for k, v in sorted(histogram.items())},
                "mean_negatives": round(sum(counts) / len(counts), 3) if counts else 0.0,
                "dropped_candidates": dict(self.dropped),
            },
        )
