"""Step 2 (BM25HardNeg): documents that look relevant to a question but are not its source."""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from . import _plumbing
from .base import Column, column_docs
from .registry import PlanContext, Read, StepDefinition
from ..retrieval.shingles import passage_csr
from ..retrieval.bm25 import _HAS_NUMBA, BM25Index
from .summary import StepSummary
from ..utils.datasets import DOC_ID, column_values, quiet_datasets_progress

__all__ = ["add_hard_negatives"]


@dataclasses.dataclass(frozen=True)
class _Filters:
    num_neg: int
    min_neg: int
    skip_top: int
    max_score_ratio: float | None
    max_overlap: float | None
    exclude_shared_passages: bool


def add_hard_negatives(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_question_key: str = "question",
    input_text_key: str = "text",
    output_negatives_key: str = "hard_negatives",
    num_neg: int = 3,
    min_neg: int = 1,
    corpus: datasets.Dataset | list[str] | BM25Index | str | os.PathLike[str] | None = None,
    skip_top: int = 0,
    max_score_ratio: float | None = 0.95,
    max_overlap: float | None = 0.6,
    exclude_shared_passages: bool = True,
    k1: float = 0.9,
    b: float = 0.4,
    language: str | None = "auto",
    stopwords: str | list[str] | None = "en",
    batch_size: int = 10_000,
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Mine BM25 hard negatives for every question: top-ranked documents that are not its source.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` with a question and a text (positive document) column.
        input_question_key: Column of the queries.
        input_text_key: Column of the positive documents.
        output_negatives_key: Column to write (a list of document texts per row).
        num_neg: Negatives per question.
        min_neg: Rows with fewer negatives than this fail (``short: ...`` in ``{key}_error``); rows with at
            least ``min_neg`` but fewer than ``num_neg`` are kept and counted as short in the summary.
        corpus: Where negatives come from. ``None``: the split's own unique documents. Otherwise a
            ``Dataset`` (with ``input_text_key`` and optionally ``doc_id``), a list of texts, a
            :class:`BM25Index`, or the folder of a saved index (loaded memory-mapped).
        skip_top: Skip this many of the best remaining candidates (ReasonIR skipped 20) to avoid
            unlabelled positives.
        max_score_ratio: Drop candidates scoring above this fraction of the positive's own score
            (positive-aware false-negative filter); ``None`` disables it.
        max_overlap: Drop candidates whose distinct terms overlap the positive's by more than this (Jaccard:
            shared terms over all terms of both, so a short document is not penalised for being short);
            ``None`` disables it.
        exclude_shared_passages: Drop candidates that share a passage with the positive: a run of 13 or
            more words (any shared run of 16 words is always found). Overlapping chunks of one document
            share passages even when they share few terms, and the sibling chunk holds the answer.
        k1, b, language, stopwords: BM25 and tokenisation settings when an index is built here. ``language``
            is ``"auto"`` by default: Chinese, Japanese, Korean and Thai corpora are detected and indexed as
            character bigrams, others with English stemming; see :meth:`BM25Index.build`.
        batch_size: Questions retrieved per batch (bounds memory).
        overwrite: Replace output columns that already exist instead of raising.
        show_progress: Show progress bars.
        return_summary: Also return the :class:`StepSummary`.

    Returns:
        The dataset with ``{key}`` (list of texts, best first), ``{key}_ids`` (their ``doc_id``),
        ``{key}_scores`` (BM25 scores), ``{key}_positive_score`` and ``{key}_error`` (why a row was not
        mined, else ``None``), where ``{key}`` is ``output_negatives_key``; ``doc_id`` is added if absent.
        The question's own document is never returned, neither by ``doc_id`` nor as an exact (case- and
        whitespace-insensitive) copy. Rows with fewer candidates keep what was found.

    Example:
        >>> ds = rare_hf.add_hard_negatives(ds, num_neg=3)
        >>> ds[0]["hard_negatives"]
    """
    _check_numbers(num_neg, skip_top, max_score_ratio, max_overlap)
    if not 0 <= min_neg <= num_neg:
        raise ValueError(f"min_neg must be between 0 and num_neg ({num_neg}), got {min_neg}.")
    key = output_negatives_key
    outputs = [c.name for c in negative_columns(key)]
    reads = DEFINITION.reads({"input_question_key": input_question_key, "input_text_key": input_text_key})
    for split in _plumbing.splits_of(ds):
        _plumbing.check_reads(split, reads)
        _plumbing.free_output_columns(split, outputs, overwrite)
    shared_index = _external_index(corpus, input_text_key, k1, b, language, stopwords, show_progress)
    filters = _Filters(num_neg, min_neg, skip_top, max_score_ratio, max_overlap, exclude_shared_passages)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.with_doc_ids(_plumbing.free_output_columns(split, outputs, overwrite), input_text_key)
        if shared_index is not None:
            index = shared_index
        elif len(split):
            index = _own_index(split, input_text_key, k1, b, language, stopwords, show_progress)
        else:
            index = None  # an empty split: nothing to index, nothing to mine
        miner = _Miner(index, filters, input_question_key, input_text_key, key, len(split), show_progress)
        try:
            out = miner.run(split, batch_size)
        finally:
            miner.close()
        params = {
            "num_neg": num_neg,
            "min_neg": min_neg,
            "skip_top": skip_top,
            "max_score_ratio": max_score_ratio,
            "max_overlap": max_overlap,
            "exclude_shared_passages": exclude_shared_passages,
            "corpus": "own documents" if corpus is None else type(corpus).__name__,
            "corpus_size": len(index) if index is not None else 0,
            **(index.params if index is not None else {}),
        }
        return out, miner.summary(out, params, time.monotonic() - started)

    return _plumbing.for_each_split(ds, one_split, return_summary)


def negative_columns(key: str = "hard_negatives") -> list[Column]:
    """The columns :func:`add_hard_negatives` writes with ``output_negatives_key=key``."""
    strings = datasets.List(datasets.Value("string"))
    return [
        Column(key, strings, "BM25 hard negatives: documents that look relevant but are not the source, best first."),
        Column(f"{key}_ids", strings, "doc_id of each hard negative."),
        Column(f"{key}_scores", datasets.List(datasets.Value("float32")), "BM25 score of each hard negative."),
        Column(
            f"{key}_positive_score", datasets.Value("float32"), "BM25 score of the source document for the question."
        ),
        Column(f"{key}_error", datasets.Value("string"), "Why the row was not mined (null when it was)."),
    ]


def _check_numbers(num_neg: int, skip_top: int, max_score_ratio: float | None, max_overlap: float | None) -> None:
    if num_neg < 1:
        raise ValueError(f"num_neg must be >= 1, got {num_neg}.")
    if skip_top < 0:
        raise ValueError(f"skip_top must be >= 0, got {skip_top}.")
    if max_score_ratio is not None and max_score_ratio <= 0:
        raise ValueError(f"max_score_ratio must be > 0 (or None to disable), got {max_score_ratio}.")
    if max_overlap is not None and not 0 < max_overlap <= 1:
        raise ValueError(f"max_overlap must be in (0, 1] (or None to disable), got {max_overlap}.")


def _external_index(
    corpus: Any, text_key: str, k1: float, b: float, language: str | None, stopwords: Any, show_progress: bool
) -> BM25Index | None:
    if corpus is None or isinstance(corpus, BM25Index):
        return corpus
    if isinstance(corpus, (str, os.PathLike)):
        return BM25Index.load(corpus, mmap=True)
    if isinstance(corpus, datasets.Dataset):
        _plumbing.require_string_column(corpus, "input_text_key (in corpus)", text_key)
        ids = column_values(corpus, "doc_id") if "doc_id" in corpus.column_names else None
        return BM25Index.build(
            column_values(corpus, text_key),
            ids,
            k1=k1,
            b=b,
            language=language,
            stopwords=stopwords,
            show_progress=show_progress,
        )
    if isinstance(corpus, (list, tuple)):
        return BM25Index.build(
            list(corpus), k1=k1, b=b, language=language, stopwords=stopwords, show_progress=show_progress
        )
    raise TypeError(
        f"corpus must be None, a datasets.Dataset, a list of strings, a BM25Index or the path of "
        f"a saved index; got {type(corpus).__name__}."
    )


def _own_index(
    ds: datasets.Dataset, text_key: str, k1: float, b: float, language: str | None, stopwords: Any, show_progress: bool
) -> BM25Index:
    return BM25Index.build(
        column_values(ds, text_key),
        column_values(ds, DOC_ID),
        k1=k1,
        b=b,
        language=language,
        stopwords=stopwords,
        show_progress=show_progress,
    )


def _count_shared(ids_a: np.ndarray, a: int, a_end: int, ids_b: np.ndarray, b: int, b_end: int) -> int:
    """How many values two sorted, distinct runs ``ids_a[a:a_end]`` and ``ids_b[b:b_end]`` share."""
    shared = 0
    while a < a_end and b < b_end:
        if ids_a[a] == ids_b[b]:
            shared += 1
            a += 1
            b += 1
        elif ids_a[a] < ids_b[b]:
            a += 1
        else:
            b += 1
    return shared


def _pick_kernel(
    docs: np.ndarray,
    keep: np.ndarray,
    pos_doc: np.ndarray,
    indptr: np.ndarray,
    token_ids: np.ndarray,
    passage_indptr: np.ndarray,
    passage_ids: np.ndarray,
    pos_passage_indptr: np.ndarray,
    pos_passage_ids: np.ndarray,
    max_overlap: float,
    num_neg: int,
    skip_top: int,
) -> tuple[np.ndarray, int, int]:
    """Per row, the columns of the first ``num_neg`` kept candidates after ``skip_top``, dropping those
    that share a passage with the positive (a winnowed run of words, see ``_shingles``) and those whose
    distinct terms overlap the positive's by more than ``max_overlap`` (Jaccard; < 0: no overlap check).

    Written in the numpy subset numba compiles; without numba the same code runs as Python.
    """
    rows, width = docs.shape
    chosen = np.full((rows, num_neg), -1, dtype=np.int64)
    overlapping = 0
    sharing = 0
    for r in range(rows):
        found, skipped, p = 0, 0, pos_doc[r]
        for c in range(width):
            if found == num_neg:
                break
            if not keep[r, c]:
                continue
            d = docs[r, c]
            if _count_shared(
                passage_ids,
                passage_indptr[d],
                passage_indptr[d + 1],
                pos_passage_ids,
                pos_passage_indptr[r],
                pos_passage_indptr[r + 1],
            ):
                sharing += 1
                continue
            if max_overlap >= 0 and p >= 0:
                a, a_end, b, b_end = indptr[d], indptr[d + 1], indptr[p], indptr[p + 1]
                shared = _count_shared(token_ids, a, a_end, token_ids, b, b_end)
                union = max(1, (a_end - a) + (b_end - b) - shared)
                if shared > max_overlap * union:
                    overlapping += 1
                    continue
            if skipped < skip_top:
                skipped += 1
                continue
            chosen[r, found] = c
            found += 1
    return chosen, overlapping, sharing


# Candidate cells from which the compiled kernel pays for its one-off compilation (about 3 s cold); below
# that the same code runs as Python.
_NUMBA_MIN_CELLS = 200_000
_compiled_pick_kernel = None

if _HAS_NUMBA:
    import types

    import numba

    # The compiled kernel calls the compiled helper; the Python one keeps calling the Python helper.
    _compiled_pick_kernel = numba.njit(cache=True)(
        types.FunctionType(
            _pick_kernel.__code__,
            {**globals(), "_count_shared": numba.njit(cache=True)(_count_shared)},
            "_pick_kernel",
        )
    )


def _csr_rows(indptr: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of only these rows, in this order."""
    starts, ends = indptr[rows], indptr[rows + 1]
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=out[1:])
    picked = [ids[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
    return out, np.concatenate(picked) if picked else ids[:0]


class _Miner:
    """Retrieves a batch of questions at once, filters candidates with array operations, and writes
    Arrow arrays directly (negative texts are taken from the corpus table, never copied through Python)."""

    def __init__(
        self,
        index: BM25Index | None,
        filters: _Filters,
        question_key: str,
        text_key: str,
        key: str,
        total: int,
        show_progress: bool,
    ) -> None:
        self.index, self.f = index, filters
        self.question_key, self.text_key, self.key = question_key, text_key, key
        self.dropped: collections.Counter[str] = collections.Counter()
        self.short = 0  # rows with fewer than num_neg negatives, failed or not
        self.total = total
        self.bar = tqdm(total=total, desc="Mining hard negatives", unit="question", disable=not show_progress)

    def run(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        features = datasets.Features({**ds.features, **{c.name: c.feature for c in negative_columns(self.key)}})
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
                        "filters": dataclasses.asdict(self.f),
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
        errors: list[str | None] = [None] * n
        valid = [i for i, q in enumerate(questions) if isinstance(q, str) and q.strip()]
        tokens = dict(zip(valid, self.index.tokenize([questions[i] for i in valid]))) if valid else {}
        for i in range(n):
            if i not in tokens:
                errors[i] = "skipped: question is missing (failed upstream)"
            elif not tokens[i]:
                errors[i] = "skipped: the question has no term in the corpus vocabulary"
        rows = [i for i in range(n) if errors[i] is None]
        picks, pos_scores = self._mine([tokens[i] for i in rows], [texts[i] for i in rows], [ids[i] for i in rows])
        for i, (found, _) in zip(rows, picks):
            self.short += len(found) < self.f.num_neg
            if len(found) < self.f.min_neg:
                errors[i] = (
                    f"short: {len(found)} of {self.f.num_neg} negatives found (min_neg={self.f.min_neg}); too few "
                    "candidates pass the filters: use a larger corpus= or loosen max_score_ratio/max_overlap"
                )
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
        depth = self.f.num_neg + self.f.skip_top + 10
        # Hashed once per batch; a deeper retry round takes its rows' share.
        passages = (
            passage_csr(positives)
            if self.f.exclude_shared_passages
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
            max_overlap = -1.0 if self.f.max_overlap is None else self.f.max_overlap
            pos_passages = _csr_rows(*passages, pending)
            compiled = _compiled_pick_kernel is not None and docs.size >= _NUMBA_MIN_CELLS
            kernel = _compiled_pick_kernel if compiled else _pick_kernel
            chosen, overlapping, sharing = kernel(
                docs.astype(np.int64),
                keep,
                pos_doc[pending],
                self.index.token_indptr,
                self.index.token_ids,
                self.index.passage_indptr,
                self.index.passage_ids,
                *pos_passages,
                max_overlap,
                self.f.num_neg,
                self.f.skip_top,
            )
            self.dropped["overlaps the positive"] += int(overlapping)
            self.dropped["shares a passage with the positive"] += int(sharing)
            retry = []
            for row, i in enumerate(pending.tolist()):
                cols = chosen[row][chosen[row] >= 0]
                picks[i] = (docs[row, cols].tolist(), scores[row, cols].tolist())
                if len(cols) < self.f.num_neg and not exhausted[row]:
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
        if self.f.max_score_ratio is not None:
            # A positive scoring 0 (its question shares no term with it) gives no margin to compare with.
            comparable = (pos_score > 0)[:, None]  # NaN (positive not in the index) -> False too
            close = keep & comparable & (scores > self.f.max_score_ratio * pos_score[:, None])
            self.dropped["scores too close to the positive"] += int(close.sum())
            keep &= ~close
        return keep

    def _arrow_columns(
        self,
        n: int,
        rows: list[int],
        picks: list[tuple[list[int], list[float]]],
        pos_scores: np.ndarray,
        errors: list[str | None],
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
            f"{self.key}_error": pa.array(errors, type=pa.string()),
        }

    def close(self) -> None:
        self.bar.close()

    def summary(self, out: datasets.Dataset, params: dict[str, Any], seconds: float) -> StepSummary:
        errors = column_values(out, f"{self.key}_error")
        counts = [len(n) for n in column_values(out, self.key) if n is not None]
        skipped = sum(map(_plumbing.is_skip, errors))
        failed = sum(map(_plumbing.is_failure, errors))
        histogram = collections.Counter(counts)
        return StepSummary(
            step="hard_negatives",
            rows_in=len(out),
            rows_out=len(out),
            ok=len(out) - skipped - failed,
            failed=failed,
            skipped=skipped,
            failure_reasons=_plumbing.count_reasons(errors),
            seconds=seconds,
            params=params,
            columns=column_docs(negative_columns(self.key)),
            stats={
                "short": self.short,
                "without_negatives": histogram.get(0, 0) + sum(1 for e in errors if e and e.startswith("short: 0 ")),
                "negatives_per_row": {str(k): v for k, v in sorted(histogram.items())},
                "mean_negatives": round(sum(counts) / len(counts), 3) if counts else 0.0,
                "dropped_candidates": dict(self.dropped),
            },
        )


class _Definition(StepDefinition):
    function = staticmethod(add_hard_negatives)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        num_neg = ctx.options["num_neg"]
        return {
            "input_question_key": ctx.column("question", "question"),
            "input_text_key": ctx.column("text", "text"),
            "num_neg": 2 * num_neg if "verify_negatives" in ctx.chosen else num_neg,  # replacements for dropped ones
        }

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        return {"hard_negatives": _plumbing.arguments(add_hard_negatives, kwargs)["output_negatives_key"]}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(add_hard_negatives, kwargs)
        return [
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_text_key", args["input_text_key"], "string"),
        ]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return negative_columns(self.provides(kwargs)["hard_negatives"])

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.provides(kwargs)['hard_negatives']}_error"


DEFINITION = _Definition()
