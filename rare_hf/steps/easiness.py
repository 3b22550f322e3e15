"""Easy rows: questions a lexical look-up answers. Cheap signals from what mining already measured, per row,
and an opt-in filter.

ReasonIR's point is reasoning-intensive queries. A question whose content words are lifted from its positive,
which BM25 ranks first by a wide margin, trains the student to match words, not to reason; a user should see how
many rows are such look-ups and may drop them."""

from __future__ import annotations

import time
from typing import Any

import datasets

from ..retrieval.lexical import lexical_overlap
from ..utils.datasets import column_values
from . import _plumbing
from .base import Column
from .drops import DROP_COLUMN, DROP_REASON, filter_summary, mark_dropped
from .registry import PlanContext, Read, StepDefinition
from .summary import StepSummary

__all__ = ["add_easiness"]


def add_easiness(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_question_key: str = "question",
    input_text_key: str = "text",
    input_negatives_key: str = "hard_negatives",
    min_margin: float = 0.5,
    min_lexical_overlap: float = 0.8,
    drop_easy: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Flag (and optionally drop) questions a lexical look-up answers, from the hard-negative step's scores.

    A row is easy when all three hold: its positive is BM25's first result for the question
    (``{negatives}_positive_rank`` == 1), its score is at least ``min_margin`` above the best negative's (as a
    share of the positive's: ``1 - best negative / positive``), and at least ``min_lexical_overlap`` of the
    question's content words appear verbatim in the positive.

    Args:
        ds: Rows mined by :func:`rare_hf.add_hard_negatives` (a ``Dataset`` or ``DatasetDict``).
        input_question_key / input_text_key: Columns of the questions and the positives.
        input_negatives_key: The negatives' column (its ``_scores``, ``_positive_score`` and ``_positive_rank``
            columns are read).
        min_margin: Score margin at or above which the positive stands out (0.5: the best negative scores at most
            half of the positive).
        min_lexical_overlap: Share of the question's content words found in the positive at or above which the
            question is lifted from it (0.8).
        drop_easy: Drop easy rows (``drop_reason`` ``"easy: ..."``); otherwise they are only flagged.
        overwrite: Recompute the columns when they exist.
        show_progress: Unused; kept for the step signature.
        return_summary: Also return the :class:`rare_hf.StepSummary` (its stats hold the distributions).

    Returns:
        The dataset with ``{question}_score_margin``, ``{question}_lexical_overlap`` and ``{question}_easy``.

    Example:
        >>> ds = rare_hf.add_easiness(rare_hf.add_hard_negatives(ds), drop_easy=True)
    """
    if not 0 <= min_margin <= 1 or not 0 <= min_lexical_overlap <= 1:
        raise ValueError(
            f"min_margin and min_lexical_overlap must be in [0, 1], got {min_margin} and {min_lexical_overlap}."
        )
    kwargs = {"input_question_key": input_question_key, "input_text_key": input_text_key}
    kwargs["input_negatives_key"] = input_negatives_key
    outputs = [c.name for c in DEFINITION.columns(kwargs) if c.name != DROP_REASON]
    for split in _plumbing.splits_of(ds):
        _plumbing.check_reads(split, DEFINITION.reads(kwargs))
        _plumbing.free_output_columns(split, outputs, overwrite)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.free_output_columns(split, outputs, overwrite)
        neg = input_negatives_key
        positives, scores = column_values(split, f"{neg}_positive_score"), column_values(split, f"{neg}_scores")
        margins = [_margin(p, s) for p, s in zip(positives, scores)]
        overlaps = [
            lexical_overlap(q, t)
            for q, t in zip(column_values(split, input_question_key), column_values(split, input_text_key))
        ]
        ranks = column_values(split, f"{neg}_positive_rank")
        easy = [
            r == 1 and m is not None and m >= min_margin and o is not None and o >= min_lexical_overlap
            for r, m, o in zip(ranks, margins, overlaps)
        ]
        for name, values, feature in zip(outputs, (margins, overlaps, easy), ("float32", "float32", "bool")):
            split = split.add_column(name, values, feature=datasets.Value(feature))
        if drop_easy:
            details = [_detail(m, o) if e else None for e, m, o in zip(easy, margins, overlaps)]
            split = mark_dropped(split, "easy", details)
        params = {"min_margin": min_margin, "min_lexical_overlap": min_lexical_overlap, "drop_easy": drop_easy}
        stats = _stats(easy, ranks, margins, overlaps)
        columns = DEFINITION.columns(kwargs)
        return split, filter_summary("easiness", split, time.monotonic() - started, params, stats, columns)

    return _plumbing.for_each_split(ds, one_split, return_summary)


def _margin(positive: float | None, scores: list[float] | None) -> float | None:
    if positive is None or positive != positive or positive <= 0 or not scores:
        return None
    return round(1 - max(scores) / positive, 4)


def _detail(margin: float | None, overlap: float | None) -> str:
    return f"positive ranked first by a margin of {margin:.2f}, {overlap:.0%} of the question's words in it"


def _stats(easy: list[bool], ranks: list[Any], margins: list[Any], overlaps: list[Any]) -> dict[str, Any]:
    """Counts and deciles the card shows."""
    return {
        "easy": sum(easy),
        "positive_ranked_first": sum(r == 1 for r in ranks),
        "score_margin_deciles": _deciles(margins),
        "lexical_overlap_deciles": _deciles(overlaps),
    }


def _deciles(values: list[float | None]) -> list[float]:
    known = sorted(v for v in values if v is not None)
    if not known:
        return []
    return [round(known[min(len(known) - 1, len(known) * k // 10)], 3) for k in range(11)]


class _Definition(StepDefinition):
    function = staticmethod(add_easiness)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {
            "input_question_key": ctx.column("question", "question"),
            "input_text_key": ctx.column("text", "text"),
            "input_negatives_key": ctx.column("hard_negatives", "hard_negatives"),
        }

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(add_easiness, kwargs)
        neg = args["input_negatives_key"]
        return [
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_text_key", args["input_text_key"], "string"),
            *(Read("input_negatives_key", f"{neg}_{part}") for part in ("scores", "positive_score", "positive_rank")),
        ]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        q = _plumbing.arguments(add_easiness, kwargs)["input_question_key"]
        return [
            Column(f"{q}_score_margin", datasets.Value("float32"), "1 - best negative's score / the positive's."),
            Column(
                f"{q}_lexical_overlap",
                datasets.Value("float32"),
                "Share of the question's content words found verbatim in the positive.",
            ),
            Column(
                f"{q}_easy", datasets.Value("bool"), "Positive ranked first by a wide margin on the question's words."
            ),
            DROP_COLUMN,
        ]

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return DROP_REASON


DEFINITION = _Definition()
