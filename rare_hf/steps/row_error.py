"""Why a row of a step has no result: a kind, which summaries count, and a detail, which people read.

Steps put a :class:`RowError` (or ``None``) in a row's error field; :class:`Tally` counts them as rows finish;
the runner renders them to the error column as ``"kind: detail"`` in one place (:func:`render`). Nothing reads
the column's text back to count it.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Literal

__all__ = ["RowError", "Tally", "render", "DROP_REASON", "dropped"]

Kind = Literal[
    "skipped", "dropped", "request", "parse", "invalid", "truncated", "incomplete", "wrong", "short", "context"
]
#: The column where a quality filter writes why a row goes (see :mod:`rare_hf.steps.drops`).
DROP_REASON = "drop_reason"


@dataclasses.dataclass(frozen=True)
class RowError:
    """A row's failure.

    Attributes:
        kind: ``skipped`` (not attempted: bad input, or an earlier step failed), ``dropped`` (not attempted: a
            quality filter took the row out), ``request`` (the teacher never
            answered usably), ``parse`` / ``invalid`` (the reply had no usable result), ``truncated``,
            ``incomplete``, ``wrong`` (answers that never matched the gold one), ``short`` (too few negatives),
            ``context`` (the prompt cannot fit the teacher's context window; nothing was sent).
        detail: One line saying what happened and, where it helps, what to change.
    """

    kind: Kind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"

    @property
    def skipped(self) -> bool:
        return self.kind in ("skipped", "dropped")


def dropped(row: dict[str, Any]) -> RowError | None:
    """The error of a row a quality filter took out (``None`` when it is kept): steps skip it."""
    reason = row.get(DROP_REASON)
    return None if reason is None else RowError("dropped", reason)


def render(value: Any) -> Any:
    """A field as the error column stores it: a :class:`RowError` as ``"kind: detail"``, anything else as is."""
    return str(value) if isinstance(value, RowError) else value


@dataclasses.dataclass
class Tally:
    """Rows counted as a step finishes them: ok, failed, skipped, and failures per kind."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def add(self, error: RowError | None) -> None:
        if error is None:
            self.ok += 1
            return
        if error.skipped:
            self.skipped += 1
        else:
            self.failed += 1
        self.reasons[error.kind] += 1

    @property
    def rows(self) -> int:
        return self.ok + self.failed + self.skipped
