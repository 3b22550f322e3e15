"""Near-duplicate questions across the dataset: the first of each cluster is kept, the others dropped before
they are mined and reasoned over (a teacher asked about near-identical documents, or one that repeats itself,
writes the same question twice)."""

from __future__ import annotations

import time
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ..retrieval.minhash import near_duplicates
from ..utils.datasets import DOC_ID, arrow_column, column_values
from . import _plumbing
from .base import Column
from .dedup import check_dedup_arguments
from .drops import DROP_COLUMN, DROP_REASON, filter_summary, mark_dropped
from .registry import PlanContext, Read, StepDefinition
from .summary import StepSummary

__all__ = ["dedup_questions"]


def dedup_questions(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_question_key: str = "question",
    threshold: float = 0.6,
    shingle_words: int = 3,
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Drop questions that nearly repeat an earlier one (MinHash over word shingles, checked on exact Jaccard).

    Rows without a question or already dropped are left alone and never count as an earlier copy.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` (each split on its own).
        input_question_key: Column of the questions.
        threshold: Jaccard similarity of two questions' sets of ``shingle_words``-word runs at or above which the
            later one is dropped. 0.6 with 3-word shingles (defaults) joins a question with a few words changed;
            a rephrased question is a different question here.
        shingle_words: Words per shingle.
        overwrite: Recompute ``{question}_duplicate_of`` when it exists.
        show_progress: Unused; kept for the step signature.
        return_summary: Also return the :class:`rare_hf.StepSummary`.

    Returns:
        The dataset with ``{question}_duplicate_of`` (``doc_id`` of the row whose question this one repeats, or its
        row number when the dataset has no ``doc_id``) and
        ``drop_reason`` (``"duplicate question: ..."``).

    Example:
        >>> ds = rare_hf.dedup_questions(rare_hf.add_questions(docs, llm))
    """
    check_dedup_arguments(threshold, shingle_words)
    q = input_question_key
    for split in _plumbing.splits_of(ds):
        _plumbing.check_reads(split, DEFINITION.reads({"input_question_key": q}))
        _plumbing.free_output_columns(split, [f"{q}_duplicate_of"], overwrite)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.free_output_columns(split, [f"{q}_duplicate_of"], overwrite)
        questions = arrow_column(split, q)
        if DROP_REASON in split.column_names:  # already dropped: neither a copy nor an original
            questions = pc.if_else(
                pc.is_null(arrow_column(split, DROP_REASON)), questions, pa.scalar(None, questions.type)
            )
        clusters = near_duplicates(questions, threshold, shingle_words)
        ids = column_values(split, DOC_ID) if DOC_ID in split.column_names else [str(i) for i in range(len(split))]
        first = [None] * len(split)
        details: list[str | None] = [None] * len(split)
        for i in clusters.duplicates.tolist():
            first[i] = ids[clusters.representative[i]]
            details[i] = f"repeats the question of document {first[i]} (Jaccard {clusters.similarity[i]:.2f})"
        split = split.add_column(f"{q}_duplicate_of", first, feature=datasets.Value("string"))
        split = mark_dropped(split, "duplicate question", details)
        params = {"threshold": threshold, "shingle_words": shingle_words, "input_question_key": q}
        stats = {"duplicates": len(clusters.duplicates), "candidate_pairs": clusters.candidate_pairs}
        columns = DEFINITION.columns({"input_question_key": q})
        return split, filter_summary("dedup_questions", split, time.monotonic() - started, params, stats, columns)

    return _plumbing.for_each_split(ds, one_split, return_summary)


class _Definition(StepDefinition):
    function = staticmethod(dedup_questions)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {"input_question_key": ctx.column("question", "question")}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        return [Read("input_question_key", self._question(kwargs), "string")]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        doc = "doc_id of the row whose question this one nearly repeats (the row is then dropped)."
        return [Column(f"{self._question(kwargs)}_duplicate_of", datasets.Value("string"), doc), DROP_COLUMN]

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return DROP_REASON

    @staticmethod
    def _question(kwargs: dict[str, Any]) -> str:
        return str(_plumbing.arguments(dedup_questions, kwargs)["input_question_key"])


DEFINITION = _Definition()
