"""Step 1 (Doc2Query): a teacher writes standalone, reasoning-intensive questions with scenarios."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, Completion, LLMRun
from ..text.parsing import ParseError, is_near_duplicate, parse_questions, validate_question
from ..text.prompts import (
    PROMPT_SETS,
    Messages,
    Prompt,
    question_messages,
    question_repair_messages,
    with_reference_answer,
)
from ..utils.datasets import DOC_ID, column_values, doc_id_for, doc_ids
from . import _plumbing
from ._question_format import KEPT_DOC, prompt_text, response_format
from .base import RESAMPLE_TEMPERATURE, Column, LLMStep, StepOptions
from .registry import PlanContext, Read, StepDefinition
from .row_error import RowError

if TYPE_CHECKING:
    from .estimate import StepEstimate

__all__ = ["add_questions", "REFERENCE_ANSWER"]

REFERENCE_ANSWER = "reference_answer"


@dataclasses.dataclass(frozen=True)
class QuestionOptions(StepOptions):
    """The options of :func:`add_questions` (see it for what each means)."""

    input_key: str = "text"
    output_question_key: str = "question"
    output_scenario_key: str = "scenario"
    max_attempts: int = 3
    num_questions: int = 1
    temperature: float | None = None
    max_doc_chars: int = 20_000
    max_tokens: int | None = None
    prompt: Prompt | None = None
    prompt_language: str = "auto"
    structured: str = "auto"
    query_length: str = "short"
    max_doc_tokens: int | None = None
    reference_answer: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}.")
        if self.num_questions < 1:
            raise ValueError(f"num_questions must be >= 1, got {self.num_questions}.")
        if self.query_length not in ("short", "long", "varied"):
            raise ValueError(f"query_length: expected 'short', 'long' or 'varied', got {self.query_length!r}.")


def add_questions(
    ds: datasets.Dataset | datasets.DatasetDict,
    llm: LLM | None = None,
    *,
    input_key: str = "text",
    output_question_key: str = "question",
    output_scenario_key: str = "scenario",
    max_attempts: int = 3,
    num_questions: int = 1,
    temperature: float | None = None,
    max_doc_chars: int = 20_000,
    max_tokens: int | None = None,
    prompt: Prompt | None = None,
    prompt_language: str = "auto",
    structured: str = "auto",
    query_length: str = "short",
    max_doc_tokens: int | None = None,
    reference_answer: bool = False,
    overwrite: bool = False,
    batch_size: int = 1000,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Write ``num_questions`` hard, standalone questions (each with a scenario) per document.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` (every split is processed).
        llm: The teacher; ``None`` builds ``LLM()`` from the environment (``RARE_HF_MODEL``,
            ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``).
        input_key: Column holding the documents.
        output_question_key / output_scenario_key: Columns to write.
        max_attempts: Requests per document at most. The 2nd attempt shows the teacher its unusable reply
            and asks for the JSON only; later ones resample at a higher temperature.
        num_questions: Questions per document; each becomes its own row (``{output_question_key}_index``).
        temperature: First-attempt temperature; ``None`` uses the LLM's default.
        max_doc_chars: Longer documents are cut to this many characters (``{output_question_key}_input_truncated``).
        max_tokens: Completion budget per reply; default: the LLM's ``max_tokens``, else 1,024. A reply cut off
            by it is asked once more with twice the budget, unless it was looping.
        prompt: Your own :class:`rare_hf.Prompt`, with ``{document}`` and optionally ``{num_questions}``; it must
            ask for the JSON shape the built-in prompt asks for. Its version is recorded per row.
        prompt_language: ``"en"`` or ``"zh"`` for the built-in prompt set (and the repair turn), or ``"auto"``:
            Chinese when the documents are mostly Han characters.
        structured: ``"json_schema"``: send a JSON schema (``response_format``) whose first field is the
            teacher's reasoning and whose second is the questions, so a server with constrained decoding
            (OpenAI, vLLM, SGLang, llama.cpp, Ollama) can only answer in shape. ``"auto"`` (default): the same,
            unless the server rejects the parameter (HTTP 400/422) on the run's first request; then the run
            parses free text, and the summary and card say so. ``"off"``: free text only.
        query_length: ``"short"``: a scenario of a few sentences; ``"long"``: a detailed scenario of 300 to
            2,000 words (ReasonIR's varied-length queries); ``"varied"``: half of the documents each, chosen by
            ``doc_id``. Recorded per row in ``{output_question_key}_length``; long queries get a 4,096-token
            default budget.
        max_doc_tokens: Also cut each document to this many tokens, counted by the server's tokenizer
            (``/tokenize`` on vLLM and llama.cpp) or estimated high (4 characters per ASCII token, one per
            other character) when it has none; the summary says which.
        reference_answer: Also ask for each question's short answer, grounded in the document, into
            ``reference_answer``: :func:`rare_hf.build_rare_dataset` then verifies the distilled answer against it
            (short answers by matching, with resampling, as against gold; free text by the ``judge`` step).
        overwrite: Replace output columns that already exist instead of raising.
        batch_size: Rows per written ``Dataset.map`` batch (rows stay in flight across batches).
        show_progress: Show a progress bar.
        return_summary: Also return the :class:`StepSummary`.

    Returns:
        The dataset with, per row: the question and scenario (``None`` when the row failed),
        ``doc_id`` (added from the text if absent), ``{q}_index``, ``{q}_attempts``, ``{q}_error`` (why the
        row has no question, else ``None``), ``{q}_input_truncated`` and ``{q}_prompt_version``, where
        ``{q}`` is ``output_question_key``. Row order and every input column are kept.

    Example:
        >>> ds = datasets.Dataset.from_dict({"text": documents})
        >>> ds = rare_hf.add_questions(ds)              # teacher from the environment
        >>> ds[0]["question"], ds[0]["scenario"]
    """
    step = QuestionStep(llm or LLM(), QuestionOptions.from_arguments(locals()))
    return step.apply(
        ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
    )


class QuestionStep(LLMStep):
    """The questions step (Doc2Query) as an object: see :func:`add_questions` for the arguments."""

    name = "questions"
    function = "add_questions"
    progress_desc = "Writing questions"
    default_budget = 1024
    prompt_name = "questions"
    prompt_placeholders = {"document", "num_questions"}
    prompt_required = {"document"}

    def __init__(self, llm: LLM, options: QuestionOptions) -> None:
        self.options = o = options
        if o.query_length != "short":
            self.default_budget = 4096  # a 2,000-word scenario is ~2,700 tokens before any reasoning
        super().__init__(llm, f"{o.output_question_key}_error", o.max_tokens, o.structured)
        self.question_key, self.scenario_key, self.max_doc_tokens = (
            o.output_question_key,
            o.output_scenario_key,
            o.max_doc_tokens,
        )
        temperature = o.temperature if o.temperature is not None else llm.default_params.get("temperature")
        self.params = o.params(
            llm, temperature=temperature, retry_temperature=RESAMPLE_TEMPERATURE, max_tokens=self.budget
        )
        self.reference = o.reference_answer
        self.choose_prompt(o.prompt, o.prompt_language)

    def response_format(self) -> dict[str, Any]:
        return response_format(self.options.reference_answer)

    def use_language(self, language: str) -> None:
        super().use_language(language)  # a custom prompt stays; its repair turn follows the language
        self.repair_prompt = PROMPT_SETS[language]["questions-repair"]
        self.long_prompt = self.custom_prompt or PROMPT_SETS[language]["questions-long"]
        self.params["long_prompt_version"] = self.long_prompt.version
        names = {False: "questions-json", True: "questions-long-json"}
        self.json_prompts = {long: self.custom_prompt or PROMPT_SETS[language][n] for long, n in names.items()}
        json_versions = [p.version for p in self.json_prompts.values()]
        self.params["json_prompt_versions"] = json_versions if self.structured != "off" else None
        self.prompt_text = prompt_text(self.prompt, self.repair_prompt, *self.json_prompts.values())
        self.params["repair_prompt_version"] = self.repair_prompt.version

    def run_prompt_version(self) -> str:
        return self.prompt_for(False).version

    def prompt_for(self, long: bool) -> Prompt:
        """A first request's prompt; with the schema sent, one describing the reply in words (custom: as written);
        with ``reference_answer``, asking for the answers too."""
        if self.structured != "off" and self.structured_mode != "off":
            prompt = self.json_prompts[long]
        else:
            prompt = self.long_prompt if long else self.prompt
        return with_reference_answer(prompt, self.params["prompt_language"]) if self.reference else prompt

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        self.detect_language(ds, self.options.input_key)
        return _plumbing.with_doc_ids(ds, self.options.input_key)  # the input's own ids where it has them

    def columns(self) -> list[Column]:
        return self.columns_for(self.question_key, self.scenario_key, self.reference)

    @staticmethod
    def columns_for(q: str = "question", scenario: str = "scenario", reference: bool = False) -> list[Column]:
        """The columns written with these output keys (``q`` is ``output_question_key``)."""
        string = datasets.Value("string")
        answer = [Column(REFERENCE_ANSWER, string, "The teacher's short answer to the question, from the document.")]
        return [
            *(answer if reference else []),
            Column(DOC_ID, string, "Source document id: the input's doc_id or unique id, else a hash of its text."),
            Column(q, string, "A standalone, reasoning-intensive question written by the teacher."),
            Column(scenario, string, "The scenario (situation and constraints) the question is set in."),
            Column(f"{q}_index", datasets.Value("int32"), "Which of the document's questions this row holds."),
            Column(f"{q}_attempts", datasets.Value("int32"), "Teacher requests used to obtain the question."),
            Column(f"{q}_error", string, "Why the row has no question (null when it has)."),
            Column(f"{q}_input_truncated", datasets.Value("bool"), "Whether the document was cut (see *_input_kept)."),
            Column(f"{q}_input_kept", datasets.Value("float32"), KEPT_DOC),
            Column(f"{q}_prompt_version", string, "Version of the question prompt."),
            Column(f"{q}_length", string, "short: a scenario of a few sentences; long: 300 to 2,000 words."),
        ]

    def check(self, ds: datasets.Dataset) -> None:
        _plumbing.check_reads(ds, DEFINITION.reads({"input_key": self.options.input_key}))

    def stats(self, out: datasets.Dataset) -> dict[str, Any]:
        return {"documents_truncated": sum(map(bool, column_values(out, f"{self.question_key}_input_truncated")))}

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        text = row[self.options.input_key]
        doc_id = doc_id_for(text) if row.get(DOC_ID) is None else str(row[DOC_ID])
        long = self._is_long(doc_id)
        prompt = self.prompt_for(long)
        q, n = self.question_key, self.options.num_questions
        base = {
            **row,
            DOC_ID: doc_id,
            f"{q}_prompt_version": prompt.version,
            f"{q}_length": "long" if long else "short",
            f"{q}_attempts": 0,
            f"{q}_input_truncated": False,
            f"{q}_input_kept": None,
            **({REFERENCE_ANSWER: None} if self.reference else {}),
        }
        if not isinstance(text, str) or not text.strip():
            return self._failed(base, RowError("skipped", "empty or missing document"))
        fit = await self.fit_window(
            [await self.fit(text, self.options.max_doc_chars)], lambda docs: question_messages(docs[0], n, prompt)
        )
        document = fit.documents[0]
        base |= {
            f"{q}_input_truncated": len(document) < len(text),
            f"{q}_input_kept": round(len(document) / len(text), 4),
        }
        if fit.problem:
            return self._failed(base, RowError("context", fit.problem))
        pairs, attempts, problem = await self._ask(document, run, long, prompt, fit.room)
        base[f"{q}_attempts"] = attempts
        return [
            {
                **base,
                f"{q}_index": i,
                q: pairs[i]["question"] if i < len(pairs) else None,
                self.scenario_key: pairs[i]["scenario"] if i < len(pairs) else None,
                **({REFERENCE_ANSWER: pairs[i].get("answer") if i < len(pairs) else None} if self.reference else {}),
                f"{q}_error": None if i < len(pairs) else problem,
            }
            for i in range(n)
        ]

    def _failed(self, base: dict[str, Any], problem: RowError) -> list[dict[str, Any]]:
        q = self.question_key
        return [{**base, f"{q}_index": i, f"{q}_error": problem} for i in range(self.options.num_questions)]

    def first_request(self, text: str, doc_id: str) -> tuple[Messages, dict[str, Any]]:
        """The messages and parameters of a document's first request (what a dry run looks up in the cache)."""
        prompt = self.prompt_for(self._is_long(doc_id))
        messages, _, params = self._plan(
            0, question_messages(text[: self.options.max_doc_chars], self.options.num_questions, prompt), None, ""
        )
        structured = {"response_format": self.response_format()} if self.structured != "off" else {}
        return messages, {**params, "max_tokens": self.budget, **structured}

    def _is_long(self, doc_id: str) -> bool:
        """Whether this document gets a long query (``"varied"``: by its id, so reruns choose alike)."""
        if self.options.query_length == "varied":
            return hashlib.sha1(doc_id.encode()).digest()[0] % 2 == 1
        return self.options.query_length == "long"

    async def _ask(
        self, document: str, run: LLMRun, long: bool, prompt: Prompt, room: int | None
    ) -> tuple[list[dict[str, str]], int, RowError | None]:
        """Up to ``max_attempts`` requests until ``n`` valid questions; returns them, attempts, last problem."""
        first = question_messages(document, self.options.num_questions, prompt)
        kept: list[dict[str, str]] = []
        previous: Completion | None = None
        problem: RowError | None = RowError("request", "no attempt")
        for attempt in range(self.options.max_attempts):
            messages, sample_index, params = self._plan(attempt, first, previous, problem)
            try:
                previous = await self.ask(messages, run, sample_index, room, **params)
            except LLMRequestError as exc:
                previous, problem = None, RowError("request", exc.reason)
                continue
            problem = self.judged(run, self._collect(previous, document, kept, long))
            if problem is None:
                return kept[: self.options.num_questions], attempt + 1, None
        return kept, self.options.max_attempts, problem

    def _plan(
        self, attempt: int, first: Messages, previous: Completion | None, problem: RowError | None
    ) -> tuple[Messages, int, dict[str, Any]]:
        """What attempt ``attempt`` sends: the prompt, then a repair turn showing the teacher its unusable
        reply, then fresh resamples (new sample index and seed, higher temperature), so a deterministic
        teacher does not repeat its failure."""
        first_params = self.sampling(0, self.options.temperature)
        if attempt == 0:
            return first, 0, first_params
        if attempt == 1 and previous is not None:
            detail = problem.detail if problem else ""
            repair = question_repair_messages(
                first, previous.text, detail, self.options.num_questions, self.repair_prompt
            )
            return repair, 0, first_params
        return first, attempt, self.sampling(attempt, self.params["temperature"])

    def _collect(
        self, completion: Completion, document: str, kept: list[dict[str, str]], long: bool
    ) -> RowError | None:
        """Add the reply's valid, new questions to ``kept``; return what was wrong with the reply, if anything."""
        if completion.truncated:
            return self.truncation_problem(completion)
        try:
            pairs = parse_questions(completion.text, self.options.num_questions)
        except ParseError as exc:
            return RowError("parse", str(exc))
        problem: RowError | None = None
        for pair in pairs:
            reason = validate_question(pair["question"], pair["scenario"], document, self.prompt_text, long=long)
            if not reason and self.reference and "answer" not in pair:
                reason = 'no reference answer (an "answer" field in each item)'
            if not reason and is_near_duplicate(pair["question"], [k["question"] for k in kept]):
                reason = "a near-duplicate of another question of this document"
            if reason:
                problem = problem or RowError("invalid", reason)
            else:
                kept.append(pair)
        if not problem and len(kept) < self.options.num_questions:
            wanted = self.options.num_questions
            problem = RowError("parse", f"the reply has {len(kept)} usable question(s), {wanted} were asked for")
        return problem


class _Definition(StepDefinition):
    function = staticmethod(add_questions)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {"input_key": ctx.column("text", "text"), "num_questions": ctx.options["num_questions"]}

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        args = _plumbing.arguments(add_questions, kwargs)
        roles = {"question": args["output_question_key"], "scenario": args["output_scenario_key"]}
        return roles | ({"reference_answer": REFERENCE_ANSWER} if args["reference_answer"] else {})

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        return [Read("input_key", _plumbing.arguments(add_questions, kwargs)["input_key"], "string")]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        keys = self.provides(kwargs)
        return QuestionStep.columns_for(keys["question"], keys["scenario"], "reference_answer" in keys)

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.provides(kwargs)['question']}_error"

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        """Exact: every document's first request is built as the run will build it and looked up in the cache."""
        from .estimate import estimate_requests

        args = _plumbing.arguments(add_questions, kwargs)
        step = QuestionStep(llm, QuestionOptions.from_arguments(args))
        step.detect_language(ds, args["input_key"])  # the prompt set the run will use, so the lookups match
        texts = zip(column_values(ds, args["input_key"]), doc_ids(ds, args["input_key"]))
        requests = [step.first_request(t, i) for t, i in texts if isinstance(t, str) and t.strip()]
        return estimate_requests(llm, "questions", requests, replies_per_request=args["num_questions"])


DEFINITION = _Definition()
