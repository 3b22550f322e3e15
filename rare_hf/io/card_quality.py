"""The dataset card's "Quality" section: what each quality filter found and removed, with its thresholds, and
the easiness signals' distributions (as tables; the ``plot`` extra adds figures)."""

from __future__ import annotations

from typing import Any

from ..steps.pipeline import RunSummary
from ..steps.summary import StepSummary

__all__ = ["quality"]

_FILTERS = ("dedup", "decontaminate", "dedup_questions", "easiness", "judge")


def quality(summary: RunSummary | None) -> str | None:
    """The section's text, or ``None`` when the run used no quality filter."""
    steps = [s for s in (summary.step(name) for name in _FILTERS) if s is not None] if summary else []
    if summary is None or not steps:
        return None
    removed = ", ".join(f"{reason} {n:,}" for reason, n in summary.filtered.items()) or "none"
    lines = [f"- Rows the quality filters removed: {removed} (of {summary.rows_in:,} input rows)"]
    lines += [_line(step) for step in steps]
    judged = summary.step("judge")
    if judged is not None and judged.stats.get("score_histogram"):
        lines += ["", _histogram(judged.stats["score_histogram"])]
    easiness = summary.step("easiness")
    if easiness is not None and easiness.stats.get("lexical_overlap_deciles"):
        lines += ["", _deciles(easiness.stats)]
    return "\n".join(lines)


def _line(step: StepSummary) -> str:
    p, s = step.params, step.stats
    if step.step == "dedup":
        return (
            f"- Near-duplicate documents (MinHash over {p['shingle_words']}-word shingles, exact Jaccard >= "
            f"{p['threshold']}): {s['duplicates']:,} in {s['clusters']:,} clusters; no question was asked about them "
            "and none was served as a negative of its cluster"
        )
    if step.step == "dedup_questions":
        return (
            f"- Near-duplicate questions ({p['shingle_words']}-word shingles, Jaccard >= {p['threshold']}): "
            f"{s['duplicates']:,} dropped"
        )
    if step.step == "decontaminate":
        verb = "dropped" if p["action"] == "drop" else "flagged (column `contaminated`)"
        share = "any" if not p["max_share"] else f"more than {p['max_share']:.0%} of the"
        return (
            f"- Contamination: {s['contaminated']:,} rows share {share} {p['n']}-word runs of "
            f"{', '.join(p['input_keys'])} with the {p['reference_texts']:,} texts of the evaluation set; {verb}"
        )
    if step.step == "judge":
        verb = "dropped" if p["action"] == "drop" else "flagged (column `judge_passed`)"
        return (
            f"- LLM judge (`{p.get('model', 'the teacher')}`, prompt {step.prompt_version}): {s['judged']:,} rows "
            f"judged, {s['below_min_score']:,} scored below {p['min_score']} on a criterion and were {verb}; "
            f"{step.failed:,} could not be judged and were kept"
        )
    verb = "dropped" if step.params.get("drop_easy") else "flagged (column `*_easy`)"
    return (
        f"- Easy rows (positive ranked first, score margin >= {p['min_margin']}, >= {p['min_lexical_overlap']:.0%} of "
        f"the question's content words in it): {s['easy']:,} {verb}; positive ranked first for "
        f"{s['positive_ranked_first']:,} rows"
    )


def _deciles(stats: dict[str, Any]) -> str:
    rows = ["| signal | min | 10 % | 25 % | 50 % | 75 % | 90 % | max |", "|---|---|---|---|---|---|---|---|"]
    for name, key in (("score margin", "score_margin_deciles"), ("lexical overlap", "lexical_overlap_deciles")):
        d = stats.get(key) or []
        if len(d) == 11:
            cells = [d[0], d[1], (d[2] + d[3]) / 2, d[5], (d[7] + d[8]) / 2, d[9], d[10]]
            rows.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(rows)


def _histogram(histogram: dict[str, dict[str, int]]) -> str:
    rows = ["| criterion | 1 | 2 | 3 | 4 | 5 |", "|---|---|---|---|---|---|"]
    for criterion, counts in histogram.items():
        if any(counts.values()):
            rows.append(f"| {criterion} | " + " | ".join(f"{counts.get(str(k), 0):,}" for k in range(1, 6)) + " |")
    return "\n".join(rows)
