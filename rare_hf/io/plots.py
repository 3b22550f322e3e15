"""Small figures for the dataset card (the ``plot`` extra: ``pip install "rare-hf[plot]"``).

Each figure answers one question a reader of the card has: how long are the questions, how many negatives
does a row have, how close do negatives score to the positive, where was the positive shown, and how
often was the teacher right at first try. Without matplotlib the card keeps its tables.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import datasets

if TYPE_CHECKING:
    from ..steps.pipeline import RunSummary

Figure = Any
# Where each figure's data is when the run did not say (a card pushed without a summary).
_DEFAULT_ROLES = {"question": "question", "hard_negatives": "hard_negatives", "reasoning": "reasoning"}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def card_plots(ds: datasets.Dataset, summary: RunSummary | None) -> dict[str, tuple[str, bytes]]:
    """``{file name: (caption, PNG bytes)}`` of every figure the data supports, found in the columns the run
    says hold each kind of data (custom column names included)."""
    columns = ds.with_format("arrow")
    roles = {**_DEFAULT_ROLES, **(summary.roles if summary is not None else {})}
    question, negatives, reasoning = (roles.get(k) or "" for k in ("question", "hard_negatives", "reasoning"))
    makers: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("question_words.png", "Words per question", lambda: _question_words(columns, question)),
        ("negatives_per_row.png", "Hard negatives per row", lambda: _negatives_per_row(columns, negatives)),
        (
            "negative_vs_positive_score.png",
            "BM25 score of each negative / the positive's",
            lambda: _scores(columns, negatives),
        ),
        (
            "positive_position.png",
            "Where the positive was shown to the teacher",
            lambda: _positions(columns, reasoning),
        ),
        ("teacher_accuracy.png", "Teacher accuracy against gold answers", lambda: _accuracy(summary)),
        ("easiness.png", "Easiness signals per row", lambda: _easiness(columns, question)),
    ]
    plots = {}
    for name, caption, make in makers:
        figure = make()
        if figure is not None:
            plots[name] = (caption, _png(figure))
    return plots


def _figure(title: str) -> tuple[Figure, Any]:
    # A bare Figure renders to PNG without pyplot: the user's backend (a notebook's) is never switched.
    from matplotlib.figure import Figure as MatplotlibFigure

    figure = MatplotlibFigure(figsize=(5, 3), dpi=100)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _column(columns: Any, name: str) -> list[Any] | None:
    return columns[name].to_pylist() if name and name in columns.column_names else None


def _question_words(columns: Any, question: str) -> Figure | None:
    questions = [q for q in _column(columns, question) or [] if q]
    if not questions:
        return None
    figure, axes = _figure("Words per question")
    axes.hist([len(q.split()) for q in questions], bins=30, color="#4c72b0")
    axes.set_xlabel("words")
    axes.set_ylabel("rows")
    return figure


def _negatives_per_row(columns: Any, key: str) -> Figure | None:
    negatives = _column(columns, key)
    if negatives is None:
        return None
    counts = [len(n) if n else 0 for n in negatives]
    figure, axes = _figure("Hard negatives per row")
    values = sorted(set(counts))
    axes.bar([str(v) for v in values], [counts.count(v) for v in values], color="#55a868")
    axes.set_xlabel("negatives")
    axes.set_ylabel("rows")
    return figure


def _scores(columns: Any, key: str) -> Figure | None:
    scores = _column(columns, f"{key}_scores")
    positives = _column(columns, f"{key}_positive_score")
    if scores is None or positives is None:
        return None
    ratios = [s / p for row, p in zip(scores, positives) if row and p for s in row]
    if not ratios:
        return None
    figure, axes = _figure("Negative score / positive score")
    axes.hist(ratios, bins=30, color="#c44e52")
    axes.set_xlabel("ratio (1 = as relevant to BM25 as the positive)")
    axes.set_ylabel("negatives")
    return figure


def _positions(columns: Any, key: str) -> Figure | None:
    positions = [p for p in _column(columns, f"{key}_positive_index") or [] if p is not None]
    if not positions:
        return None
    figure, axes = _figure("Position of the positive among the shown documents")
    values = sorted(set(positions))
    axes.bar([str(v + 1) for v in values], [positions.count(v) for v in values], color="#8172b2")
    axes.set_xlabel("shown as document")
    axes.set_ylabel("rows")
    return figure


def _accuracy(summary: RunSummary | None) -> Figure | None:
    reasoning = summary.step("reasoning") if summary is not None else None
    if reasoning is None or not reasoning.stats.get("with_gold"):
        return None
    graded = reasoning.stats["with_gold"]
    figure, axes = _figure("Teacher accuracy against gold answers")
    shares = [reasoning.stats["first_try_correct"] / graded, reasoning.stats["final_correct"] / graded]
    axes.bar(["first try", "after resampling"], shares, color=["#dd8452", "#4c72b0"])
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of rows with gold")
    return figure


def _easiness(columns: Any, question: str) -> Figure | None:
    margins = [v for v in _column(columns, f"{question}_score_margin") or [] if v is not None]
    overlaps = [v for v in _column(columns, f"{question}_lexical_overlap") or [] if v is not None]
    if not margins and not overlaps:
        return None
    figure, axes = _figure("Easiness signals")
    axes.hist([margins, overlaps], bins=20, range=(0, 1), label=["score margin", "lexical overlap"])
    axes.set_xlabel("value (high: a look-up question)")
    axes.set_ylabel("rows")
    axes.legend(fontsize=8)
    return figure
