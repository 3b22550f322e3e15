"""The whole RARE recipe in one call: questions, hard negatives, reasoning, and a run summary."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import datasets

from . import _plumbing
from ..teacher.client import LLM
from .negatives import add_hard_negatives, negative_columns
from .questions import QuestionStep, add_questions
from .reasoning import ReasoningStep, add_reasoning
from .verify import VerifyStep, verify_negatives
from .written import WrittenNegativesStep, add_written_negatives
from .summary import StepSummary
from ..utils.datasets import quiet_datasets_progress

__all__ = ["build_rare_dataset", "RunSummary", "STEPS", "plan_steps", "check_inputs"]

logger = logging.getLogger(__name__)

STEPS = ("questions", "hard_negatives", "reasoning")  # the default run
# Every step, in run order; verify_negatives and written_negatives are opt-in.
ALL_STEPS = ("questions", "hard_negatives", "verify_negatives", "written_negatives", "reasoning")
# Steps whose failed rows are dropped: a row whose negatives could not be verified keeps the mined ones, and
# written negatives are extra data, so their failures are counted but cost no row.
_DROPS_FAILED = ("questions", "hard_negatives", "reasoning")


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
            f"{'step':<16}{'rows':>8}{'ok':>8}{'failed':>8}{'skipped':>9}{'short':>7}{'requests':>10}{'cached':>8}"
            f"{'tokens paid':>13}{'data tokens':>13}{'seconds':>9}"
        ]
        if self.price is not None:
            lines[0] += f"{'USD paid':>10}{'data USD':>10}"
        for s in self.steps:
            u = s.usage
            lines.append(
                f"{s.step:<16}{s.rows_out:>8}{s.ok:>8}{s.failed:>8}{s.skipped:>9}{s.stats.get('short', ''):>7}"
                f"{u.get('requests', 0):>10}"
                f"{u.get('cached', 0):>8}{u.get('total_tokens', 0):>13,}{u.get('data_tokens', 0):>13,}"
                f"{s.seconds:>9.1f}"
                + (f"{u.get('usd', 0):>10.4f}{u.get('data_usd', 0):>10.4f}" if self.price is not None else "")
            )
        lines.append("tokens paid: sent by this run; data tokens: what the data cost, cached replies included")
        if self.price is not None:
            lines.append(f"prices: {describe_price(self.price)}")
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
    verify_kwargs: dict[str, Any] | None = None,
    written_kwargs: dict[str, Any] | None = None,
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
        steps: Which steps to run (a subset of ``"questions"``, ``"hard_negatives"``, ``"reasoning"``, and the
            opt-in ``"verify_negatives"`` (then twice ``num_neg`` are mined and ``num_neg`` kept) and
            ``"written_negatives"``); they run in that order, the opt-in ones before the reasoning.
        keep_failed: Keep rows where a step failed (with their error columns) instead of dropping them.
        question_kwargs / negatives_kwargs / reasoning_kwargs / verify_kwargs / written_kwargs: Extra arguments
            for each step function.
        show_progress: Show progress bars.
        return_summary: Also return the :class:`RunSummary`.

    Returns:
        The enriched dataset (and the :class:`RunSummary` when ``return_summary``).

    Example:
        >>> ds, summary = rare_hf.build_rare_dataset(docs, rare_hf.LLM("gpt-4o-mini"), return_summary=True)
        >>> print(summary.table())
    """
    plan = plan_steps(
        steps,
        text_key=text_key,
        num_neg=num_neg,
        num_questions=num_questions,
        answer_key=answer_key,
        seed=seed,
        question_kwargs=question_kwargs,
        negatives_kwargs=negatives_kwargs,
        reasoning_kwargs=reasoning_kwargs,
        verify_kwargs=verify_kwargs,
        written_kwargs=written_kwargs,
    )
    for split in _plumbing.splits_of(ds):
        check_inputs(split, plan)
    needs_llm = any(s != "hard_negatives" for s in plan)
    llm = llm or (LLM() if needs_llm else None)
    started = time.monotonic()
    rows_in = _num_rows(ds)
    summaries: list[StepSummary] = []
    common = {"show_progress": show_progress, "return_summary": True}
    for name, kwargs in plan.items():
        if name == "hard_negatives":
            ds, summary = add_hard_negatives(ds, **kwargs, **common)
        else:
            ds, summary = _STEP_FUNCTIONS[name](ds, llm, **kwargs, **common)
        summaries.append(summary)
    before = _num_rows(ds)
    if not keep_failed:
        ds = _drop_failed(ds, [_error_column(n, kwargs) for n, kwargs in plan.items() if n in _DROPS_FAILED])
    run = run_summary(
        summaries,
        rows_in=rows_in,
        rows_before_drop=before,
        rows_out=_num_rows(ds),
        llm=llm,
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
            "verify_kwargs": verify_kwargs or {},
            "written_kwargs": written_kwargs or {},
        },
        seconds=time.monotonic() - started,
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
) -> RunSummary:
    """The :class:`RunSummary` of a finished run (shared by the single-machine and the Ray paths)."""
    return RunSummary(
        rows_in=rows_in,
        rows_out=rows_out,
        dropped_failed=rows_before_drop - rows_out,
        steps=steps,
        model=llm.model if llm else None,
        base_url=llm.display_url if llm else None,
        prompt_versions={s.step: s.prompt_version for s in steps if s.prompt_version},
        params=params,
        seconds=seconds,
        rare_hf_version=_version(),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        price=dataclasses.asdict(llm.price) if llm is not None and llm.price is not None else None,
    )


def describe_price(price: dict[str, Any]) -> str:
    """``$0.15 / $0.60 per million input / output tokens, batch discount x0.5`` (the summary's and card's)."""
    text = f"${price['input_usd']:g} / ${price['output_usd']:g} per million input / output tokens"
    return text + (f", batch discount x{price['discount']:g}" if price.get("discount", 1.0) != 1.0 else "")


_STEP_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "questions": add_questions,
    "hard_negatives": add_hard_negatives,
    "verify_negatives": verify_negatives,
    "written_negatives": add_written_negatives,
    "reasoning": add_reasoning,
}
_KWARGS_NAMES = {
    "questions": "question_kwargs",
    "hard_negatives": "negatives_kwargs",
    "verify_negatives": "verify_kwargs",
    "written_negatives": "written_kwargs",
    "reasoning": "reasoning_kwargs",
}
# Set by the pipeline for every step; not accepted in the *_kwargs.
_RESERVED = ("ds", "llm", "show_progress", "return_summary")


def plan_steps(
    steps: Sequence[str],
    *,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    answer_key: str | None = None,
    seed: int = 0,
    question_kwargs: dict[str, Any] | None = None,
    negatives_kwargs: dict[str, Any] | None = None,
    reasoning_kwargs: dict[str, Any] | None = None,
    verify_kwargs: dict[str, Any] | None = None,
    written_kwargs: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The keyword arguments of every chosen step, in order, each step reading the columns the one before
    it writes (a custom ``output_question_key`` is the next steps' ``input_question_key``). The ``*_kwargs``
    override the pipeline's own values. Raises ``ValueError`` for an unknown step or argument."""
    unknown = [s for s in steps if s not in ALL_STEPS]
    if unknown or not steps:
        raise ValueError(f"Unknown step(s) {unknown}; choose from {list(ALL_STEPS)}.")
    questions = {"input_key": text_key, "num_questions": num_questions, **(question_kwargs or {})}
    question_key = questions.get("output_question_key", "question")
    scenario_key = questions.get("output_scenario_key", "scenario")
    negatives = {
        "input_question_key": question_key,
        "input_text_key": text_key,
        "num_neg": 2 * num_neg if "verify_negatives" in steps else num_neg,  # replacements for dropped ones
        **(negatives_kwargs or {}),
    }
    hardneg_key = negatives.get("output_negatives_key", "hard_negatives")
    verify = {"input_question_key": question_key, "input_hardneg_key": hardneg_key, "num_neg": num_neg}
    verify |= verify_kwargs or {}
    written = {"input_text_key": text_key, "input_question_key": question_key, "input_scenario_key": scenario_key}
    written |= {"answer_key": answer_key, **(written_kwargs or {})}
    reasoning = {
        "input_text_key": text_key,
        "input_question_key": question_key,
        "input_scenario_key": scenario_key,
        "input_hardneg_key": hardneg_key,
        "answer_key": answer_key,
        "seed": seed,
        **(reasoning_kwargs or {}),
    }
    everything = {
        "questions": questions,
        "hard_negatives": negatives,
        "verify_negatives": verify,
        "written_negatives": written,
        "reasoning": reasoning,
    }
    plan = {name: everything[name] for name in ALL_STEPS if name in steps}
    for name, argument in (
        ("questions", question_kwargs),
        ("hard_negatives", negatives_kwargs),
        ("verify_negatives", verify_kwargs),
        ("written_negatives", written_kwargs),
        ("reasoning", reasoning_kwargs),
    ):
        _check_kwargs(name, argument or {})
    return plan


def _check_kwargs(step: str, kwargs: dict[str, Any]) -> None:
    function = _STEP_FUNCTIONS[step]
    accepted = [p for p in inspect.signature(function).parameters if p not in _RESERVED]
    wrong = [k for k in kwargs if k not in accepted]
    if wrong:
        argument = _KWARGS_NAMES[step]
        raise ValueError(f"{argument}: {function.__name__} takes no argument {wrong}; it takes {accepted}.")


_PIPELINE_NAMES = {
    "input_key": "text_key",
    "input_text_key": "text_key",
    "input_question_key": "a question column (no questions step)",
    "input_scenario_key": "a scenario column (no questions step)",
    "input_hardneg_key": "a hard negatives column (no hard_negatives step)",
}


def check_inputs(ds: datasets.Dataset, plan: dict[str, dict[str, Any]], names: dict[str, str] | None = None) -> None:
    """Every column a step reads must exist, with the right type, before the first step spends anything:
    either in the input or written by an earlier step. ``names`` says how to call an argument in messages
    (the CLI names its flags)."""
    names = {**_PIPELINE_NAMES, **(names or {})}
    written: set[str] = set()
    for step, kwargs in plan.items():
        for argument, column, kind in _reads(step, kwargs):
            if column in written:
                continue
            label = names.get(argument, argument)
            if kind == "list":
                _plumbing.require_string_list_column(ds, label, column)
            elif kind == "string":
                _plumbing.require_string_column(ds, label, column)
            else:
                _plumbing.require_columns(ds, **{label: column})
        written |= set(_writes(step, kwargs))


def _reads(step: str, kwargs: dict[str, Any]) -> list[tuple[str, str, str]]:
    if step == "questions":
        return [("input_key", kwargs["input_key"], "string")]
    if step == "hard_negatives":
        return [
            ("input_question_key", kwargs["input_question_key"], "string"),
            ("input_text_key", kwargs["input_text_key"], "string"),
        ]
    if step == "verify_negatives":
        return [
            ("input_question_key", kwargs["input_question_key"], "string"),
            ("input_hardneg_key", kwargs["input_hardneg_key"], "list"),
        ]
    if step == "written_negatives":
        reads = [
            ("input_text_key", kwargs["input_text_key"], "string"),
            ("input_question_key", kwargs["input_question_key"], "string"),
        ]
        return reads + ([("answer_key", kwargs["answer_key"], "any")] if kwargs.get("answer_key") else [])
    reads = [
        ("input_text_key", kwargs["input_text_key"], "string"),
        ("input_question_key", kwargs["input_question_key"], "string"),
        ("input_scenario_key", kwargs["input_scenario_key"], "string"),
        ("input_hardneg_key", kwargs["input_hardneg_key"], "list"),
    ]
    if kwargs.get("answer_key") is not None:
        reads.append(("answer_key", kwargs["answer_key"], "any"))
    return reads


def _writes(step: str, kwargs: dict[str, Any]) -> list[str]:
    if step == "questions":
        columns = QuestionStep.columns_for(
            kwargs.get("output_question_key", "question"), kwargs.get("output_scenario_key", "scenario")
        )
    elif step == "hard_negatives":
        columns = negative_columns(kwargs.get("output_negatives_key", "hard_negatives"))
    elif step == "verify_negatives":
        columns = VerifyStep.columns_for(kwargs["input_hardneg_key"])
    elif step == "written_negatives":
        columns = WrittenNegativesStep.columns_for(kwargs.get("output_key", "written_negatives"))
    else:
        columns = ReasoningStep.columns_for(
            kwargs.get("output_key", "reasoning"), kwargs.get("output_answer_key", "answer")
        )
    return [c.name for c in columns]


def _error_column(step: str, kwargs: dict[str, Any]) -> str:
    return next(name for name in _writes(step, kwargs) if name.endswith("_error"))


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
