"""The whole RARE recipe in one call: questions, hard negatives, reasoning, and a run summary."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import datasets

from . import _steps
from .llm import LLM
from .negatives import add_hard_negatives
from .prompts import PROMPTS
from .questions import add_questions
from .reasoning import add_reasoning
from .summary import StepSummary

__all__ = ["build_rare_dataset", "RunSummary", "STEPS"]

logger = logging.getLogger(__name__)

STEPS = ("questions", "hard_negatives", "reasoning")


@dataclasses.dataclass
class RunSummary:
    """What a :func:`build_rare_dataset` run did; the CLI prints it and the dataset card is built from it."""

    rows_in: int
    rows_out: int
    dropped_failed: int
    steps: list[StepSummary]
    model: str | None
    base_url: str | None
    prompt_versions: dict[str, str]
    params: dict[str, Any]
    seconds: float
    rare_hf_version: str
    finished_at: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(**{**data, "steps": [StepSummary(**s) for s in data["steps"]]})

    def step(self, name: str) -> StepSummary | None:
        return next((s for s in self.steps if s.step == name), None)

    def table(self) -> str:
        """A plain-text table of the per-step counts."""
        lines = [
            f"{'step':<16}{'rows':>8}{'ok':>8}{'failed':>8}{'skipped':>9}{'requests':>10}{'cached':>8}"
            f"{'tokens paid':>13}{'data tokens':>13}{'seconds':>9}"
        ]
        for s in self.steps:
            u = s.usage
            lines.append(
                f"{s.step:<16}{s.rows_out:>8}{s.ok:>8}{s.failed:>8}{s.skipped:>9}{u.get('requests', 0):>10}"
                f"{u.get('cached', 0):>8}{u.get('total_tokens', 0):>13,}{u.get('data_tokens', 0):>13,}"
                f"{s.seconds:>9.1f}"
            )
        lines.append("tokens paid: sent by this run; data tokens: what the data cost, cached replies included")
        lines.append(f"rows in: {self.rows_in}, rows out: {self.rows_out}, failed rows dropped: {self.dropped_failed}")
        return "\n".join(lines)


def build_rare_dataset(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    answer_key: str | None = None,
    seed: int = 0,
    steps: Sequence[str] = STEPS,
    keep_failed: bool = False,
    question_kwargs: dict[str, Any] | None = None,
    negatives_kwargs: dict[str, Any] | None = None,
    reasoning_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Run the RARE steps on a column of documents: questions, BM25 hard negatives, distilled reasoning.

    Args:
        ds: Documents in ``text_key`` (a ``Dataset`` or ``DatasetDict``).
        llm: The teacher; ``None`` builds ``LLM()`` from the environment (needed only for the LLM steps).
        text_key: Column of the documents.
        num_neg: Hard negatives per question.
        num_questions: Questions per document.
        answer_key: Column of gold answers, to verify and resample the teacher's answers.
        seed: Seed of the per-row document shuffles.
        steps: Which steps to run, in order (a subset of ``"questions"``, ``"hard_negatives"``, ``"reasoning"``).
        keep_failed: Keep rows where a step failed (with their error columns) instead of dropping them.
        question_kwargs / negatives_kwargs / reasoning_kwargs: Extra arguments for each step function.
        show_progress: Show progress bars.
        return_summary: Also return the :class:`RunSummary`.

    Returns:
        The enriched dataset (and the :class:`RunSummary` when ``return_summary``).

    Example:
        >>> ds, summary = rare_hf.build_rare_dataset(docs, rare_hf.LLM("gpt-4o-mini"), return_summary=True)
        >>> print(summary.table())
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"Unknown step(s) {unknown}; choose from {list(STEPS)}.")
    for split in ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]:
        _check_inputs(split, steps, text_key, answer_key, question_kwargs or {}, negatives_kwargs or {})
    needs_llm = any(s in steps for s in ("questions", "reasoning"))
    llm = llm or (LLM() if needs_llm else None)
    started = time.monotonic()
    rows_in = _num_rows(ds)
    summaries: list[StepSummary] = []
    common = {"show_progress": show_progress, "return_summary": True}
    if "questions" in steps:
        ds, summary = add_questions(
            ds, llm, input_key=text_key, num_questions=num_questions, **common, **(question_kwargs or {})
        )
        summaries.append(summary)
    if "hard_negatives" in steps:
        ds, summary = add_hard_negatives(
            ds, input_text_key=text_key, num_neg=num_neg, **common, **(negatives_kwargs or {})
        )
        summaries.append(summary)
    if "reasoning" in steps:
        ds, summary = add_reasoning(
            ds, llm, input_text_key=text_key, answer_key=answer_key, seed=seed, **common, **(reasoning_kwargs or {})
        )
        summaries.append(summary)
    before = _num_rows(ds)
    if not keep_failed:
        outputs = [
            (question_kwargs or {}).get("output_question_key", "question"),
            (negatives_kwargs or {}).get("output_negatives_key", "hard_negatives"),
            (reasoning_kwargs or {}).get("output_key", "reasoning"),
        ]
        ds = _drop_failed(ds, [f"{key}_error" for key in outputs])
    run = RunSummary(
        rows_in=rows_in,
        rows_out=_num_rows(ds),
        dropped_failed=before - _num_rows(ds),
        steps=summaries,
        model=llm.model if llm else None,
        base_url=llm.display_url if llm else None,
        prompt_versions={name: p.version for name, p in PROMPTS.items()},
        params={
            "text_key": text_key,
            "num_neg": num_neg,
            "num_questions": num_questions,
            "answer_key": answer_key,
            "seed": seed,
            "steps": list(steps),
            "keep_failed": keep_failed,
            "question_kwargs": question_kwargs or {},
            "negatives_kwargs": negatives_kwargs or {},
            "reasoning_kwargs": reasoning_kwargs or {},
        },
        seconds=time.monotonic() - started,
        rare_hf_version=_version(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    logger.info("build_rare_dataset finished:\n%s", run.table())
    return (ds, run) if return_summary else ds


def _check_inputs(
    ds: datasets.Dataset,
    steps: Sequence[str],
    text_key: str,
    answer_key: str | None,
    question_kwargs: dict[str, Any],
    negatives_kwargs: dict[str, Any],
) -> None:
    """Every column a later step reads must exist before the first step spends anything."""
    _steps.require_string_column(ds, "text_key", text_key)
    if answer_key is not None:
        _steps.require_columns(ds, answer_key=answer_key)
    if "questions" not in steps and ("hard_negatives" in steps or "reasoning" in steps):
        _steps.require_string_column(
            ds, "a question column (no questions step)", question_kwargs.get("output_question_key", "question")
        )
    if "reasoning" in steps and "questions" not in steps:
        _steps.require_string_column(
            ds, "a scenario column (no questions step)", question_kwargs.get("output_scenario_key", "scenario")
        )
    if "reasoning" in steps and "hard_negatives" not in steps:
        _steps.require_string_list_column(
            ds,
            "a hard negatives column (no hard_negatives step)",
            negatives_kwargs.get("output_negatives_key", "hard_negatives"),
        )


def _drop_failed(ds: datasets.Dataset | datasets.DatasetDict, error_columns: list[str]) -> Any:
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({name: _drop_failed(split, error_columns) for name, split in ds.items()})
    error_columns = [c for c in error_columns if c in ds.column_names]
    if not error_columns:
        return ds
    with _steps.quiet_datasets_progress():
        return ds.filter(lambda *errors: all(e is None for e in errors), input_columns=error_columns)


def _num_rows(ds: datasets.Dataset | datasets.DatasetDict) -> int:
    return sum(len(s) for s in ds.values()) if isinstance(ds, datasets.DatasetDict) else len(ds)


def _version() -> str:
    from . import __version__

    return __version__
