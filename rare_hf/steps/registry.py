"""The step registry: every step declared once.

A step is two things. Its **entry** here (:class:`StepSpec`) is light — name, CLI aliases, one line of help,
whether it calls the teacher, whether its failures drop a row, whether it runs by default, the reply size the
dry run assumes — so ``rare-hf --help`` lists the steps without importing ``datasets``. Its **definition**
(:class:`StepDefinition`, in the step's own module) is the behaviour the pipeline, the CLI, the dry run, Ray and
the dataset card share: the function users call, the arguments the pipeline passes it, the columns it reads and
writes (derived from those arguments, so custom column names flow everywhere), and its dry-run estimate.

Adding a step is one module with a :class:`StepDefinition` plus one :class:`StepSpec` line in ``BUILT_IN``. A
user's own step (:class:`rare_hf.PromptStep`) is both at once and is passed in ``build_rare_dataset(steps=[…])``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datasets

    from ..teacher.client import LLM
    from .base import Column
    from .estimate import StepEstimate

__all__ = ["StepSpec", "StepDefinition", "PlanContext", "Read", "BUILT_IN", "resolve_steps", "spec_of", "aliases"]

ReadKind = Literal["string", "list", "any"]


@dataclasses.dataclass(frozen=True)
class Read:
    """A column a step reads: the argument naming it, the column, and what it must hold."""

    argument: str
    column: str
    kind: ReadKind = "any"


@dataclasses.dataclass
class PlanContext:
    """What the pipeline knows when it plans a step.

    Attributes:
        roles: Which column holds each kind of data so far: ``text``, ``question``, ``scenario``,
            ``hard_negatives``, ``answer`` (gold), and whatever earlier steps provided. ``None``: not there yet.
        options: The pipeline's shared options (``num_neg``, ``num_questions``, ``seed``).
        chosen: Names of every step of the run.
    """

    roles: dict[str, str | None]
    options: dict[str, Any]
    chosen: set[str]

    def column(self, role: str, default: str) -> str:
        return self.roles.get(role) or default


class StepDefinition:
    """What a step does, for everything that runs, checks, estimates or documents it. Override what applies."""

    #: The public function: ``function(ds, llm, **kwargs)`` for LLM steps, ``function(ds, **kwargs)`` otherwise.
    function: Callable[..., Any]

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        """The keyword arguments the pipeline passes (the user's ``*_kwargs`` override them)."""
        return {}

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        """The roles its output columns fill for later steps (``{"question": "question"}``)."""
        return {}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        return []

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        """Every column it writes, with the type and the one-line doc the dataset card shows."""
        return []

    def error_column(self, kwargs: dict[str, Any]) -> str:
        """The column where a row's failure is written (``None`` when the row is fine)."""
        raise NotImplementedError

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate | None:
        """Its first-try requests, tokens and dollars on ``ds`` without sending anything (LLM steps)."""
        return None


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """A step's registry entry.

    Attributes:
        name: The name in ``steps=``, summaries and the card.
        help: One line for ``rare-hf --help``.
        aliases: Other names ``--steps`` accepts.
        uses_llm: Whether it asks the teacher (the pipeline then needs an :class:`rare_hf.LLM`).
        drops_failed: Whether a row it fails is dropped from the output (unless ``keep_failed``).
        default: Whether it runs when ``steps`` is not given.
        completion_tokens: First-try completion tokens per request the dry run assumes.
        module: Module holding its ``DEFINITION`` (loaded on first use), unless ``definition`` is given.
        definition: The definition itself (user steps).
    """

    name: str
    help: str
    aliases: tuple[str, ...] = ()
    uses_llm: bool = True
    drops_failed: bool = True
    default: bool = False
    completion_tokens: int = 0
    module: str = ""
    definition: StepDefinition | None = dataclasses.field(default=None, compare=False, repr=False)

    def load(self) -> StepDefinition:
        if self.definition is not None:
            return self.definition
        return importlib.import_module(self.module).DEFINITION  # type: ignore[no-any-return]

    @property
    def kwargs_name(self) -> str:
        """The pipeline's argument with extra options for this step (``question_kwargs``)."""
        return _KWARGS_NAMES.get(self.name, f"{self.name}_kwargs")


# Run order. The opt-in steps sit where their input exists and before what reads their output.
BUILT_IN: tuple[StepSpec, ...] = (
    StepSpec(
        "dedup",
        "opt-in: near-duplicate documents get no questions and are never each other's negatives (MinHash)",
        aliases=("dedup_documents",),
        uses_llm=False,
        module="rare_hf.steps.dedup",
    ),
    StepSpec(
        "questions",
        "a standalone, reasoning-intensive question and scenario per document (Doc2Query)",
        default=True,
        completion_tokens=200,
        module="rare_hf.steps.questions",
    ),
    StepSpec(
        "decontaminate",
        "opt-in: flags or drops rows that share 13-word runs with an evaluation set you name",
        uses_llm=False,
        module="rare_hf.steps.decontaminate",
    ),
    StepSpec(
        "dedup_questions",
        "opt-in: questions that nearly repeat an earlier one are dropped before mining and reasoning",
        uses_llm=False,
        module="rare_hf.steps.dedup_questions",
    ),
    StepSpec(
        "hard_negatives",
        "BM25 documents that look relevant but are not the source (BM25HardNeg)",
        aliases=("negatives",),
        uses_llm=False,
        default=True,
        module="rare_hf.steps.negatives",
    ),
    StepSpec(
        "easiness",
        "opt-in: flags (drop_easy=True: drops) questions a lexical look-up answers",
        uses_llm=False,
        module="rare_hf.steps.easiness",
    ),
    StepSpec(
        "verify_negatives",
        "opt-in: the teacher drops mined negatives that answer the question alone",
        aliases=("verify",),
        drops_failed=False,  # an unverified row keeps its mined negatives
        completion_tokens=60,
        module="rare_hf.steps.verify",
    ),
    StepSpec(
        "written_negatives",
        "opt-in: the teacher writes near-miss documents (ReasonIR)",
        aliases=("written",),
        drops_failed=False,  # extra data: a row without them is still a row
        completion_tokens=500,
        module="rare_hf.steps.written",
    ),
    StepSpec(
        "reasoning",
        "the teacher reasons over the positive and the shuffled negatives (ReasonDistill)",
        default=True,
        completion_tokens=800,
        module="rare_hf.steps.reasoning",
    ),
    StepSpec(
        "judge",
        "opt-in: the teacher scores each row (stands alone, needs reasoning, answerable, answer agrees) and drops "
        "rows below min_score",
        completion_tokens=150,
        module="rare_hf.steps.judge",
    ),
)
_KWARGS_NAMES = {
    "dedup": "dedup_kwargs",
    "dedup_questions": "dedup_questions_kwargs",
    "easiness": "easiness_kwargs",
    "decontaminate": "decontaminate_kwargs",
    "judge": "judge_kwargs",
    "questions": "question_kwargs",
    "hard_negatives": "negatives_kwargs",
    "verify_negatives": "verify_kwargs",
    "written_negatives": "written_kwargs",
    "reasoning": "reasoning_kwargs",
}
_BY_NAME = {spec.name: spec for spec in BUILT_IN}
DEFAULT_STEPS = tuple(spec.name for spec in BUILT_IN if spec.default)


def aliases() -> dict[str, str]:
    """Every name ``--steps`` accepts, mapped to the step's name."""
    return {alias: spec.name for spec in BUILT_IN for alias in (spec.name, *spec.aliases)}


def spec_of(step: str | StepSpec | Any) -> StepSpec:
    """The entry of a step given by name, alias, entry, or as a user step object (one with ``.spec``)."""
    if isinstance(step, StepSpec):
        return step
    if isinstance(step, str):
        name = aliases().get(step)
        if name is None:
            raise ValueError(
                f"Unknown step {step!r} in steps; choose from {list(aliases())} or pass a rare_hf.PromptStep."
            )
        return _BY_NAME[name]
    spec = getattr(step, "spec", None)
    if isinstance(spec, StepSpec):
        return spec
    raise TypeError(f"steps: expected step names or rare_hf.PromptStep objects, got {type(step).__name__}.")


def resolve_steps(steps: Iterable[str | StepSpec | Any]) -> list[StepSpec]:
    """The run's steps in run order: built-in steps in registry order whatever order they are given in; a
    user step runs right after the step given before it (first when given first). Names must be unique."""
    given = [spec_of(s) for s in steps]
    if not given:
        raise ValueError(f"steps: give at least one step; choose from {list(_BY_NAME)} or pass a rare_hf.PromptStep.")
    names = [s.name for s in given]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"steps: {twice} given twice; every step runs once (give user steps distinct names).")
    rank: dict[str, float] = {}
    previous = -1.0
    for position, spec in enumerate(given):
        if spec.name in _BY_NAME and spec is _BY_NAME[spec.name]:
            previous = rank[spec.name] = float(BUILT_IN.index(spec))
        else:
            rank[spec.name] = previous + (position + 1) / (len(given) + 1)  # after its predecessor, in given order
    return sorted(given, key=lambda s: rank[s.name])


def names_of(steps: Sequence[StepSpec]) -> list[str]:
    return [s.name for s in steps]
