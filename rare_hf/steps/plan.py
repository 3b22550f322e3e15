"""A run's plan: its steps in order, each with the arguments the pipeline passes it, wired so that every step
reads the columns the steps before it write (a custom ``output_question_key`` is the next steps' question
column). Built from the registry alone; the pipeline, the CLI, the dry run and Ray all run from a plan."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import datasets

from ..teacher.client import LLM
from ..utils.datasets import DOC_ID
from . import _plumbing
from .registry import BUILT_IN, DEFAULT_STEPS, PlanContext, StepDefinition, StepSpec, resolve_steps
from .row_error import DROP_REASON
from .summary import StepSummary

__all__ = ["Plan", "PlannedStep", "plan_steps", "check_inputs"]

# Set by the pipeline for every step; not accepted in the *_kwargs.
_RESERVED = ("ds", "llm", "show_progress", "return_summary", "overwrite")


@dataclasses.dataclass
class PlannedStep:
    """One step of a plan: its registry entry, its definition and the keyword arguments it runs with."""

    spec: StepSpec
    definition: StepDefinition
    kwargs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, ds: Any, llm: LLM | None, *, show_progress: bool, overwrite: bool = False) -> tuple[Any, StepSummary]:
        common = {"show_progress": show_progress, "return_summary": True, "overwrite": overwrite}
        if self.spec.uses_llm:
            return self.definition.function(ds, llm, **self.kwargs, **common)  # type: ignore[no-any-return]
        return self.definition.function(ds, **self.kwargs, **common)  # type: ignore[no-any-return]


@dataclasses.dataclass
class Plan:
    steps: list[PlannedStep]
    context: PlanContext

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def uses_llm(self) -> bool:
        return any(s.spec.uses_llm for s in self.steps)

    def get(self, name: str) -> PlannedStep | None:
        return next((s for s in self.steps if s.name == name), None)

    def error_columns(self) -> list[str]:
        """The error columns of the steps whose failed rows are dropped."""
        return [s.definition.error_column(s.kwargs) for s in self.steps if s.spec.drops_failed]


def plan_steps(
    steps: Sequence[str | StepSpec | Any] | None = None,
    *,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    answer_key: str | None = None,
    seed: int = 0,
    **step_kwargs: dict[str, Any] | None,
) -> Plan:
    """The plan of a run: ``steps`` in run order, each with its arguments (the ``*_kwargs``, e.g.
    ``question_kwargs``, override the pipeline's values). Raises ``ValueError`` for an unknown step or argument."""
    specs = resolve_steps(DEFAULT_STEPS if steps is None else steps)
    unknown = sorted(set(step_kwargs) - {spec.kwargs_name for spec in BUILT_IN})
    if unknown:
        raise TypeError(f"plan_steps() got unexpected keyword arguments {unknown}.")
    ctx = PlanContext(
        roles={"text": text_key, "answer": answer_key},
        options={"num_neg": num_neg, "num_questions": num_questions, "seed": seed},
        chosen={s.name for s in specs},
    )
    planned = []
    for spec in specs:
        definition = spec.load()
        given = step_kwargs.get(spec.kwargs_name) or {}
        _check_kwargs(spec, definition, given)
        kwargs = {**definition.plan(ctx), **given}
        ctx.roles.update(definition.provides(kwargs))
        planned.append(PlannedStep(spec, definition, kwargs))
    return Plan(planned, ctx)


def _check_kwargs(spec: StepSpec, definition: StepDefinition, kwargs: dict[str, Any]) -> None:
    function = definition.function
    accepted = [p for p in inspect.signature(function).parameters if p not in _RESERVED]
    wrong = [k for k in kwargs if k not in accepted]
    if wrong:
        name = getattr(function, "__name__", spec.name)
        raise ValueError(f"{spec.kwargs_name}: {name} takes no argument {wrong}; it takes {accepted}.")


_PIPELINE_NAMES = {
    "input_key": "text_key",
    "input_text_key": "text_key",
    "input_question_key": "a question column (no questions step)",
    "input_scenario_key": "a scenario column (no questions step)",
    "input_hardneg_key": "a hard negatives column (no hard_negatives step)",
}


def check_inputs(
    ds: datasets.Dataset, plan: Plan, names: dict[str, str] | None = None, *, overwrite: bool = False
) -> None:
    """Every column a step reads must exist, with the right type, before the first step spends anything:
    either in the input or written by an earlier step; and, unless ``overwrite``, no column a step writes may
    exist already (found before the first step, not after the earlier ones were paid for). ``names`` says how
    to call an argument in messages (the CLI names its flags)."""
    names = {**_PIPELINE_NAMES, **(names or {})}
    written: set[str] = set()
    for planned in plan.steps:
        reads = [r for r in planned.definition.reads(planned.kwargs) if r.column not in written]
        _plumbing.check_reads(ds, reads, names)
        # doc_id and drop_reason are shared: every step may add to them
        columns = [c.name for c in planned.definition.columns(planned.kwargs) if c.name not in (DOC_ID, DROP_REASON)]
        existing = [c for c in columns if c in ds.column_names and c not in written]
        if existing and not overwrite:
            raise ValueError(
                f"The {planned.name} step would replace the existing column(s) {existing}. Pass overwrite=True to "
                "recompute them, or name other output columns in its *_kwargs."
            )
        written |= set(columns)
