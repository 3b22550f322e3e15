"""LLM-verified negatives: BM25 cannot tell a true negative from an unlabelled positive, the teacher can.

Per row, one request shows the teacher the question and the numbered mined candidates and asks which of
them, on its own, answers it. Those are false negatives: dropped, and the next candidates move up. Mine
deeper than you keep (``add_hard_negatives(num_neg=6)``, then ``verify_negatives(num_neg=3)``) so dropped
candidates have replacements.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, LLMRun
from ..text.parsing import iter_json_objects
from ..text.prompts import VERIFY_PROMPT, format_documents
from ..utils.datasets import column_values, doc_id_for
from . import _plumbing
from .base import Column, LLMStep, StepOptions
from .registry import PlanContext, Read, StepDefinition
from .row_error import RowError

if TYPE_CHECKING:
    from .estimate import StepEstimate

__all__ = ["verify_negatives"]


@dataclasses.dataclass(frozen=True)
class VerifyOptions(StepOptions):
    """The options of :func:`verify_negatives` (see it for what each means)."""

    input_question_key: str = "question"
    input_hardneg_key: str = "hard_negatives"
    num_neg: int | None = None
    max_attempts: int = 2
    max_doc_chars: int = 20_000
    max_tokens: int | None = None
    false_negatives: Literal["drop", "positive"] = "drop"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}.")
        if self.false_negatives not in ("drop", "positive"):
            raise ValueError(f"false_negatives must be 'drop' or 'positive', got {self.false_negatives!r}.")


def verify_negatives(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    input_question_key: str = "question",
    input_hardneg_key: str = "hard_negatives",
    num_neg: int | None = None,
    max_attempts: int = 2,
    max_doc_chars: int = 20_000,
    max_tokens: int | None = None,
    false_negatives: Literal["drop", "positive"] = "drop",
    overwrite: bool = False,
    batch_size: int = 1000,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Drop mined negatives that the teacher finds answer the question on their own (false negatives).

    Args:
        ds: Rows with a question and mined negatives (the output of :func:`rare_hf.add_hard_negatives`).
        llm: The teacher; ``None`` builds ``LLM()`` from the environment.
        input_question_key / input_hardneg_key: The columns to read; the negatives column is rewritten with
            the candidates that passed, in their mined order.
        num_neg: Negatives to keep per row (the first that pass); ``None`` keeps every one that passes.
        max_attempts: Requests per row until a usable verdict; a row without one keeps its candidates
            unverified and says why in ``{input_hardneg_key}_verify_error``.
        max_doc_chars: Each candidate is cut to this many characters in the request.
        max_tokens: Completion budget (default: the LLM's, else 256).
        false_negatives: ``"positive"`` also appends the false negatives to ``{neg}_positives`` (and ``_ids``),
            the extra positives the retrieval exports use (created when the mining did not write them).
        overwrite / batch_size / show_progress / return_summary: As in the other steps.

    Returns:
        The dataset with the negatives column filtered (and ``{neg}_ids`` / ``{neg}_scores`` with it),
        ``{neg}_false_negatives`` and ``{neg}_false_negatives_ids`` (the dropped candidates), ``{neg}_verify_error``
        and ``{neg}_verify_prompt_version``; and the summary when ``return_summary``.

    Example:
        >>> ds = rare_hf.add_hard_negatives(ds, num_neg=6)
        >>> ds = rare_hf.verify_negatives(ds, llm, num_neg=3)
    """
    step = VerifyStep(llm or LLM(), VerifyOptions.from_arguments(locals()))
    return step.apply(
        ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
    )


class VerifyStep(LLMStep):
    """The verification of mined negatives as a step: see :func:`verify_negatives` for the arguments."""

    name = "verify_negatives"
    function = "verify_negatives"
    progress_desc = "Verifying negatives"
    default_budget = 256
    prompt_name = "verify"
    prompt_placeholders = {"question", "documents"}
    prompt_required = {"question", "documents"}

    def __init__(self, llm: LLM, options: VerifyOptions) -> None:
        self.options = o = options
        super().__init__(llm, f"{o.input_hardneg_key}_verify_error", o.max_tokens)
        self.question_key, self.negatives_key = o.input_question_key, o.input_hardneg_key
        self.prompt = VERIFY_PROMPT
        self.prompt_version = VERIFY_PROMPT.version
        self.params = o.params(llm, max_tokens=self.budget, prompt_version=VERIFY_PROMPT.version)

    def columns(self) -> list[Column]:
        return self.columns_for(self.negatives_key)

    @staticmethod
    def columns_for(neg: str = "hard_negatives") -> list[Column]:
        """The columns written for this negatives column (itself rewritten in place)."""
        strings = datasets.Sequence(datasets.Value("string"))
        return [
            Column(neg, strings, "Hard negatives that the teacher found do not answer the question alone."),
            Column(f"{neg}_false_negatives", strings, "Mined candidates the teacher found answer the question."),
            Column(f"{neg}_false_negatives_ids", strings, "doc_id of each false negative."),
            Column(f"{neg}_verify_error", datasets.Value("string"), "Why the row's negatives are unverified."),
            Column(f"{neg}_verify_prompt_version", datasets.Value("string"), "Version of the verify prompt."),
        ]

    def output_names(self) -> list[str]:
        return [c.name for c in self.columns() if c.name != self.negatives_key]  # the negatives are rewritten in place

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        """With ``false_negatives="positive"``, the extra-positive columns the rows append to (empty ones when
        the mining wrote none)."""
        if self.options.false_negatives == "drop":
            return ds
        for column in (f"{self.negatives_key}_positives", f"{self.negatives_key}_positives_ids"):
            if column not in ds.column_names:
                ds = ds.add_column(
                    column, [[] for _ in range(len(ds))], feature=datasets.List(datasets.Value("string"))
                )
        return ds

    def check(self, ds: datasets.Dataset) -> None:
        _plumbing.check_reads(
            ds, DEFINITION.reads({"input_question_key": self.question_key, "input_hardneg_key": self.negatives_key})
        )

    def stats(self, out: datasets.Dataset) -> dict[str, Any]:
        dropped = [len(d or []) for d in column_values(out, f"{self.negatives_key}_false_negatives")]
        return {"false_negatives": sum(dropped), "rows_with_false_negatives": sum(1 for d in dropped if d)}

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        neg = self.negatives_key
        candidates = list(row[neg] or [])
        out = {**row, f"{neg}_false_negatives": [], f"{neg}_false_negatives_ids": [], f"{neg}_verify_error": None}
        out[f"{neg}_verify_prompt_version"] = VERIFY_PROMPT.version
        if not row[self.question_key] or not candidates:
            out[f"{neg}_verify_error"] = RowError("skipped", "no question or no negatives")
            return [out]
        messages = VERIFY_PROMPT.render(
            question=row[self.question_key],
            documents=format_documents([c[: self.options.max_doc_chars] for c in candidates]),
        )
        problem = RowError("request", "no attempt")
        for attempt in range(self.options.max_attempts):
            try:
                completion = await self.ask(messages, run, attempt, **self.sampling(attempt, None))
            except LLMRequestError as exc:
                problem = RowError("request", exc.reason)
                continue
            answering = _answering(completion.text, len(candidates))
            if answering is None:
                problem = RowError("parse", 'no JSON object with an "answers" list of document numbers')
            if self.judged(run, None if answering is not None else problem) is not None:
                continue
            self._split(out, [i for i in range(len(candidates)) if i + 1 not in answering], sorted(answering))
            return [out]
        self._split(out, list(range(len(candidates))), [])
        out[f"{neg}_verify_error"] = problem
        return [out]

    def _split(self, out: dict[str, Any], kept: list[int], answering: list[int]) -> None:
        """Keep candidates ``kept`` (the first ``num_neg``) in the negatives and every column aligned with them
        (ids, scores); the ``answering`` ones (1-based) become false negatives, and extra positives if asked."""
        neg = self.negatives_key
        ids = out.get(f"{neg}_ids") or [doc_id_for(t) for t in out[neg]]
        false = [out[neg][i - 1] for i in answering], [ids[i - 1] for i in answering]
        kept = kept[: self.options.num_neg] if self.options.num_neg is not None else kept
        for column in (neg, f"{neg}_ids", f"{neg}_scores"):
            if out.get(column) is not None:
                out[column] = [out[column][i] for i in kept]
        out[f"{neg}_false_negatives"], out[f"{neg}_false_negatives_ids"] = false
        if self.options.false_negatives == "positive":
            out[f"{neg}_positives"] = [*(out[f"{neg}_positives"] or []), *false[0]]
            out[f"{neg}_positives_ids"] = [*(out[f"{neg}_positives_ids"] or []), *false[1]]


def _answering(text: str, count: int) -> set[int] | None:
    """The document numbers of the last ``{"answers": [...]}`` object, or None when there is none."""
    for obj in reversed(list(iter_json_objects(text))):
        numbers = obj.get("answers")
        if isinstance(numbers, list) and all(isinstance(n, int) and 1 <= n <= count for n in numbers):
            return set(numbers)
    return None


class _Definition(StepDefinition):
    function = staticmethod(verify_negatives)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {
            "input_question_key": ctx.column("question", "question"),
            "input_hardneg_key": ctx.column("hard_negatives", "hard_negatives"),
            "num_neg": ctx.options["num_neg"],
        }

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(verify_negatives, kwargs)
        return [
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_hardneg_key", args["input_hardneg_key"], "list"),
        ]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return VerifyStep.columns_for(_plumbing.arguments(verify_negatives, kwargs)["input_hardneg_key"])

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{_plumbing.arguments(verify_negatives, kwargs)['input_hardneg_key']}_verify_error"

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        from .estimate import TYPICAL_QUESTION, estimate_templated

        candidates = 2 * ctx.options["num_neg"]

        def prompt(text: str, mean_doc: str) -> list[dict[str, Any]]:
            documents = format_documents([mean_doc] * candidates)
            return VERIFY_PROMPT.render(question=TYPICAL_QUESTION, documents=documents)

        return estimate_templated(llm, "verify_negatives", ds, ctx, prompt)


DEFINITION = _Definition()
