"""Rows a quality filter takes out: one shared column, ``drop_reason``, which every step honours.

A filter (near-duplicate documents or questions, ...) does not delete rows: a duplicate document must stay in
the corpus that negatives are mined from. It writes why the row goes, as ``"kind: detail"``; every later step
skips the row (no request is spent on it), and :func:`rare_hf.build_rare_dataset` removes it at the end unless
``keep_failed``. The first filter to drop a row names the reason; a filter run again replaces only its own.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any
import datasets

from ..utils.datasets import column_values
from .base import Column
from . import _plumbing
from .row_error import DROP_REASON, RowError, Tally
from .summary import StepSummary

__all__ = ["DROP_REASON", "DROP_COLUMN", "mark_dropped", "drop_counts", "filter_summary"]
DROP_COLUMN = Column(
    DROP_REASON,
    datasets.Value("string"),
    "Why a quality filter takes the row out, as 'kind: detail' (null: kept); later steps skip such rows.",
)


def mark_dropped(ds: datasets.Dataset, kind: str, details: Sequence[str | None]) -> datasets.Dataset:
    """``ds`` with ``drop_reason`` set to ``"{kind}: {detail}"`` where a detail is given; a row another filter
    dropped first keeps that reason, and this filter's reasons from an earlier run are replaced."""
    previous = column_values(ds, DROP_REASON) if DROP_REASON in ds.column_names else [None] * len(ds)
    reasons = []
    for old, detail in zip(previous, details):
        if old is not None and not old.startswith(f"{kind}:"):
            reasons.append(old)
        else:
            reasons.append(None if detail is None else f"{kind}: {detail}")
    if DROP_REASON in ds.column_names:
        ds = ds.remove_columns(DROP_REASON)
    return ds.add_column(DROP_REASON, reasons, feature=DROP_COLUMN.feature)


def drop_counts(ds: datasets.Dataset | datasets.DatasetDict) -> dict[str, int]:
    """Rows dropped per kind of reason."""
    splits = ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]
    counts: collections.Counter[str] = collections.Counter()
    for split in splits:
        if DROP_REASON in split.column_names:
            counts.update(r.split(":", 1)[0] for r in column_values(split, DROP_REASON) if r is not None)
    return dict(sorted(counts.items()))


def filter_summary(
    step: str, split: datasets.Dataset, seconds: float, params: dict[str, Any], stats: dict[str, Any],
    columns: list[Column],
) -> StepSummary:  # fmt: skip
    """A filter's summary: rows it or an earlier filter dropped count as skipped, the rest as ok."""
    tally = Tally()
    reasons = column_values(split, DROP_REASON) if DROP_REASON in split.column_names else [None] * len(split)
    for reason in reasons:
        tally.add(None if reason is None else RowError("dropped", reason))
    return _plumbing.step_summary(
        step, len(split), tally, seconds=seconds, params=params, stats=stats,
        columns={c.name: c.doc for c in columns},
    )  # fmt: skip
