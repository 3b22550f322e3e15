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

from ..teacher.client import LLM
from ..teacher.usage import add_usage
from ..utils.datasets import quiet_datasets_progress
from ._plumbing import splits_of
from .plan import check_inputs, plan_steps
from .drops import DROP_REASON, drop_counts
from .registry import BUILT_IN, DEFAULT_STEPS, StepSpec
from .summary import StepSummary

__all__ = ["build_rare_dataset", "RunSummary", "STEPS", "ALL_STEPS", "plan_steps", "check_inputs"]

logger = logging.getLogger(__name__)

STEPS = DEFAULT_STEPS  # the default run
ALL_STEPS = tuple(spec.name for spec in BUILT_IN)  # every built-in step, in run order


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
    price: dict[str, Any] | None = None  # the teacher's price per million tokens and discount, when given
    roles: dict[str, str] = dataclasses.field(default_factory=dict)  # which column holds the questions, ...
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)  # rows quality filters removed, by reason

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{**{k: v for k, v in data.items() if k in known}, "steps": [StepSummary(**s) for s in data["steps"]]}
        )

    def usage(self) -> dict[str, Any]:
        """The run's usage over every step: requests, cache hits, tokens and (with a price) dollars."""
        return add_usage(*(s.usage for s in self.steps))

    def step(self, name: str) -> StepSummary | None:
        return next((s for s in self.steps if s.step == name), None)

    def table(self) -> str:
        """A plain-text table of the per-step counts."""
        lines = [
            f"{'step':<16}{'rows':>8}{'ok':>8}{'failed':>8}{'skipped':>9}{'short':>7}{'requests':>10}{'cached':>8}"
            f"{'tokens paid':>13}{'data tokens':>13}{'seconds':>9}"
        ]
        if self.price is not None:
            lines[0] += f"{'USD paid':>10}{'data USD':>10}"
        priced = self.price is not None
        for s in self.steps:
            counts = f"{s.rows_out:>8}{s.ok:>8}{s.failed:>8}{s.skipped:>9}{s.stats.get('short', ''):>7}"
            lines.append(f"{s.step:<16}{counts}{_usage_cells(s.usage, s.seconds, priced)}")
        if len(self.steps) > 1:
            lines.append(f"{'total':<16}{'':>40}{_usage_cells(self.usage(), self.seconds, priced)}")
        lines.append("tokens paid: sent by this run; data tokens: what the data cost, cached replies included")
        if self.price is not None:
            lines.append(f"prices: {describe_price(self.price)}")
        lines.append(f"rows in: {self.rows_in}, rows out: {self.rows_out}, failed rows dropped: {self.dropped_failed}")
        if self.filtered:
            lines.append("filtered out: " + ", ".join(f"{n} {reason}" for reason, n in self.filtered.items()))
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
    steps: Sequence[str | StepSpec | Any] = DEFAULT_STEPS,
    keep_failed: bool = False,
    overwrite: bool = False,
    question_kwargs: dict[str, Any] | None = None,
    negatives_kwargs: dict[str, Any] | None = None,
    reasoning_kwargs: dict[str, Any] | None = None,
    verify_kwargs: dict[str, Any] | None = None,
    written_kwargs: dict[str, Any] | None = None,
    dedup_kwargs: dict[str, Any] | None = None,
    dedup_questions_kwargs: dict[str, Any] | None = None,
    easiness_kwargs: dict[str, Any] | None = None,
    decontaminate_kwargs: dict[str, Any] | None = None,
    judge_kwargs: dict[str, Any] | None = None,
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
        steps: Which steps to run: names (``"questions"``, ``"hard_negatives"``, ``"reasoning"``, and the opt-in
            ``"dedup"`` (near-duplicate documents, before any request), ``"decontaminate"``,
            ``"dedup_questions"``, ``"easiness"``, ``"judge"`` (after the reasoning),
            ``"verify_negatives"`` (then twice ``num_neg`` are mined and ``num_neg`` kept) and
            ``"written_negatives"``), which run in that order whatever order they are given in, and your own
            :class:`rare_hf.PromptStep` objects, each run right after the step given before it.
        keep_failed: Keep rows where a step failed (with their error columns) or that a quality filter dropped
            (with their ``drop_reason``) instead of removing them.
        overwrite: Recompute columns the input already has (a step run again over its own output); without it,
            such a column is an error before any request.
        question_kwargs / negatives_kwargs / reasoning_kwargs / verify_kwargs / written_kwargs / dedup_kwargs /
            dedup_questions_kwargs / easiness_kwargs / decontaminate_kwargs / judge_kwargs: Extra arguments for
            each step function.
        show_progress: Show progress bars.
        return_summary: Also return the :class:`RunSummary`.

    Returns:
        The enriched dataset (and the :class:`RunSummary` when ``return_summary``).

    Example:
        >>> ds, summary = rare_hf.build_rare_dataset(docs, rare_hf.LLM("gpt-4o-mini"), return_summary=True)
        >>> print(summary.table())
    """
    step_kwargs = {
        "question_kwargs": question_kwargs,
        "negatives_kwargs": negatives_kwargs,
        "reasoning_kwargs": reasoning_kwargs,
        "verify_kwargs": verify_kwargs,
        "written_kwargs": written_kwargs,
        "dedup_kwargs": dedup_kwargs,
        "dedup_questions_kwargs": dedup_questions_kwargs,
        "easiness_kwargs": easiness_kwargs,
        "decontaminate_kwargs": decontaminate_kwargs,
        "judge_kwargs": judge_kwargs,
    }
    options = {"text_key": text_key, "num_neg": num_neg, "num_questions": num_questions}
    options |= {"answer_key": answer_key, "seed": seed}
    plan = plan_steps(steps, **options, **step_kwargs)
    for split in splits_of(ds):
        check_inputs(split, plan, overwrite=overwrite)
    llm = llm or (LLM() if plan.uses_llm else None)
    started = time.monotonic()
    rows_in = _num_rows(ds)
    summaries: list[StepSummary] = []
    for planned in plan.steps:
        ds, summary = planned.run(ds, llm, show_progress=show_progress, overwrite=overwrite)
        summaries.append(summary)
    before, filtered = _num_rows(ds), drop_counts(ds)
    if not keep_failed:
        ds = _drop_failed(ds, list(dict.fromkeys([*plan.error_columns(), DROP_REASON])))
    params = {**options, "steps": plan.names, "keep_failed": keep_failed}
    params |= {name: {k: _recordable(v) for k, v in (given or {}).items()} for name, given in step_kwargs.items()}
    run = run_summary(
        summaries,
        rows_in=rows_in,
        rows_before_drop=before,
        rows_out=_num_rows(ds),
        llm=llm,
        params=params,
        seconds=time.monotonic() - started,
        roles=plan.context.roles,
        filtered=filtered if not keep_failed else {},
    )
    logger.info("build_rare_dataset finished:\n%s", run.table())
    return (ds, run) if return_summary else ds


def run_summary(
    steps: list[StepSummary],
    *,
    rows_in: int,
    rows_before_drop: int,
    rows_out: int,
    llm: LLM | None,
    params: dict[str, Any],
    seconds: float,
    roles: dict[str, str | None] | None = None,
    filtered: dict[str, int] | None = None,
) -> RunSummary:
    """The :class:`RunSummary` of a finished run (shared by the single-machine and the Ray paths)."""
    return RunSummary(
        rows_in=rows_in,
        rows_out=rows_out,
        dropped_failed=rows_before_drop - rows_out - sum((filtered or {}).values()),
        filtered=dict(filtered or {}),
        steps=steps,
        model=llm.model if llm else None,
        base_url=llm.display_url if llm else None,
        prompt_versions={s.step: s.prompt_version for s in steps if s.prompt_version},
        params=params,
        seconds=seconds,
        rare_hf_version=_version(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        price=dataclasses.asdict(llm.price) if llm is not None and llm.price is not None else None,
        roles={role: column for role, column in (roles or {}).items() if column},
    )


def _usage_cells(usage: dict[str, Any], seconds: float, priced: bool) -> str:
    u = usage
    cells = f"{u.get('requests', 0):>10}{u.get('cached', 0):>8}{u.get('total_tokens', 0):>13,}"
    cells += f"{u.get('data_tokens', 0):>13,}{seconds:>9.1f}"
    return cells + (f"{u.get('usd', 0):>10.4f}{u.get('data_usd', 0):>10.4f}" if priced else "")


def describe_price(price: dict[str, Any]) -> str:
    """``$0.15 / $0.60 per million input / output tokens, batch discount x0.5`` (the summary's and card's)."""
    text = f"${price['input_usd']:g} / ${price['output_usd']:g} per million input / output tokens"
    return text + (f", batch discount x{price['discount']:g}" if price.get("discount", 1.0) != 1.0 else "")


def _drop_failed(ds: datasets.Dataset | datasets.DatasetDict, error_columns: list[str]) -> Any:
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({name: _drop_failed(split, error_columns) for name, split in ds.items()})
    error_columns = [c for c in error_columns if c in ds.column_names]
    if not error_columns:
        return ds
    with quiet_datasets_progress():
        return ds.filter(lambda *errors: all(e is None for e in errors), input_columns=error_columns)


def _num_rows(ds: datasets.Dataset | datasets.DatasetDict) -> int:
    return sum(len(s) for s in ds.values()) if isinstance(ds, datasets.DatasetDict) else len(ds)


def _version() -> str:
    from .. import __version__

    return __version__


def _recordable(value: Any) -> Any:
    """A step argument as the summary and the card record it: JSON values as they are, a set of ids by its
    size, an object (an :class:`rare_hf.Embedder`) by its ``repr``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_recordable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _recordable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return f"{len(value)} values"
    return repr(value)
