"""LLM-written hard negatives (ReasonIR): per question, the teacher writes documents that look relevant to it
but do not answer it. Each is checked against the positive: one that shares a passage with it, or contains
the known answer, is rejected and the teacher asked again."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from ..errors import LLMRequestError
from ..retrieval.shingles import passage_hashes
from ..teacher.client import LLM, LLMRun
from ..text.answers import normalize_answer
from ..text.parsing import iter_json_objects, prompt_echo
from ..text.prompts import WRITTEN_NEGATIVES_PROMPT, Prompt
from . import _plumbing
from .base import Column, LLMStep, StepOptions
from .registry import PlanContext, Read, StepDefinition
from .row_error import RowError

if TYPE_CHECKING:
    from .estimate import StepEstimate

__all__ = ["add_written_negatives"]

_MIN_WORDS = 40  # shorter is a sentence, not a document a retriever would index
_MIN_ANSWER_CHARS = 3  # "B" or "no" are in every document


@dataclasses.dataclass(frozen=True)
class WrittenOptions(StepOptions):
    """The options of :func:`add_written_negatives` (see it for what each means)."""

    input_text_key: str = "text"
    input_question_key: str = "question"
    input_scenario_key: str = "scenario"
    answer_key: str | None = None
    output_key: str = "written_negatives"
    num_neg: int = 1
    max_attempts: int = 3
    max_doc_chars: int = 20_000
    max_tokens: int | None = None
    prompt: Prompt | None = None
    prompt_language: str = "auto"

    def __post_init__(self) -> None:
        if self.num_neg < 1:
            raise ValueError(f"num_neg must be at least 1, got {self.num_neg}.")


def add_written_negatives(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    input_text_key: str = "text",
    input_question_key: str = "question",
    input_scenario_key: str = "scenario",
    answer_key: str | None = None,
    output_key: str = "written_negatives",
    num_neg: int = 1,
    max_attempts: int = 3,
    max_doc_chars: int = 20_000,
    max_tokens: int | None = None,
    prompt: Prompt | None = None,
    prompt_language: str = "auto",
    overwrite: bool = False,
    batch_size: int = 1000,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Have the teacher write ``num_neg`` documents per question that look relevant but do not answer it.

    Args:
        ds: Rows with a question and its positive document (the output of :func:`rare_hf.add_questions`).
        llm: The teacher; ``None`` builds ``LLM()`` from the environment.
        input_text_key / input_question_key / input_scenario_key: The columns to read.
        answer_key: A column with the answer (gold, or ``"answer"`` after :func:`rare_hf.add_reasoning`): a
            written document that contains it is rejected.
        output_key: The column to write (a list of documents per row).
        num_neg: Documents to write per question, in one request.
        max_attempts: Requests per row until ``num_neg`` documents pass the checks.
        max_doc_chars: The positive is cut to this many characters in the request.
        max_tokens: Completion budget (default: the LLM's, else 2,048 per requested document).
        prompt: Your own :class:`rare_hf.Prompt` with ``{question}`` (and ``{scenario}``, ``{document}``,
            ``{num_neg}``); it must ask for ``{"documents": [...]}``.
        prompt_language: ``"en"``, ``"zh"`` or ``"auto"`` (from the documents).
        overwrite / batch_size / show_progress / return_summary: As in the other steps.

    Returns:
        The dataset with ``{output_key}``, ``{output_key}_attempts``, ``{output_key}_error`` and
        ``{output_key}_prompt_version``; and the summary when ``return_summary``.

    Example:
        >>> ds = rare_hf.add_written_negatives(ds, llm, num_neg=1)
        >>> rare_hf.to_retrieval_triples(ds)[0]["written_negative_passages"]
    """
    step = WrittenNegativesStep(llm or LLM(), WrittenOptions.from_arguments(locals()))
    return step.apply(
        ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
    )


class WrittenNegativesStep(LLMStep):
    """Written negatives as a step: see :func:`add_written_negatives` for the arguments."""

    name = "written_negatives"
    function = "add_written_negatives"
    progress_desc = "Writing negatives"
    default_budget = 2048
    prompt_name = "written-negatives"
    prompt_placeholders = {"question", "scenario", "document", "num_neg"}
    prompt_required = {"question"}

    def __init__(self, llm: LLM, options: WrittenOptions) -> None:
        self.options = o = options
        self.default_budget = 2048 * o.num_neg
        super().__init__(llm, f"{o.output_key}_error", o.max_tokens)
        self.column_of = {"text": o.input_text_key, "question": o.input_question_key, "scenario": o.input_scenario_key}
        self.answer_key, self.output_key = o.answer_key, o.output_key
        self.params = o.params(llm, max_tokens=self.budget)
        self.choose_prompt(o.prompt, o.prompt_language)

    def columns(self) -> list[Column]:
        return self.columns_for(self.output_key)

    @staticmethod
    def columns_for(o: str = "written_negatives") -> list[Column]:
        """The columns written with this ``output_key``."""
        return [
            Column(
                o,
                datasets.Sequence(datasets.Value("string")),
                "Documents the teacher wrote to look relevant "
                "to the question without answering it (hard negatives, apart from the mined ones).",
            ),
            Column(f"{o}_attempts", datasets.Value("int32"), "Teacher requests used to write them."),
            Column(f"{o}_error", datasets.Value("string"), "Why the row has no written negatives (null when it has)."),
            Column(f"{o}_prompt_version", datasets.Value("string"), "Version of the written-negatives prompt."),
        ]

    def check(self, ds: datasets.Dataset) -> None:
        keys = {"input_text_key": self.column_of["text"], "input_question_key": self.column_of["question"]}
        _plumbing.check_reads(ds, DEFINITION.reads({**keys, "answer_key": self.answer_key}))

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        self.detect_language(ds, self.column_of["text"])
        return ds

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        o = self.output_key
        out = {**row, o: None, f"{o}_attempts": 0, f"{o}_error": None, f"{o}_prompt_version": self.prompt.version}
        question, positive = row[self.column_of["question"]], row[self.column_of["text"]]
        if not question or not positive:
            return [{**out, f"{o}_error": RowError("skipped", "no question or no positive document")}]
        fields = {
            "question": question,
            "scenario": row.get(self.column_of["scenario"]) or "",
            "num_neg": self.options.num_neg,
        }
        messages = self.prompt.render(**fields, document=positive[: self.options.max_doc_chars])
        answer = row.get(self.answer_key) if self.answer_key else None
        kept: list[str] = []
        problem: RowError | None = RowError("request", "no attempt")
        for attempt in range(self.options.max_attempts):
            params = self.sampling(attempt, None)
            try:
                completion = await self.ask(messages, run, attempt, **params)
            except LLMRequestError as exc:
                problem = RowError("request", exc.reason)
                continue
            if completion.truncated:
                problem = self.judged(run, self.truncation_problem(completion))
                continue
            problem = self.judged(run, self._collect(completion.text, positive, answer, kept))
            if len(kept) >= self.options.num_neg:
                return [{**out, o: kept[: self.options.num_neg], f"{o}_attempts": attempt + 1}]
        return [{**out, f"{o}_attempts": self.options.max_attempts, f"{o}_error": problem}]

    def _collect(self, text: str, positive: str, answer: Any, kept: list[str]) -> RowError | None:
        """Add the reply's documents that pass the checks to ``kept``; return what was wrong, if anything."""
        documents = next(
            (o["documents"] for o in reversed(list(iter_json_objects(text))) if isinstance(o.get("documents"), list)),
            None,
        )
        if documents is None:
            return RowError("parse", 'no JSON object with a "documents" list was found')
        problem: RowError | None = None
        for doc in documents:
            reason = _check(doc, positive, answer, self.prompt.user)
            if reason is None and doc not in kept:
                kept.append(doc)
            problem = problem or (RowError("invalid", reason) if reason else None)
        if problem is None and len(kept) < self.options.num_neg:
            problem = RowError("parse", f"{len(kept)} of {self.options.num_neg} documents")
        return problem


def _check(doc: Any, positive: str, answer: Any, prompt: str) -> str | None:
    """Why a written document cannot be a negative, or None."""
    if not isinstance(doc, str) or (len(doc.split()) < _MIN_WORDS and len(doc) < 4 * _MIN_WORDS):  # CJK: characters
        return f"a written document is shorter than {_MIN_WORDS} words"
    if np.intersect1d(passage_hashes(doc), passage_hashes(positive)).size:
        return "a written document copies a passage of the positive"
    if answer is not None and len(normalize_answer(str(answer))) >= _MIN_ANSWER_CHARS:
        if normalize_answer(str(answer)) in normalize_answer(doc):
            return "a written document contains the answer"
    if echo := prompt_echo(doc, prompt):
        return f'a written document echoes the prompt ("{echo}")'
    return None


class _Definition(StepDefinition):
    function = staticmethod(add_written_negatives)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {
            "input_text_key": ctx.column("text", "text"),
            "input_question_key": ctx.column("question", "question"),
            "input_scenario_key": ctx.column("scenario", "scenario"),
            "answer_key": ctx.roles.get("answer"),
        }

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        return {"written_negatives": _plumbing.arguments(add_written_negatives, kwargs)["output_key"]}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(add_written_negatives, kwargs)
        reads = [
            Read("input_text_key", args["input_text_key"], "string"),
            Read("input_question_key", args["input_question_key"], "string"),
        ]
        return reads + ([Read("answer_key", args["answer_key"])] if args["answer_key"] else [])

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return WrittenNegativesStep.columns_for(self.provides(kwargs)["written_negatives"])

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.provides(kwargs)['written_negatives']}_error"

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        from .estimate import TYPICAL_QUESTION, estimate_templated

        max_chars = _plumbing.arguments(add_written_negatives, kwargs)["max_doc_chars"]

        def prompt(text: str, mean_doc: str) -> list[dict[str, Any]]:
            fields = {"question": TYPICAL_QUESTION, "scenario": TYPICAL_QUESTION, "document": text[:max_chars]}
            return WRITTEN_NEGATIVES_PROMPT.render(**fields, num_neg=1)

        return estimate_templated(llm, "written_negatives", ds, ctx, prompt)


DEFINITION = _Definition()
