"""What a step did: counts of rows ok / failed / skipped, failure reasons, tokens, time and parameters."""

from __future__ import annotations

import dataclasses
from typing import Any
from ..teacher.usage import add_usage

__all__ = ["StepSummary"]


@dataclasses.dataclass
class StepSummary:
    """The report of one step over one dataset (all splits summed).

    Attributes:
        step: ``"questions"``, ``"hard_negatives"`` or ``"reasoning"``.
        rows_in / rows_out: Row counts before and after (they differ when one document yields several
            questions).
        ok / failed / skipped: Output rows with a result, rows that failed after every attempt, rows that
            were not attempted (bad input or failed upstream). ``ok + failed + skipped == rows_out``.
        failure_reasons: How many rows failed or were skipped for each reason.
        usage: Requests sent, cache hits, retries and tokens (LLM steps).
        seconds: Wall time.
        params: The parameters that determine the output (to rebuild it).
        prompt_version: Version of the prompt used (LLM steps).
        stats: Step-specific figures (e.g. negatives per row, first-try accuracy).
        columns: The columns the step wrote, with the one-line docs the dataset card shows.
    """

    step: str
    rows_in: int = 0
    rows_out: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failure_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    prompt_version: str | None = None
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    columns: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def merge(self, other: StepSummary) -> StepSummary:
        """Sum two summaries of the same step (e.g. two splits)."""
        reasons = _merge_stat(self.failure_reasons, other.failure_reasons, self.rows_out, other.rows_out)
        usage = add_usage(self.usage, other.usage)
        stats = {
            k: _merge_stat(self.stats.get(k), other.stats.get(k), self.rows_out, other.rows_out)
            for k in {**self.stats, **other.stats}
        }
        return dataclasses.replace(
            self,
            rows_in=self.rows_in + other.rows_in,
            rows_out=self.rows_out + other.rows_out,
            ok=self.ok + other.ok,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
            failure_reasons=dict(reasons),
            usage=dict(usage),
            seconds=self.seconds + other.seconds,
            stats=stats,
            columns={**self.columns, **other.columns},
        )

    def __str__(self) -> str:
        tokens = self.usage.get("total_tokens", 0)
        return (
            f"{self.step}: {self.rows_out} rows, {self.ok} ok, {self.failed} failed, {self.skipped} skipped"
            f"{f', {tokens:,} tokens' if self.usage else ''}, {self.seconds:.1f}s"
        )


def _merge_stat(a: Any, b: Any, rows_a: int, rows_b: int) -> Any:
    """Counts add up, histograms add up per key, averages are weighted by rows; a setting or a description
    (a string, a flag) is kept when both agree and listed once each when they do not."""
    if a is None or b is None:
        return a if b is None else b
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge_stat(a.get(k), b.get(k), rows_a, rows_b) for k in {**a, **b}}
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return a if a == b else "; ".join(dict.fromkeys(str(v) for v in (a, b)))
    if isinstance(a, float) or isinstance(b, float):
        return round((a * rows_a + b * rows_b) / max(1, rows_a + rows_b), 3)
    return a + b
