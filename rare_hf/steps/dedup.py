"""Near-duplicate documents: one of each cluster gets questions; the others stay in the corpus for mining but
are never served as negatives of their cluster-mates.

Two reference works merged into one corpus hold many near-identical or lightly re-edited entries: each would
get its own question and reasoning (paid twice) and would come back as the other's "hard negative" (a false
negative that answers the question). :func:`dedup_documents` finds them before any request is sent."""

from __future__ import annotations

import time
from typing import Any

import datasets
import numpy as np

from ..retrieval.bm25 import BM25Index
from ..retrieval.minhash import near_duplicates
from ..utils.datasets import DOC_ID, arrow_column, column_values
from . import _plumbing
from .base import Column
from .drops import DROP_COLUMN, DROP_REASON, filter_summary, mark_dropped
from .registry import PlanContext, Read, StepDefinition
from .summary import StepSummary

__all__ = ["dedup_documents", "DUPLICATE_OF", "cluster_labels", "check_dedup_arguments"]

DUPLICATE_OF = "duplicate_of"
_SIMILARITY = "duplicate_similarity"


def dedup_documents(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_text_key: str = "text",
    threshold: float = 0.7,
    shingle_words: int = 5,
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Find near-duplicate documents (MinHash over word shingles, each pair checked on exact Jaccard).

    The first document of each cluster is kept; the others get ``drop_reason`` ``"duplicate: ..."``, so
    :func:`rare_hf.add_questions` and every later step skip them (no request is spent) and
    :func:`rare_hf.build_rare_dataset` removes them at the end. They stay in the split, so the hard-negative
    step still indexes them, and it never serves a document as a negative of its own cluster.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` (each split deduplicated on its own).
        input_text_key: Column of the documents.
        threshold: Jaccard similarity of two documents' sets of ``shingle_words``-word runs at or above which
            they are duplicates. 0.7 (default) joins copies with up to about 3 % of their words changed (the
            benchmark in ``scripts/benchmark_dedup.py`` plants copies at several edit rates); 1.0 finds only
            copies that differ in case, spacing or punctuation.
        shingle_words: Words per shingle; fewer finds more heavily edited copies, and more false matches.
        overwrite: Recompute ``duplicate_of`` / ``duplicate_similarity`` when they exist.
        show_progress: Unused (one pass, a few seconds per 100,000 documents); kept for the step signature.
        return_summary: Also return the :class:`rare_hf.StepSummary`.

    Returns:
        The dataset with ``doc_id`` (added if absent), ``duplicate_of`` (the ``doc_id`` of the document kept for
        the row's cluster, null for kept rows), ``duplicate_similarity`` (Jaccard with it) and ``drop_reason``.

    Example:
        >>> ds = rare_hf.dedup_documents(docs)
        >>> ds.filter(lambda r: r["duplicate_of"] is None)  # what gets questions
    """
    check_dedup_arguments(threshold, shingle_words)
    outputs = [DUPLICATE_OF, _SIMILARITY]
    for split in _plumbing.splits_of(ds):
        _plumbing.check_reads(split, DEFINITION.reads({"input_text_key": input_text_key}))
        _plumbing.free_output_columns(split, outputs, overwrite)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.with_doc_ids(_plumbing.free_output_columns(split, outputs, overwrite), input_text_key)
        clusters = near_duplicates(arrow_column(split, input_text_key), threshold, shingle_words)
        ids = column_values(split, DOC_ID)
        first = [ids[r] if r >= 0 and r != i else None for i, r in enumerate(clusters.representative.tolist())]
        similarity = [round(float(s), 4) if f else None for s, f in zip(clusters.similarity, first)]
        split = split.add_column(DUPLICATE_OF, first, feature=datasets.Value("string"))
        split = split.add_column(_SIMILARITY, similarity, feature=datasets.Value("float32"))
        details = [
            None if f is None else f"near-duplicate of document {f} (Jaccard {s:.2f})"
            for f, s in zip(first, similarity)
        ]
        split = mark_dropped(split, "duplicate", details)
        params = {"threshold": threshold, "shingle_words": shingle_words, "input_text_key": input_text_key}
        stats = {"duplicates": sum(f is not None for f in first), "candidate_pairs": clusters.candidate_pairs}
        stats["clusters"] = len({f for f in first if f is not None})
        return split, filter_summary("dedup", split, time.monotonic() - started, params, stats, DEFINITION.columns({}))

    return _plumbing.for_each_split(ds, one_split, return_summary)


def check_dedup_arguments(threshold: float, shingle_words: int) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (Jaccard similarity), got {threshold!r}.")
    if not isinstance(shingle_words, int) or shingle_words < 1:
        raise ValueError(f"shingle_words must be a positive integer, got {shingle_words!r}.")


def cluster_labels(split: datasets.Dataset, index: BM25Index) -> np.ndarray | None:
    """Per document of ``index``, the near-duplicate cluster ``split``'s ``duplicate_of`` puts it in (-1: none);
    ``None`` when the split was not deduplicated or has no duplicates."""
    if DUPLICATE_OF not in split.column_names or DOC_ID not in split.column_names:
        return None
    label: dict[str, int] = {}
    for doc_id, first in zip(column_values(split, DOC_ID), column_values(split, DUPLICATE_OF)):
        if first is not None:
            label[doc_id] = label.setdefault(first, len(label))
    if not label:
        return None
    clusters = np.full(len(index), -1, dtype=np.int64)
    for doc_id, cluster in label.items():
        position = index.position_of_id(doc_id)
        if position >= 0:
            clusters[position] = cluster
    return clusters


class _Definition(StepDefinition):
    function = staticmethod(dedup_documents)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {"input_text_key": ctx.column("text", "text")}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        return [Read("input_text_key", _plumbing.arguments(dedup_documents, kwargs)["input_text_key"], "string")]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return [
            Column(DOC_ID, datasets.Value("string"), "Source document id."),
            Column(
                DUPLICATE_OF,
                datasets.Value("string"),
                "doc_id of the near-duplicate document kept instead of this one.",
            ),
            Column(_SIMILARITY, datasets.Value("float32"), "Jaccard similarity (word shingles) with it."),
            DROP_COLUMN,
        ]

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return DROP_REASON


DEFINITION = _Definition()
