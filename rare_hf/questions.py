"""Step 1 (Doc2Query): a teacher writes standalone, reasoning-intensive questions with scenarios."""

from __future__ import annotations

import time
from typing import Any

import datasets

from . import _steps
from .llm import LLM, Completion, LLMRun
from .errors import LLMRequestError
from .parsing import ParseError, parse_questions, validate_question
from .prompts import (
    QUESTION_PROMPT,
    QUESTION_REPAIR_PROMPT,
    Messages,
    question_messages,
    question_repair_messages,
)
from .summary import StepSummary

__all__ = ["add_questions"]

_RETRY_TEMPERATURE = 0.7


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
        overwrite: Replace output columns that already exist instead of raising.
        batch_size: Rows per ``Dataset.map`` batch (all rows of a batch are in flight together).
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
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}.")
    if num_questions < 1:
        raise ValueError(f"num_questions must be >= 1, got {num_questions}.")
    q = output_question_key
    outputs = [
        q,
        output_scenario_key,
        f"{q}_index",
        f"{q}_attempts",
        f"{q}_error",
        f"{q}_input_truncated",
        f"{q}_prompt_version",
    ]
    splits = ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]
    for split in splits:  # every check before the first request
        _steps.require_string_column(split, "input_key", input_key)
        _steps.free_output_columns(split, outputs, overwrite)
    llm = llm or LLM()
    step = _QuestionStep(
        llm, input_key, q, output_scenario_key, max_attempts, num_questions, temperature, max_doc_chars
    )

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        split = _steps.free_output_columns(split, outputs, overwrite)
        return step.run(split, batch_size=batch_size, show_progress=show_progress)

    return _steps.for_each_split(ds, one_split, return_summary)


class _QuestionStep:
    def __init__(
        self,
        llm: LLM,
        input_key: str,
        question_key: str,
        scenario_key: str,
        max_attempts: int,
        num_questions: int,
        temperature: float | None,
        max_doc_chars: int,
    ) -> None:
        self.llm, self.input_key, self.q, self.s = llm, input_key, question_key, scenario_key
        self.max_attempts, self.n, self.max_doc_chars = max_attempts, num_questions, max_doc_chars
        self.temperature = temperature
        self.params = {
            "model": llm.model,
            "base_url": llm.display_url,
            "input_key": input_key,
            "max_attempts": max_attempts,
            "num_questions": num_questions,
            "temperature": temperature if temperature is not None else llm.default_params.get("temperature"),
            "retry_temperature": _RETRY_TEMPERATURE,
            "max_doc_chars": max_doc_chars,
            "llm_params": llm.default_params,
            "prompt_version": QUESTION_PROMPT.version,
            "repair_prompt_version": QUESTION_REPAIR_PROMPT.version,
        }

    def run(
        self, ds: datasets.Dataset, *, batch_size: int, show_progress: bool
    ) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        run = self.llm.new_run("add_questions")
        features = datasets.Features(
            {
                **ds.features,
                _steps.DOC_ID: datasets.Value("string"),
                self.q: datasets.Value("string"),
                self.s: datasets.Value("string"),
                f"{self.q}_index": datasets.Value("int32"),
                f"{self.q}_attempts": datasets.Value("int32"),
                f"{self.q}_error": datasets.Value("string"),
                f"{self.q}_input_truncated": datasets.Value("bool"),
                f"{self.q}_prompt_version": datasets.Value("string"),
            }
        )
        progress = _steps.StepProgress("Writing questions", len(ds), run, show_progress)

        async def row_fn(row: dict[str, Any]) -> list[dict[str, Any]]:
            rows = await self._rows_for(row, run)
            error = rows[0][f"{self.q}_error"]
            progress.row_done(failed=_steps.is_failure(error))
            return rows

        try:
            out = _steps.llm_map(
                ds,
                self.llm,
                row_fn,
                features=features,
                step="add_questions",
                params=self.params,
                batch_size=batch_size,
            )
        finally:
            progress.close()
        return out, self._summary(ds, out, run, time.monotonic() - started)

    async def _rows_for(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        text = row[self.input_key]
        base = {
            **row,
            _steps.DOC_ID: row.get(_steps.DOC_ID) or _steps.doc_id_for(text),
            f"{self.q}_prompt_version": QUESTION_PROMPT.version,
            f"{self.q}_attempts": 0,
            f"{self.q}_input_truncated": False,
        }
        if not isinstance(text, str) or not text.strip():
            return [
                {**base, f"{self.q}_index": i, f"{self.q}_error": "skipped: empty or missing document"}
                for i in range(self.n)
            ]
        document = text[: self.max_doc_chars]
        pairs, attempts, problem = await self._ask(document, run)
        base.update({f"{self.q}_attempts": attempts, f"{self.q}_input_truncated": len(text) > self.max_doc_chars})
        rows = []
        for i in range(self.n):
            pair = pairs[i] if i < len(pairs) else None
            rows.append(
                {
                    **base,
                    f"{self.q}_index": i,
                    self.q: pair["question"] if pair else None,
                    self.s: pair["scenario"] if pair else None,
                    f"{self.q}_error": None if pair else problem,
                }
            )
        return rows

    async def _ask(self, document: str, run: LLMRun) -> tuple[list[dict[str, str]], int, str]:
        """Up to ``max_attempts`` requests until ``n`` valid questions; returns them, attempts, last problem."""
        first = question_messages(document, self.n)
        kept: list[dict[str, str]] = []
        previous: Completion | None = None
        problem = "no attempt"
        for attempt in range(self.max_attempts):
            messages, sample_index, params = self._plan(attempt, first, previous, problem)
            try:
                previous = await self.llm.acomplete(messages, sample_index=sample_index, run=run, **params)
            except LLMRequestError as exc:
                previous, problem = None, f"request: {exc.reason}"
                continue
            problem = self._collect(previous, document, kept)
            if len(kept) >= self.n:
                return kept[: self.n], attempt + 1, ""
        return kept, self.max_attempts, problem

    def _plan(
        self, attempt: int, first: Messages, previous: Completion | None, problem: str
    ) -> tuple[Messages, int, dict[str, Any]]:
        """What attempt ``attempt`` sends: the prompt, then a repair turn showing the teacher its unusable
        reply, then fresh resamples (new sample index and seed, higher temperature), so a deterministic
        teacher does not repeat its failure."""
        first_params = {} if self.temperature is None else {"temperature": self.temperature}
        if attempt == 0:
            return first, 0, first_params
        if attempt == 1 and previous is not None:
            detail = problem.split(": ", 1)[-1]  # the reason without its kind prefix
            return question_repair_messages(first, previous.text, detail, self.n), 0, first_params
        temperature = max(self.params["temperature"] or 0.0, _RETRY_TEMPERATURE)
        return first, attempt, {"temperature": temperature, "seed": attempt}

    def _collect(self, completion: Completion, document: str, kept: list[dict[str, str]]) -> str:
        """Add the reply's valid, new questions to ``kept``; return what was wrong with the reply, if anything."""
        if completion.truncated:
            return "truncated: the reply was cut off (finish_reason=length); raise max_tokens"
        try:
            pairs = parse_questions(completion.text, self.n)
        except ParseError as exc:
            return f"parse: {exc}"
        problem = ""
        seen = {pair["question"] for pair in kept}
        for pair in pairs:
            reason = validate_question(pair["question"], pair["scenario"], document)
            if reason:
                problem = problem or f"invalid: {reason}"
            elif pair["question"] not in seen:
                kept.append(pair)
                seen.add(pair["question"])
        if not problem and len(kept) < self.n:
            problem = f"parse: the reply has {len(kept)} usable question(s), {self.n} were asked for"
        return problem

    def _summary(self, ds_in: datasets.Dataset, out: datasets.Dataset, run: LLMRun, seconds: float) -> StepSummary:
        errors = _steps.column_values(out, f"{self.q}_error")
        truncated = sum(_steps.column_values(out, f"{self.q}_input_truncated"))
        return _steps.llm_step_summary(
            "questions",
            len(ds_in),
            errors,
            run,
            seconds,
            self.params,
            QUESTION_PROMPT.version,
            {"documents_truncated": truncated},
        )
