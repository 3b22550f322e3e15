"""The hard-negative miner: a batch of questions retrieved at once, candidates filtered with array operations,
Arrow columns written directly (negative texts are taken from the corpus table, never copied through Python)."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import datasets
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ..retrieval.bm25 import BM25Index
from ..retrieval.kernels import csr_rows, idf_cosines
from ..retrieval.shingles import passage_csr
from ..utils.datasets import DOC_ID, column_values, quiet_datasets_progress
from . import _plumbing
from ..teacher.usage import LLMRun, add_usage
from ._candidates import Candidates
from ._guards import GUARDS
from ._picker import Mined, Picker
from ._semantic import Verdict
from .base import Column, column_docs
from .row_error import DROP_REASON, RowError, Tally, render
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
    relabel: bool = False  # candidates the semantic guard drops become extra positives


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
        judges: Sequence[Judge] = (),
        candidates: Candidates | None = None,
        clusters: np.ndarray | None = None,
    ) -> None:
        self.index, self.filters, self.judges = index, filters, list(judges)
        self.clusters = clusters  # per corpus document, its near-duplicate cluster (-1: none)
        self.candidates = candidates or (Candidates(index, total=total) if index is not None else None)
        self.question_key, self.text_key, self.columns = question_key, text_key, columns
        self.key = columns[0].name  # the negatives; the others are named after it
        self.dropped: collections.Counter[str] = collections.Counter()  # by guard, over the rows' final picks
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
                        "judges": [judge.params() for judge in self.judges],
                        "candidates": self.candidates.params(),
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
        gone = table[DROP_REASON].to_pylist() if DROP_REASON in table.column_names else [None] * n
        valid = [i for i, q in enumerate(questions) if isinstance(q, str) and q.strip() and gone[i] is None]
        tokens = dict(zip(valid, self.index.tokenize([questions[i] for i in valid]))) if valid else {}
        for i in range(n):
            if gone[i] is not None:
                errors[i] = RowError("dropped", gone[i])
            elif i not in tokens:
                errors[i] = RowError("skipped", "question is missing (failed upstream)")
            elif not tokens[i]:
                errors[i] = RowError("skipped", "the question has no term in the corpus vocabulary")
        asked = self.candidates.embed_questions(questions, errors)
        for judge in self.judges:
            judge.prepare(texts, questions, errors)
        rows = [i for i in range(n) if errors[i] is None]
        mined = self._mine(
            [tokens[i] for i in rows],
            [texts[i] for i in rows],
            [ids[i] for i in rows],
            np.array(rows, dtype=np.int64),
            None if asked is None else asked[rows],
        )
        picks = mined.picks
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
        for name, column in self._arrow_columns(n, rows, mined, errors).items():
            table = table.append_column(name, column)
        return table

    def _mine(
        self,
        queries: list[list[int]],
        positives: list[Any],
        positive_ids: list[str],
        batch_rows: np.ndarray,
        asked: np.ndarray | None,
    ) -> Mined:
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
        mined = Mined(len(queries))
        pending = np.arange(len(queries))
        depth = self.filters.num_neg + self.filters.skip_top + 10
        # Hashed once per batch; a deeper retry round takes its rows' share.
        passages = (
            passage_csr(positives)
            if self.filters.exclude_shared_passages
            else (np.zeros(len(queries) + 1, dtype=np.int64), np.empty(0, dtype=np.uint32))
        )
        first_round = True
        while len(pending):
            k = min(depth, self.candidates.max_depth)
            docs, scores = self.candidates.search(queries, asked, pending, k)
            self.candidates.positive_scores(pending, docs, scores, pos_doc, queries, asked, mined.positive_scores)
            mined.rank(pending, scores)
            keep, counts = self._keep_mask(
                docs, scores, pos_doc[pending], pos_by_id[pending], mined.positive_scores[pending]
            )
            exhausted = self.candidates.exhausted(scores, k)
            picker = Picker(self, docs, keep, pos_doc[pending], csr_rows(*passages, pending), counts)
            chosen = picker.pick(np.arange(len(pending)))
            if self.judges:  # a deeper round judges its rows afresh: their earlier catches are replaced
                relabelled = self._judge(picker, chosen, batch_rows[pending], first_round)
                for r, i in enumerate(pending.tolist()):
                    mined.false_negatives[i] = relabelled.get(r, [])
            mined.counts[:, pending] = np.stack([counts[g] for g in GUARDS])
            retry = []
            for row, i in enumerate(pending.tolist()):
                cols = chosen[row][chosen[row] >= 0]
                mined.picks[i] = (docs[row, cols].tolist(), scores[row, cols].tolist())
                if len(cols) < self.filters.num_neg and not exhausted[row]:
                    retry.append(i)
            pending, depth, first_round = np.array(retry, dtype=np.int64), depth * 4, False
        return mined

    def _judge(self, picker: Picker, chosen: np.ndarray, batch_rows: np.ndarray, record: bool) -> dict[int, list[int]]:
        """Shows the chosen candidates to each judge (the semantic guard, the reranker) and picks again for rows
        that lost one, until every judge passes every row; returns, per row, the corpus positions judged to
        answer as the positive does (best first)."""
        rows, counts = np.arange(len(chosen)), picker.counts
        relabelled: dict[int, list[int]] = collections.defaultdict(list)
        while len(rows):
            cells = chosen[rows]
            candidates = np.where(cells >= 0, np.take_along_axis(picker.docs[rows], np.maximum(cells, 0), 1), -1)
            drop = np.zeros(cells.shape, dtype=bool)
            for judge in self.judges:  # each sees what the ones before it let through
                verdict = judge.judge(batch_rows[rows], np.where(drop, -1, candidates), record)
                np.add.at(counts[judge.guard], rows, verdict.answers.sum(axis=1))
                np.add.at(counts[judge.failed_guard], rows, verdict.failed.sum(axis=1))
                for r, slot in zip(*np.nonzero(verdict.answers)):
                    relabelled[int(rows[r])].append(int(candidates[r, slot]))
                drop |= verdict.answers | verdict.failed
            record = False
            if not drop.any():
                break
            at, slot = np.nonzero(drop)
            picker.keep[rows[at], cells[at, slot]] = False
            rows = np.unique(rows[at])
            chosen[rows] = picker.pick(rows)
        return {r: sorted(found, key=list(picker.docs[r]).index) for r, found in relabelled.items()}

    def _keep_mask(
        self, docs: np.ndarray, scores: np.ndarray, pos_doc: np.ndarray, pos_by_id: np.ndarray, pos_score: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Candidates the array guards keep, and per row how many each guard dropped (the picker and the
        semantic guard add theirs to the same counts)."""
        counts = {guard: np.zeros(len(docs), dtype=np.int64) for guard in GUARDS}
        positive = (docs == pos_doc[:, None]) | (docs == pos_by_id[:, None])
        live = scores > 0  # zero-score hits are never negatives
        counts["positive"] = (positive & live).sum(axis=1)
        keep = live & ~positive
        if len(self.excluded):
            excluded = keep & np.isin(docs, self.excluded)
            counts["excluded"] = excluded.sum(axis=1)
            keep &= ~excluded
        if self.clusters is not None:
            own = self.clusters[np.where(pos_doc >= 0, pos_doc, pos_by_id)]  # -1 (not in the index) -> no cluster
            own = np.where((pos_doc >= 0) | (pos_by_id >= 0), own, -1)
            mates = keep & (own[:, None] >= 0) & (self.clusters[docs] == own[:, None])
            counts["duplicate"] = mates.sum(axis=1)
            keep &= ~mates
        if self.filters.max_score_ratio is not None:
            # A positive scoring 0 (its question shares no term with it) gives no margin to compare with.
            comparable = (pos_score > 0)[:, None]  # NaN (positive not in the index) -> False too
            close = keep & comparable & (scores > self.filters.max_score_ratio * pos_score[:, None])
            counts["score_ratio"] = close.sum(axis=1)
            keep &= ~close
        if self.filters.max_similarity is not None:
            similar = self._rewritten_copies(docs, keep, np.where(pos_doc >= 0, pos_doc, pos_by_id))
            counts["idf_cosine"] = similar.sum(axis=1)
            keep &= ~similar
        return keep, counts

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
        return keep & (cosines > limit[:, None])  # type: ignore[no-any-return]

    def _arrow_columns(
        self, n: int, rows: list[int], mined: Mined, errors: list[RowError | None]
    ) -> dict[str, pa.Array]:
        mask = pa.array([e is not None for e in errors])
        positive = np.full(n, np.nan, dtype=np.float32)
        positive[rows] = mined.positive_scores
        counts = np.zeros((len(GUARDS), n), dtype=np.int32)
        counts[:, rows] = mined.counts
        self.dropped.update({GUARDS[g]: int(c) for g, c in zip(GUARDS, counts.sum(axis=1))})
        negatives = self._lists(n, rows, [p[0] for p in mined.picks], mask)
        flat_scores = pa.array([s for p in mined.picks for s in p[1]], type=pa.float32())
        columns = {
            self.key: negatives[0],
            f"{self.key}_ids": negatives[1],
            f"{self.key}_scores": pa.ListArray.from_arrays(negatives[2], flat_scores, mask=mask),
            f"{self.key}_positive_score": pa.array(positive, from_pandas=True),
            f"{self.key}_positive_rank": pa.array(_spread(n, rows, mined.positive_ranks), type=pa.int32()),
            f"{self.key}_dropped": pa.StructArray.from_arrays([pa.array(c) for c in counts], names=list(GUARDS)),
            f"{self.key}_error": pa.array([render(e) for e in errors], type=pa.string()),
        }
        if self.filters.relabel:
            found = [mined.false_negatives.get(i, []) for i in range(len(rows))]
            texts, ids, _ = self._lists(n, rows, found, mask)
            columns |= {f"{self.key}_positives": texts, f"{self.key}_positives_ids": ids}
        return columns

    def _lists(
        self, n: int, rows: list[int], docs: list[list[int]], mask: pa.Array
    ) -> tuple[pa.Array, pa.Array, pa.Array]:
        """List columns of the documents' texts and ids per row (``rows``' lists in order, empty elsewhere)."""
        lengths = np.zeros(n, dtype=np.int32)
        lengths[rows] = [len(d) for d in docs]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        flat = pa.array([d for row in docs for d in row], type=pa.int64())
        return (
            pa.ListArray.from_arrays(offsets, self.index.text_array.take(flat), mask=mask),
            pa.ListArray.from_arrays(offsets, self.index.id_array.take(flat), mask=mask),
            offsets,
        )

    def _service_runs(self) -> list[LLMRun]:
        runs = [getattr(source, "run", None) for source in (self.candidates, *self.judges)]
        return list({id(run): run for run in runs if run is not None}.values())

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
            usage=add_usage(*(run.usage.to_dict() for run in self._service_runs())),  # the embedder's, the reranker's
            columns=column_docs(self.columns),
            stats={
                "short": self.short,
                "without_negatives": self.without,
                "negatives_per_row": {str(k): v for k, v in sorted(histogram.items())},
                "mean_negatives": round(sum(counts) / len(counts), 3) if counts else 0.0,
                "dropped_candidates": dict(self.dropped),
            },
        )


class Judge(Protocol):
    """A model that judges the candidates about to be served (:class:`SemanticGuard`, :class:`RerankGuard`)."""

    guard: str  # the GUARDS key its drops count under
    failed_guard: str  # and the one for candidates it could not judge

    def prepare(self, texts: list[Any], questions: list[Any], errors: list[RowError | None]) -> None: ...

    def judge(self, rows: np.ndarray, candidates: np.ndarray, record: bool) -> Verdict: ...

    def params(self) -> dict[str, Any]: ...


def _spread(n: int, rows: list[int], values: np.ndarray) -> list[int | None]:
    """``values`` of the mined rows at their places among ``n``, ``None`` elsewhere and where unknown (< 0)."""
    out: list[int | None] = [None] * n
    for i, value in zip(rows, values.tolist()):
        out[i] = value if value >= 0 else None
    return out
