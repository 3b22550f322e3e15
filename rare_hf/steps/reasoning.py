"""Step 3 (ReasonDistill): the teacher reasons over the positive and shuffled hard negatives."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, Completion, LLMRun
from ..text.answers import answers_match, is_short_answer, split_reasoning
from ..text.prompts import Prompt, reasoning_messages
from ..utils.datasets import DOC_ID, column_values
from . import _plumbing
from .base import Column, LLMStep, StepOptions
from .registry import PlanContext, Read, StepDefinition
from .row_error import RowError
from .shown_documents import document_order, reasoning_messages_for_row

if TYPE_CHECKING:
    from .estimate import StepEstimate

__all__ = ["add_reasoning", "document_order", "reasoning_messages_for_row"]


@dataclasses.dataclass(frozen=True)
class ReasoningOptions(StepOptions):
    """The options of :func:`add_reasoning` (see it for what each means)."""

    input_text_key: str = "text"
    input_question_key: str = "question"
    input_scenario_key: str = "scenario"
    input_hardneg_key: str = "hard_negatives"
    output_key: str = "reasoning"
    output_answer_key: str = "answer"
    answer_key: str | None = None
    reference_key: str | None = None
    max_attempts: int = 4
    seed: int = 0
    temperature: float | None = None
    resample_temperature: float = 0.95
    max_doc_chars: int = 20_000
    max_tokens: int | None = None
    prompt: Prompt | None = None
    prompt_language: str = "auto"
    max_doc_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}.")
        if self.answer_key is not None and self.answer_key == self.output_answer_key:
            raise ValueError(
                f"answer_key and output_answer_key are both '{self.answer_key}': the teacher's answer would "
                "overwrite the gold one. Pass output_answer_key='teacher_answer' (or another name)."
            )


def add_reasoning(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    input_text_key: str = "text",
    input_question_key: str = "question",
    input_scenario_key: str = "scenario",
    input_hardneg_key: str = "hard_negatives",
    output_key: str = "reasoning",
    output_answer_key: str = "answer",
    answer_key: str | None = None,
    reference_key: str | None = None,
    max_attempts: int = 4,
    seed: int = 0,
    temperature: float | None = None,
    resample_temperature: float = 0.95,
    max_doc_chars: int = 20_000,
    max_tokens: int | None = None,
    prompt: Prompt | None = None,
    prompt_language: str = "auto",
    max_doc_tokens: int | None = None,
    overwrite: bool = False,
    batch_size: int = 1000,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Distil the teacher's step-by-step reasoning over the positive and the hard negatives.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` with text, question, scenario and hard-negative columns.
        llm: The teacher; ``None`` builds ``LLM()`` from the environment.
        input_text_key / input_question_key / input_scenario_key / input_hardneg_key: Input columns (the
            scenario may be null in a row; the negatives column holds a list of strings per row).
        output_key: Column for the reasoning (the ``<think>`` part).
        output_answer_key: Column for the final answer (the ``<answer>`` part).
        answer_key: Column of gold answers. When given, a wrong answer is resampled (RARE's rejection
            sampling) and only correct ones are kept.
        reference_key: Column of reference answers (``add_questions(reference_answer=True)``): gold where a row has
            none and it is short (``rare_hf.answers.is_short_answer``); the ``judge`` step checks longer ones.
        max_attempts: Requests per row at most (RARE used 8 with gold answers). Replies that are cut
            off, lack a final answer or (with gold answers) are wrong are resampled.
        seed: Seeds the per-row shuffle of the documents.
        temperature: First-attempt temperature; ``None`` uses the LLM's default.
        resample_temperature: Temperature of later attempts (RARE sampled at 0.95).
        max_doc_chars: Each shown document (the positive and every negative) is cut to this many characters,
            so one oversized document cannot make a request the model's context refuses
            (``{r}_input_truncated`` says where it happened). When the teacher's context window is known
            (:class:`rare_hf.LLM` ``context_window``, or the server's own), the documents are also cut to
            equal token shares so that the prompt and the reply fit it (``{r}_input_kept``: the share shown).
        max_tokens: Completion budget per reply; default: the LLM's ``max_tokens``, else 4,096. A reply cut off
            by it is asked once more with twice the budget, unless it was looping.
        prompt: Your own :class:`rare_hf.Prompt`, with ``{question}`` and ``{documents}`` and optionally
            ``{scenario}``; it must ask for ``<think>``/``<answer>`` as the built-in one does. Its version is
            recorded per row (pass it to :func:`reasoning_messages_for_row` and :func:`rare_hf.to_sft`).
        prompt_language: ``"en"`` or ``"zh"`` for the built-in prompt, or ``"auto"``: Chinese when the
            documents are mostly Han characters.
        max_doc_tokens: Also cut each shown document to this many tokens, counted by the server's tokenizer
            (``/tokenize`` on vLLM and llama.cpp) or estimated high when it has none. (:func:`to_sft` and
            :func:`reasoning_messages_for_row` rebuild prompts cut by characters only.)
        overwrite: Replace output columns that already exist instead of raising.
        batch_size: Rows per ``Dataset.map`` batch.
        show_progress: Show a progress bar.
        return_summary: Also return the :class:`StepSummary`.

    Returns:
        The dataset with ``{r}`` and ``{output_answer_key}`` (``None`` when the row failed), ``{r}_raw``
        (the teacher's full reply), ``{r}_doc_order`` (the shown order, as indices into
        ``[positive, *negatives]``), ``{r}_positive_index`` (where the positive was shown, 0-based),
        ``{r}_attempts``, ``{r}_correct`` (``None`` without gold), ``{r}_rejected`` (the replies that were
        wrong against gold: :func:`rare_hf.to_preference` pairs them with the kept one), ``{r}_error``,
        ``{r}_input_truncated`` and ``{r}_prompt_version``,
        where ``{r}`` is ``output_key``. :func:`reasoning_messages_for_row` rebuilds the exact prompt.

    Example:
        >>> ds = rare_hf.add_reasoning(ds)                        # after add_questions, add_hard_negatives
        >>> ds[0]["reasoning"], ds[0]["answer"]
    """
    step = ReasoningStep(llm or LLM(), ReasoningOptions.from_arguments(locals()))
    return step.apply(
        ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
    )


class ReasoningStep(LLMStep):
    """The reasoning step (ReasonDistill) as an object: see :func:`add_reasoning` for the arguments."""

    name = "reasoning"
    function = "add_reasoning"
    progress_desc = "Distilling reasoning"
    default_budget = 4096
    prompt_name = "reasoning"
    prompt_placeholders = {"scenario", "question", "documents"}
    prompt_required = {"question", "documents"}

    def __init__(self, llm: LLM, options: ReasoningOptions) -> None:
        self.options = o = options
        super().__init__(llm, f"{o.output_key}_error", o.max_tokens)
        self.max_doc_tokens = o.max_doc_tokens
        self.column_of = {
            "text": o.input_text_key,
            "question": o.input_question_key,
            "scenario": o.input_scenario_key,
            "negatives": o.input_hardneg_key,
            "gold": o.answer_key,
            "reference": o.reference_key,
            "answer": o.output_answer_key,
        }
        self.reasoning_key = o.output_key
        temperature = o.temperature if o.temperature is not None else llm.default_params.get("temperature")
        self.params = o.params(llm, temperature=temperature, max_tokens=self.budget)
        self.choose_prompt(o.prompt, o.prompt_language)

    def columns(self) -> list[Column]:
        return self.columns_for(self.reasoning_key, self.column_of["answer"])

    @staticmethod
    def columns_for(r: str = "reasoning", answer: str = "answer") -> list[Column]:
        """The columns written with these output keys (``r`` is ``output_key``)."""
        string = datasets.Value("string")
        return [
            Column(r, string, "The teacher's step-by-step reasoning over the shown documents (the <think> part)."),
            Column(answer, string, "The teacher's final answer (the <answer> part)."),
            Column(f"{r}_raw", string, "The teacher's full reply."),
            Column(
                f"{r}_doc_order",
                datasets.List(datasets.Value("int32")),
                "Order in which [positive, *negatives] were shown (0 is the positive).",
            ),
            Column(
                f"{r}_positive_index", datasets.Value("int32"), "Position (0-based) at which the positive was shown."
            ),
            Column(f"{r}_attempts", datasets.Value("int32"), "Teacher requests used for the reasoning."),
            Column(
                f"{r}_correct",
                datasets.Value("bool"),
                "Whether the teacher's answer matched the gold answer (null without gold).",
            ),
            Column(
                f"{r}_rejected",
                datasets.List({"reasoning": string, "answer": string}),
                "Replies whose answer did not match the gold answer, in the order they came (preference data).",
            ),
            Column(f"{r}_error", string, "Why the row has no reasoning (null when it has)."),
            Column(
                f"{r}_input_truncated",
                datasets.Value("bool"),
                "Whether a shown document was cut (max_doc_chars, max_doc_tokens or the teacher's context window).",
            ),
            Column(
                f"{r}_input_kept",
                datasets.List(datasets.Value("float32")),
                "Share of each document's characters shown, in [positive, *negatives] order (1.0: whole).",
            ),
            Column(f"{r}_prompt_version", string, "Version of the reasoning prompt."),
        ]

    def check(self, ds: datasets.Dataset) -> None:
        keys = {"input_text_key": "text", "input_question_key": "question", "input_scenario_key": "scenario"}
        keys |= {"input_hardneg_key": "negatives", "answer_key": "gold", "reference_key": "reference"}
        _plumbing.check_reads(ds, DEFINITION.reads({argument: self.column_of[key] for argument, key in keys.items()}))

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        self.detect_language(ds, self.column_of["text"])  # the corpus language, as for the questions
        return _plumbing.with_doc_ids(ds, self.column_of["text"])

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        return [await self._row(row, run)]

    def stats(self, out: datasets.Dataset) -> dict[str, Any]:
        if not self.column_of["gold"] and not self.column_of["reference"]:
            return {}
        r = self.reasoning_key
        attempts = column_values(out, f"{r}_attempts")
        correct = column_values(out, f"{r}_correct")
        graded = [(a, c) for a, c in zip(attempts, correct) if a and c is not None]  # attempted and checked
        return {
            "with_gold": len(graded),
            "first_try_correct": sum(1 for a, c in graded if c and a == 1),
            "final_correct": sum(1 for _, c in graded if c),
        }

    async def _row(self, row: dict[str, Any], run: LLMRun) -> dict[str, Any]:
        r = self.reasoning_key
        out = {
            **row,
            r: None,
            self.column_of["answer"]: None,
            f"{r}_raw": None,
            f"{r}_doc_order": None,
            f"{r}_positive_index": None,
            f"{r}_attempts": 0,
            f"{r}_correct": None,
            f"{r}_rejected": [],
            f"{r}_error": None,
            f"{r}_input_truncated": False,
            f"{r}_input_kept": None,
            f"{r}_prompt_version": self.prompt.version,
        }
        question, text, negatives = (
            row[self.column_of["question"]],
            row[self.column_of["text"]],
            row[self.column_of["negatives"]],
        )
        skip = _skip_reason(question, text, negatives)
        if skip:
            return {**out, f"{r}_error": RowError("skipped", skip)}
        order = document_order(self.options.seed, row[DOC_ID], question, 1 + len(negatives))
        pool = [text, *negatives]
        scenario = row[self.column_of["scenario"]]

        def render(docs: list[str]) -> list[dict[str, Any]]:
            return reasoning_messages(question, scenario, [docs[i] for i in order], self.prompt)

        fit = await self.fit_window([await self.fit(d, self.options.max_doc_chars) for d in pool], render)
        out.update(
            {
                f"{r}_doc_order": order,
                f"{r}_positive_index": order.index(0),
                f"{r}_input_truncated": any(len(f) < len(d) for f, d in zip(fit.documents, pool)),
                f"{r}_input_kept": [round(len(f) / max(1, len(d)), 4) for f, d in zip(fit.documents, pool)],
            }
        )
        if fit.problem:
            return {**out, f"{r}_error": RowError("context", fit.problem)}
        gold = row[self.column_of["gold"]] if self.column_of["gold"] else None
        reference = row[self.column_of["reference"]] if self.column_of["reference"] else None
        if gold is None and isinstance(reference, str) and is_short_answer(reference):
            gold = reference
        return {**out, **await self._ask(render(fit.documents), None if gold is None else str(gold), run, fit.room)}

    async def _ask(
        self, messages: list[dict[str, Any]], gold: str | None, run: LLMRun, room: int | None
    ) -> dict[str, Any]:
        r = self.reasoning_key
        result: dict[str, Any] = {}
        rejected: list[dict[str, str]] = []  # wrong against gold: the rejected side of preference pairs
        problem = RowError("request", "no attempt")
        for attempt in range(self.options.max_attempts):
            if attempt == 0:
                params = {} if self.options.temperature is None else {"temperature": self.options.temperature}
            else:  # a resample: new sample index (not a cache hit), sampling temperature, reproducible seed
                params = {"temperature": self.options.resample_temperature, "seed": attempt}
            try:
                completion = await self.ask(messages, run, attempt, room, **params)
            except LLMRequestError as exc:
                problem = RowError("request", exc.reason)
                continue
            reasoning, answer = _reasoning_and_answer(completion)
            result = {f"{r}_raw": _raw_reply(completion), f"{r}_attempts": attempt + 1, f"{r}_rejected": rejected}
            if completion.truncated:
                problem = self.truncation_problem(completion)
            elif not answer or not reasoning:
                problem = RowError("incomplete", "the reply has no " + ("final answer" if not answer else "reasoning"))
            elif gold is not None and not answers_match(answer, gold):
                problem = RowError("wrong", f"the teacher's answer did not match the gold in {attempt + 1} attempt(s)")
                result[f"{r}_correct"] = False
                rejected.append({"reasoning": reasoning, "answer": answer})
            else:
                self.judged(run, None)
                correct = None if gold is None else True
                return {**result, r: reasoning, self.column_of["answer"]: answer, f"{r}_correct": correct}
            self.judged(run, problem)
        return {**result, f"{r}_attempts": self.options.max_attempts, f"{r}_error": problem}


def _reasoning_and_answer(completion: Completion) -> tuple[str | None, str | None]:
    """The reply's thinking and answer; a reasoning-model server sends the thinking apart from the content,
    which then holds only the answer (tagged as the prompt asks, or bare)."""
    reasoning, answer = split_reasoning(completion.text)
    if completion.reasoning is None:
        return reasoning, answer
    if "<think>" not in completion.text:
        reasoning = completion.reasoning
    return reasoning, answer or completion.text.strip() or None


def _raw_reply(completion: Completion) -> str:
    """The full reply as one text, the thinking in the ``<think>`` block the prompt asks for."""
    if completion.reasoning is None or "<think>" in completion.text:
        return completion.text
    return f"<think>{completion.reasoning}</think>\n{completion.text}"


def _skip_reason(question: Any, text: Any, negatives: Any) -> str | None:
    if not isinstance(question, str) or not question.strip():
        return "question is missing (failed upstream)"
    if not isinstance(text, str) or not text.strip():
        return "positive document is empty"
    if negatives is None:
        return "hard negatives are missing (failed upstream)"
    return None


class _Definition(StepDefinition):
    function = staticmethod(add_reasoning)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {
            "input_text_key": ctx.column("text", "text"),
            "input_question_key": ctx.column("question", "question"),
            "input_scenario_key": ctx.column("scenario", "scenario"),
            "input_hardneg_key": ctx.column("hard_negatives", "hard_negatives"),
            "answer_key": ctx.roles.get("answer"),
            "reference_key": ctx.roles.get("reference_answer"),
            "seed": ctx.options["seed"],
        }

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        args = _plumbing.arguments(add_reasoning, kwargs)
        return {"reasoning": args["output_key"], "answer_output": args["output_answer_key"]}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(add_reasoning, kwargs)
        reads = [
            Read("input_text_key", args["input_text_key"], "string"),
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_scenario_key", args["input_scenario_key"], "string"),
            Read("input_hardneg_key", args["input_hardneg_key"], "list"),
        ]
        optional = [Read(key, args[key]) for key in ("answer_key", "reference_key") if args[key] is not None]
        return reads + optional

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        keys = self.provides(kwargs)
        return ReasoningStep.columns_for(keys["reasoning"], keys["answer_output"])

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.provides(kwargs)['reasoning']}_error"

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        from .estimate import TYPICAL_QUESTION, estimate_templated

        max_chars = _plumbing.arguments(add_reasoning, kwargs)["max_doc_chars"]
        num_neg = ctx.options["num_neg"]

        def prompt(text: str, mean_doc: str) -> list[dict[str, Any]]:
            return reasoning_messages(TYPICAL_QUESTION, TYPICAL_QUESTION, [text[:max_chars], *[mean_doc] * num_neg])

        return estimate_templated(llm, "reasoning", ds, ctx, prompt)


DEFINITION = _Definition()
