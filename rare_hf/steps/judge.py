"""An LLM judge of each row: does the question stand alone, need reasoning, and have its answer in the positive;
does the distilled answer agree with a reference answer. One request per row, scores 1-5 with a reason each,
and a threshold filter (NeMo Curator's answerability judge, Data Designer's judge columns)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, LLMRun
from ..text.parsing import iter_json_objects
from ..text.prompts import JUDGE_PROMPT
from ..utils.datasets import column_values
from . import _plumbing
from .base import Column, LLMStep, StepOptions
from .drops import DROP_COLUMN, DROP_REASON, mark_dropped
from .registry import PlanContext, Read, StepDefinition
from .row_error import RowError

if TYPE_CHECKING:
    from .estimate import StepEstimate

__all__ = ["judge", "CRITERIA"]

CRITERIA = ("standalone", "needs_reasoning", "answerable", "answer_agrees")
_SCORE = {"type": "object", "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
          "required": ["score", "reason"], "additionalProperties": False}  # fmt: skip
_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "judgement",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {c: {"anyOf": [_SCORE, {"type": "null"}]} if c == CRITERIA[-1] else _SCORE for c in CRITERIA},
            "required": list(CRITERIA),
            "additionalProperties": False,
        },
    },
}


@dataclasses.dataclass(frozen=True)
class JudgeOptions(StepOptions):
    """The options of :func:`judge` (see it for what each means)."""

    input_question_key: str = "question"
    input_text_key: str = "text"
    input_answer_key: str | None = "answer"
    input_reference_key: str | None = "reference_answer"
    min_score: int = 3
    action: Literal["flag", "drop"] = "drop"
    max_attempts: int = 2
    max_doc_chars: int = 20_000
    max_tokens: int | None = None
    structured: Literal["auto", "json_schema", "off"] = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.min_score <= 5:
            raise ValueError(f"min_score must be between 1 and 5, got {self.min_score}.")
        if self.action not in ("flag", "drop"):
            raise ValueError(f"action must be 'flag' or 'drop', got {self.action!r}.")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}.")


def judge(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    input_question_key: str = "question",
    input_text_key: str = "text",
    input_answer_key: str | None = "answer",
    input_reference_key: str | None = "reference_answer",
    min_score: int = 3,
    action: Literal["flag", "drop"] = "drop",
    max_attempts: int = 2,
    max_doc_chars: int = 20_000,
    max_tokens: int | None = None,
    structured: Literal["auto", "json_schema", "off"] = "auto",
    overwrite: bool = False,
    batch_size: int = 1000,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Score every row with the teacher as a judge, and drop (or flag) rows scoring below ``min_score``.

    Args:
        ds: Rows with a question and its source document (and, after :func:`rare_hf.add_reasoning`, an answer).
        llm: The judge; ``None`` builds ``LLM()`` from the environment.
        input_question_key / input_text_key: Columns of the questions and their source documents.
        input_answer_key / input_reference_key: The distilled answer and a reference answer (from
            ``add_questions(reference_answer=True)`` or gold); ``answer_agrees`` is scored only when both
            columns exist and the row has both.
        min_score: A row passes when every criterion scored is at least this (1-5).
        action: ``"drop"`` (``drop_reason`` ``"judge: ..."``, later steps skip the row) or ``"flag"``.
        max_attempts: Requests per row until a usable verdict; a row without one is kept, unjudged, with
            ``judge_error`` saying why (a failed request never becomes a score).
        max_doc_chars: The document is cut to this many characters in the request.
        max_tokens: Completion budget (default: the LLM's, else 512).
        structured: Send the verdict's JSON schema as ``response_format`` (``"auto"``: when the server takes it).
        overwrite / batch_size / show_progress / return_summary: As in the other steps.

    Returns:
        The dataset with ``judge_scores`` and ``judge_reasons`` (one field per criterion), ``judge_passed``,
        ``judge_error`` and ``judge_prompt_version``.

    Example:
        >>> ds = rare_hf.judge(ds, rare_hf.LLM("gpt-4o"), min_score=4)
    """
    step = JudgeStep(llm or LLM(), JudgeOptions.from_arguments(locals()))
    return step.apply(
        ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
    )


class JudgeStep(LLMStep):
    """The judge as a step: see :func:`judge` for the arguments."""

    name = "judge"
    function = "judge"
    progress_desc = "Judging rows"
    default_budget = 512

    def __init__(self, llm: LLM, options: JudgeOptions) -> None:
        self.options = o = options
        super().__init__(llm, "judge_error", o.max_tokens, o.structured)
        self.prompt, self.prompt_version = JUDGE_PROMPT, JUDGE_PROMPT.version
        self.params = o.params(llm, max_tokens=self.budget, prompt_version=JUDGE_PROMPT.version)

    def response_format(self) -> dict[str, Any] | None:
        return _RESPONSE_FORMAT

    def columns(self) -> list[Column]:
        return judge_columns()

    def output_names(self) -> list[str]:
        return [c.name for c in self.columns() if c.name != DROP_REASON]  # added to, not replaced

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        """The shared drop column, without this judge's verdicts of an earlier run (a rerun judges afresh)."""
        return mark_dropped(ds, "judge", [None] * len(ds))

    def check(self, ds: datasets.Dataset) -> None:
        _plumbing.check_reads(ds, DEFINITION.reads(dataclasses.asdict(self.options)))

    def stats(self, out: datasets.Dataset) -> dict[str, Any]:
        scores = [s for s in column_values(out, "judge_scores") if s is not None]
        histogram = {c: {str(k): sum(s[c] == k for s in scores) for k in range(1, 6)} for c in CRITERIA}
        failed = [p for p in column_values(out, "judge_passed") if p is False]
        return {"judged": len(scores), "below_min_score": len(failed), "score_histogram": histogram}

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        o = self.options
        out = {**row, "judge_scores": None, "judge_reasons": None, "judge_passed": None, "judge_error": None}
        out["judge_prompt_version"] = JUDGE_PROMPT.version
        question, document = row.get(o.input_question_key), row.get(o.input_text_key)
        if not question or not document:
            out["judge_error"] = RowError("skipped", "no question or no document")
            return [out]
        answer, reference = row.get(o.input_answer_key or ""), row.get(o.input_reference_key or "")
        with_reference = bool(answer) and bool(reference)
        messages = JUDGE_PROMPT.render(
            document=document[: o.max_doc_chars],
            question=question,
            answer=answer if with_reference else "(none)",
            reference=reference if with_reference else "(none)",
        )
        problem = RowError("request", "no attempt")
        for attempt in range(o.max_attempts):
            try:
                completion = await self.ask(messages, run, attempt, **self.sampling(attempt, None))
            except LLMRequestError as exc:
                problem = RowError("request", exc.reason)
                continue
            verdict = _verdict(completion.text, with_reference)
            problem = verdict if isinstance(verdict, RowError) else None
            if self.judged(run, problem) is None:
                return [self._scored(out, verdict)]  # type: ignore[arg-type]
        out["judge_error"] = problem
        return [out]

    def _scored(self, out: dict[str, Any], verdict: dict[str, tuple[int, str] | None]) -> dict[str, Any]:
        out["judge_scores"] = {c: v[0] if v else None for c, v in verdict.items()}
        out["judge_reasons"] = {c: v[1] if v else None for c, v in verdict.items()}
        bar = self.options.min_score
        low = [f"{c} {v[0]} < {bar} ({v[1]})" for c, v in verdict.items() if v and v[0] < bar]
        out["judge_passed"] = not low
        if low and self.options.action == "drop" and out.get(DROP_REASON) is None:
            out[DROP_REASON] = f"judge: {'; '.join(low)}"
        return out


def _verdict(text: str, with_reference: bool) -> dict[str, tuple[int, str] | None] | RowError:
    """The scores of the last JSON object holding every criterion (``answer_agrees`` only with a reference)."""
    for obj in reversed(list(iter_json_objects(text))):
        verdict: dict[str, tuple[int, str] | None] = {}
        for criterion in CRITERIA:
            item = obj.get(criterion)
            if criterion == "answer_agrees" and not with_reference:
                verdict[criterion] = None
            elif isinstance(item, dict) and isinstance(item.get("score"), int) and 1 <= item["score"] <= 5:
                verdict[criterion] = (item["score"], str(item.get("reason") or "").strip())
            else:
                break
        else:
            return verdict
    return RowError("parse", f"no JSON object scoring {', '.join(CRITERIA[: 3 + with_reference])} from 1 to 5")


def judge_columns() -> list[Column]:
    scores = datasets.Features({c: datasets.Value("int32") for c in CRITERIA})
    reasons = datasets.Features({c: datasets.Value("string") for c in CRITERIA})
    return [
        Column("judge_scores", scores, "The judge's 1-5 score per criterion (answer_agrees null without a reference)."),
        Column("judge_reasons", reasons, "The judge's one-sentence reason per criterion."),
        Column("judge_passed", datasets.Value("bool"), "Whether every criterion scored at least min_score."),
        Column("judge_error", datasets.Value("string"), "Why the row was not judged (null when it was)."),
        Column("judge_prompt_version", datasets.Value("string"), "Version of the judge prompt."),
        DROP_COLUMN,
    ]


class _Definition(StepDefinition):
    function = staticmethod(judge)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {
            "input_question_key": ctx.column("question", "question"),
            "input_text_key": ctx.column("text", "text"),
            "input_answer_key": ctx.column("answer_output", "answer"),
            "input_reference_key": ctx.roles.get("reference_answer") or ctx.roles.get("answer") or "reference_answer",
        }

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(judge, kwargs)
        return [
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_text_key", args["input_text_key"], "string"),
        ]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return judge_columns()

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return DROP_REASON  # an unjudged row is kept; a row judged below the bar is dropped through drop_reason

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        from .estimate import TYPICAL_QUESTION, estimate_templated

        def prompt(text: str, mean_doc: str) -> list[dict[str, Any]]:
            return JUDGE_PROMPT.render(document=text, question=TYPICAL_QUESTION, answer="(none)", reference="(none)")

        return estimate_templated(llm, "judge", ds, ctx, prompt)


DEFINITION = _Definition()
