"""Step 2 (BM25HardNeg): documents that look relevant to a question but are not its source."""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm

from . import _steps
from .bm25 import BM25Index, normalized_key
from .summary import StepSummary

__all__ = ["add_hard_negatives"]

@dataclasses.dataclass(frozen=True)
class _Filters:
    num_neg: int
    skip_top: int
    max_score_ratio: float | None
    max_overlap: float | None


def add_hard_negatives(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_question_key: str = "question",
    input_text_key: str = "text",
    output_negatives_key: str = "hard_negatives",
    num_neg: int = 3,
    corpus: datasets.Dataset | list[str] | BM25Index | str | os.PathLike[str] | None = None,
    skip_top: int = 0,
    max_score_ratio: float | None = 0.95,
    max_overlap: float | None = 0.6,
    k1: float = 0.9,
    b: float = 0.4,
    language: str | None = "english",
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
        corpus: Where negatives come from. ``None``: the split's own unique documents. Otherwise a
            ``Dataset`` (with ``input_text_key`` and optionally ``doc_id``), a list of texts, a
            :class:`BM25Index`, or the folder of a saved index (loaded memory-mapped).
        skip_top: Skip this many of the best remaining candidates (ReasonIR skipped 20) to avoid
            unlabelled positives.
        max_score_ratio: Drop candidates scoring above this fraction of the positive's own score
            (positive-aware false-negative filter); ``None`` disables it.
        max_overlap: Drop candidates sharing more than this fraction of their distinct terms with the
            positive (overlapping chunks, near-duplicates); ``None`` disables it.
        k1, b, language, stopwords: BM25 and tokenisation settings when an index is built here.
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
    key = output_negatives_key
    outputs = [key, f"{key}_ids", f"{key}_scores", f"{key}_positive_score", f"{key}_error"]
    for split in ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]:
        _steps.require_string_column(split, "input_question_key", input_question_key)
        _steps.require_string_column(split, "input_text_key", input_text_key)
        _steps.free_output_columns(split, outputs, overwrite)
    shared_index = _external_index(corpus, input_text_key, k1, b, language, stopwords, show_progress)
    filters = _Filters(num_neg, skip_top, max_score_ratio, max_overlap)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _steps.with_doc_ids(_steps.free_output_columns(split, outputs, overwrite), input_text_key)
        index = shared_index or _own_index(split, input_text_key, k1, b, language, stopwords, show_progress)
        miner = _Miner(index, filters, input_question_key, input_text_key, key, len(split), show_progress)
        try:
            out = miner.run(split, batch_size)
        finally:
            miner.close()
        params = {"num_neg": num_neg, "skip_top": skip_top, "max_score_ratio": max_score_ratio,
                  "max_overlap": max_overlap, "corpus": "own documents" if corpus is None else type(corpus).__name__,
                  "corpus_size": len(index), **index.params}
        return out, miner.summary(out, params, time.monotonic() - started)

    return _steps.for_each_split(ds, one_split, return_summary)


def _check_numbers(num_neg: int, skip_top: int, max_score_ratio: float | None, max_overlap: float | None) -> None:
    if num_neg < 1:
        raise ValueError(f"num_neg must be >= 1, got {num_neg}.")
    if skip_top < 0:
        raise ValueError(f"skip_top must be >= 0, got {skip_top}.")
    if max_score_ratio is not None and max_score_ratio <= 0:
        raise ValueError(f"max_score_ratio must be > 0 (or None to disable), got {max_score_ratio}.")
    if max_overlap is not None and not 0 < max_overlap <= 1:
        raise ValueError(f"max_overlap must be in (0, 1] (or None to disable), got {max_overlap}.")


def _external_index(corpus: Any, text_key: str, k1: float, b: float, language: str | None,
                    stopwords: Any, show_progress: bool) -> BM25Index | None:
    if corpus is None or isinstance(corpus, BM25Index):
        return corpus
    if isinstance(corpus, (str, os.PathLike)):
        return BM25Index.load(corpus, mmap=True)
    if isinstance(corpus, datasets.Dataset):
        _steps.require_string_column(corpus, "input_text_key (in corpus)", text_key)
        ids = _steps.column_values(corpus, "doc_id") if "doc_id" in corpus.column_names else None
        return BM25Index.build(_steps.column_values(corpus, text_key), ids, k1=k1, b=b, language=language, stopwords=stopwords,
                               show_progress=show_progress)
    if isinstance(corpus, (list, tuple)):
        return BM25Index.build(list(corpus), k1=k1, b=b, language=language, stopwords=stopwords,
                               show_progress=show_progress)
    raise TypeError(f"corpus must be None, a datasets.Dataset, a list of strings, a BM25Index or the path of "
                    f"a saved index; got {type(corpus).__name__}.")


def _own_index(ds: datasets.Dataset, text_key: str, k1: float, b: float, language: str | None,
               stopwords: Any, show_progress: bool) -> BM25Index:
    return BM25Index.build(_steps.column_values(ds, text_key), _steps.column_values(ds, _steps.DOC_ID), k1=k1, b=b, language=language, stopwords=stopwords,
                           show_progress=show_progress)


class _Miner:
    """Retrieves a batch of questions at once, then filters each question's candidates."""

    def __init__(self, index: BM25Index, filters: _Filters, question_key: str, text_key: str, key: str,
                 total: int, show_progress: bool) -> None:
        self.index, self.f = index, filters
        self.question_key, self.text_key, self.key = question_key, text_key, key
        self.dropped: collections.Counter[str] = collections.Counter()
        self.total = total
        self.bar = tqdm(total=total, desc="Mining hard negatives", unit="question", disable=not show_progress)

    def run(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        features = datasets.Features({
            **ds.features, self.key: datasets.List(datasets.Value("string")),
            f"{self.key}_ids": datasets.List(datasets.Value("string")),
            f"{self.key}_scores": datasets.List(datasets.Value("float32")),
            f"{self.key}_positive_score": datasets.Value("float32"),
            f"{self.key}_error": datasets.Value("string")})
        with _steps.quiet_datasets_progress():
            return ds.map(self._batch, batched=True, batch_size=batch_size, features=features,
                          load_from_cache_file=False,
                          new_fingerprint=_steps.fingerprint(ds, "add_hard_negatives", {
                              "filters": dataclasses.asdict(self.f), "index": self.index.params,
                              "corpus": len(self.index), "key": self.key}))

    def _batch(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        questions, texts, ids = batch[self.question_key], batch[self.text_key], batch[_steps.DOC_ID]
        n = len(questions)
        out: dict[str, list[Any]] = {self.key: [None] * n, f"{self.key}_ids": [None] * n,
                                     f"{self.key}_scores": [None] * n, f"{self.key}_positive_score": [None] * n,
                                     f"{self.key}_error": [None] * n}
        valid = [i for i, q in enumerate(questions) if isinstance(q, str) and q.strip()]
        for i in set(range(n)) - set(valid):
            out[f"{self.key}_error"][i] = "skipped: question is missing (failed upstream)"
        tokens = self.index.tokenize([questions[i] for i in valid]) if valid else []
        queried = [(i, t) for i, t in zip(valid, tokens) if t]
        for i, t in zip(valid, tokens):
            if not t:
                out[f"{self.key}_error"][i] = "skipped: the question has no term in the corpus vocabulary"
        picks = self._mine([t for _, t in queried], [texts[i] for i, _ in queried], [ids[i] for i, _ in queried])
        all_docs = [d for docs, _, _ in picks for d in docs]
        all_texts = iter(self.index.texts(all_docs))
        for (i, _), (docs, scores, positive_score) in zip(queried, picks):
            out[self.key][i] = [next(all_texts) for _ in docs]
            out[f"{self.key}_ids"][i] = [self.index.doc_ids[d] for d in docs]
            out[f"{self.key}_scores"][i] = scores
            out[f"{self.key}_positive_score"][i] = positive_score
        self.bar.update(n)
        return out

    def _mine(self, queries: list[list[int]], positives: list[str | None],
              positive_ids: list[str]) -> list[tuple[list[int], list[float], float | None]]:
        """Filtered negatives for every query; queries left short with a full candidate list are retried
        with a deeper list, so a strict filter does not silently return fewer than it could."""
        depth = self.f.num_neg + self.f.skip_top + 10
        results: list[Any] = [None] * len(queries)
        pending = list(range(len(queries)))
        while pending:
            k = min(depth, len(self.index))
            docs, scores = self.index.search([queries[i] for i in pending], k, expected_queries=self.total)
            retry = []
            for row, i in enumerate(pending):
                picked, exhausted = self._select(queries[i], docs[row], scores[row], positives[i], positive_ids[i])
                results[i] = picked
                if len(picked[0]) < self.f.num_neg and not exhausted and k < len(self.index):
                    retry.append(i)
            pending, depth = retry, depth * 4
        return results

    def _select(self, query: list[int], docs: np.ndarray, scores: np.ndarray, positive: str | None,
                positive_id: str) -> tuple[tuple[list[int], list[float], float | None], bool]:
        order = np.lexsort((docs, -scores))  # best first; ties by corpus position, for determinism
        docs, scores = docs[order].tolist(), scores[order].tolist()
        pos_doc = self.index.position_of(positive) if isinstance(positive, str) else -1
        pos_key = normalized_key(positive) if isinstance(positive, str) else None
        pos_score = None
        if pos_doc >= 0:
            pos_score = scores[docs.index(pos_doc)] if pos_doc in docs else self.index.score(query, pos_doc)
        pos_terms = self.index.token_set(pos_doc) if pos_doc >= 0 else None
        picked: list[int] = []
        picked_scores: list[float] = []
        skipped = 0
        for doc, score in zip(docs, scores):
            if score <= 0:
                return (picked, picked_scores, pos_score), True  # zero-score hits are never negatives
            reason = self._reject(doc, score, pos_doc, pos_key, positive_id, pos_score, pos_terms)
            if reason:
                self.dropped[reason] += 1
            elif skipped < self.f.skip_top:
                skipped += 1
            else:
                picked.append(doc)
                picked_scores.append(score)
                if len(picked) == self.f.num_neg:
                    break
        return (picked, picked_scores, pos_score), False

    def _reject(self, doc: int, score: float, pos_doc: int, pos_key: int | None, positive_id: str,
                pos_score: float | None, pos_terms: frozenset[int] | None) -> str | None:
        if doc == pos_doc or self.index.doc_ids[doc] == positive_id or self.index.keys[doc] == pos_key:
            return "positive or exact duplicate"
        if self.f.max_score_ratio is not None and pos_score and score > self.f.max_score_ratio * pos_score:
            return "scores too close to the positive"
        if self.f.max_overlap is not None and pos_terms:
            terms = self.index.token_set(doc)
            shared = len(terms & pos_terms) / max(1, min(len(terms), len(pos_terms)))
            if shared > self.f.max_overlap:
                return "overlaps the positive"
        return None

    def close(self) -> None:
        self.bar.close()

    def summary(self, out: datasets.Dataset, params: dict[str, Any], seconds: float) -> StepSummary:
        errors = _steps.column_values(out, f"{self.key}_error")
        counts = [len(n) for n in _steps.column_values(out, self.key) if n is not None]
        skipped = sum(e is not None for e in errors)
        histogram = collections.Counter(counts)
        return StepSummary(
            step="hard_negatives", rows_in=len(out), rows_out=len(out), ok=len(out) - skipped, skipped=skipped,
            failure_reasons=_steps.count_reasons(errors), seconds=seconds, params=params,
            stats={"short": sum(c < self.f.num_neg for c in counts), "without_negatives": histogram.get(0, 0),
                   "negatives_per_row": {str(k): v for k, v in sorted(histogram.items())},
                   "mean_negatives": round(sum(counts) / len(counts), 3) if counts else 0.0,
                   "dropped_candidates": dict(self.dropped)})
