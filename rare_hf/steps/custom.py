"""Your own LLM step: a prompt over some columns, a parser of the reply, and the columns it writes.

A :class:`PromptStep` runs like the built-in steps — resumable from the response cache, with a progress bar,
failures recorded per row with their reason and counted, a dry-run estimate, and its columns and prompt in the
dataset card — and it can be passed to ``build_rare_dataset(steps=[…])`` between them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, LLMRun
from ..text.prompts import Prompt
from . import _plumbing
from .base import Column, LLMStep
from .estimate import TYPICAL_QUESTION, StepEstimate, estimate_requests, estimate_templated
from .registry import PlanContext, Read, StepDefinition, StepSpec
from .row_error import RowError

__all__ = ["PromptStep"]

# A placeholder with no column of its own name reads the column that holds this kind of data in the run.
_PLACEHOLDER_ROLES = {"document": "text", "text": "text", "question": "question", "scenario": "scenario"}
_DEFAULT_COLUMNS = {"document": "text"}  # outside a pipeline, as the built-in steps' input_key="text"


class PromptStep(StepDefinition):
    """An LLM step of your own: one request per row with ``prompt`` filled from the row's columns.

    Args:
        name: The step's name (summaries, the card, ``{name}_error`` and the other bookkeeping columns).
        prompt: A :class:`rare_hf.Prompt`, or a user template string; its ``{placeholders}`` are columns.
        outputs: ``{column: one-line description}`` of the string columns ``parse`` returns.
        parse: Turns the reply's text into ``{column: value}`` for every output; raise ``ValueError`` with the
            reason when the reply is unusable (the row is asked again, up to ``max_attempts``, then fails with
            ``parse: <reason>``). Default: the whole reply, stripped, as the one output column.
        inputs: ``{placeholder: column}`` where a placeholder's column has another name. Otherwise a
            placeholder reads the column of its own name (``{document}``: ``text``), or in a pipeline the column
            holding that kind of data (``{document}`` the documents, ``{question}`` the questions).
        max_attempts: Requests per row at most (later ones resample with another seed).
        max_tokens: Completion budget per reply (the LLM's ``max_tokens`` first).
        temperature: Sampling temperature (default: the LLM's).
        drops_failed: In :func:`rare_hf.build_rare_dataset`, drop rows this step fails (default: keep them).
        completion_tokens: The reply size the dry run assumes.

    Example:
        >>> summaries = rare_hf.PromptStep(
        ...     "summary", "Summarise in one sentence:\\n\\n{document}",
        ...     outputs={"summary": "A one-sentence summary of the document."})
        >>> ds = summaries(docs, llm)                       # on its own, like add_questions
        >>> ds = rare_hf.build_rare_dataset(docs, llm, steps=["questions", summaries, "hard_negatives", "reasoning"])
    """

    def __init__(
        self,
        name: str,
        prompt: Prompt | str,
        *,
        outputs: dict[str, str],
        parse: Callable[[str], dict[str, Any]] | None = None,
        inputs: dict[str, str] | None = None,
        max_attempts: int = 2,
        max_tokens: int | None = None,
        temperature: float | None = None,
        drops_failed: bool = False,
        completion_tokens: int = 200,
    ) -> None:
        if not name.isidentifier():
            raise ValueError(f"name: expected an identifier-like step name (letters, digits, _), got {name!r}.")
        if not outputs:
            raise ValueError("outputs: give at least one output column, e.g. {'summary': 'What it holds.'}.")
        if parse is None and len(outputs) > 1:
            raise ValueError(f"parse: {len(outputs)} outputs {list(outputs)} need a parse function to fill them.")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}.")
        self.prompt = Prompt(system="", user=prompt, name=name) if isinstance(prompt, str) else prompt
        placeholders = self.prompt.placeholders()
        self.prompt.check("prompt", allowed=placeholders, required=set())  # valid format syntax
        unknown = sorted(set(inputs or {}) - placeholders)
        if unknown:
            raise ValueError(f"inputs: {unknown} are not placeholders of the prompt; it has {sorted(placeholders)}.")
        self.name, self.outputs, self.inputs = name, dict(outputs), dict(inputs or {})
        self.parse = parse or (lambda reply: {next(iter(outputs)): reply.strip()})
        self.options = {"max_attempts": max_attempts, "max_tokens": max_tokens, "temperature": temperature}
        self.spec = StepSpec(
            name,
            f"user step {name}",
            drops_failed=drops_failed,
            completion_tokens=completion_tokens,
            definition=self,
        )

    def __repr__(self) -> str:
        return f"PromptStep({self.name!r}, outputs={list(self.outputs)})"

    def __call__(
        self,
        ds: datasets.Dataset | datasets.DatasetDict,
        llm: LLM | None = None,
        *,
        inputs: dict[str, str] | None = None,
        overwrite: bool = False,
        batch_size: int = 1000,
        show_progress: bool = True,
        return_summary: bool = False,
    ) -> Any:
        """Run the step on ``ds`` (every split); ``inputs`` adds to the placeholder-to-column map."""
        runner = _PromptRunner(self, llm or LLM(), self._columns_of({**self.inputs, **(inputs or {})}))
        return runner.apply(
            ds, overwrite=overwrite, batch_size=batch_size, show_progress=show_progress, return_summary=return_summary
        )

    @property
    def function(self) -> Callable[..., Any]:  # type: ignore[override]
        return self

    # -- the registry's questions ------------------------------------------------------------------------
    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        roles = {p: _PLACEHOLDER_ROLES.get(p, p) for p in self.prompt.placeholders()}
        columns = {p: ctx.roles[role] for p, role in roles.items() if ctx.roles.get(role)}
        return {"inputs": {**columns, **self.inputs}}

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        return {column: column for column in self.outputs}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        columns = self._columns_of(kwargs.get("inputs") or self.inputs)
        return [Read(f"inputs['{p}']", column) for p, column in sorted(columns.items())]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        string = datasets.Value("string")
        n = self.name
        return [
            *(Column(column, string, doc) for column, doc in self.outputs.items()),
            Column(f"{n}_attempts", datasets.Value("int32"), f"Teacher requests used by the {n} step."),
            Column(f"{n}_error", string, f"Why the {n} step has no result for the row (null when it has)."),
            Column(f"{n}_prompt_version", string, f"Version of the {n} prompt."),
        ]

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.name}_error"

    def estimate(self, ds: datasets.Dataset, llm: LLM, kwargs: dict[str, Any], ctx: PlanContext) -> StepEstimate:
        """Exact (with cache look-ups) when every column it reads is in the input; else from the template."""
        columns = self._columns_of(kwargs.get("inputs") or self.inputs)
        completion = self.spec.completion_tokens
        if all(column in ds.column_names for column in columns.values()):
            runner = _PromptRunner(self, llm, columns)
            rows = ds.select_columns(sorted(set(columns.values()))).to_list()
            requests = [runner.request(row, 0) for row in rows]
            usable = [r for r in requests if r is not None]
            return estimate_requests(llm, self.name, usable, completion_tokens=completion)

        def prompt(text: str, mean_doc: str) -> list[dict[str, Any]]:
            fields = {p: text if columns[p] == ctx.column("text", "text") else TYPICAL_QUESTION for p in columns}
            return self.prompt.render(**fields)

        return estimate_templated(llm, self.name, ds, ctx, prompt, completion_tokens=completion)

    def _columns_of(self, inputs: dict[str, str]) -> dict[str, str]:
        return {p: inputs.get(p, _DEFAULT_COLUMNS.get(p, p)) for p in self.prompt.placeholders()}


class _PromptRunner(LLMStep):
    """Runs a :class:`PromptStep` with the machinery every LLM step shares."""

    progress_desc = "Running a user step"
    default_budget = 1024
    prompt_placeholders: set[str] = set()
    prompt_required: set[str] = set()

    def __init__(self, step: PromptStep, llm: LLM, columns: dict[str, str]) -> None:
        self.name = self.function = step.name  # type: ignore[misc]
        self.progress_desc = f"Running {step.name}"  # type: ignore[misc]
        super().__init__(llm, f"{step.name}_error", step.options["max_tokens"])
        self.step, self.columns_read = step, columns
        self.prompt, self.prompt_version = step.prompt, str(step.prompt.version)
        self.params = {
            "model": llm.model,
            "base_url": llm.display_url,
            "inputs": columns,
            "outputs": list(step.outputs),
            **step.options,
            "max_tokens": self.budget,
            "prompt_version": self.prompt_version,
            "prompt": step.prompt.to_dict(),
            "llm_params": llm.default_params,
        }

    def columns(self) -> list[Column]:
        return self.step.columns({})

    def check(self, ds: datasets.Dataset) -> None:
        _plumbing.check_reads(ds, self.step.reads({"inputs": self.columns_read}))

    def request(self, row: dict[str, Any], attempt: int) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """The messages and parameters of a row's request (``None`` when an input is empty)."""
        values = {p: _as_text(row.get(column)) for p, column in self.columns_read.items()}
        if any(not v for v in values.values()):
            return None
        params = {"max_tokens": self.budget, **self.sampling(attempt, self.step.options["temperature"])}
        return self.prompt.render(**values), params

    async def rows(self, row: dict[str, Any], run: LLMRun) -> list[dict[str, Any]]:
        n = self.step.name
        out = {**row, **dict.fromkeys(self.step.outputs), f"{n}_prompt_version": self.prompt_version}
        out |= {f"{n}_attempts": 0, f"{n}_error": None}
        problem = RowError("skipped", "an input column is empty (failed upstream?)")
        for attempt in range(self.step.options["max_attempts"]):
            request = self.request(row, attempt)
            if request is None:
                break
            messages, params = request
            out[f"{n}_attempts"] = attempt + 1
            try:
                completion = await self.llm.acomplete(messages, sample_index=attempt, run=run, **params)
            except LLMRequestError as exc:
                problem = RowError("request", exc.reason)
                continue
            if completion.truncated:
                problem = self.judged(run, self.truncation_problem(completion))
                continue
            parsed = self._parse(completion.text)
            if self.judged(run, parsed if isinstance(parsed, RowError) else None) is None:
                return [{**out, **parsed}]
            problem = parsed
        return [{**out, f"{n}_error": problem}]

    def _parse(self, text: str) -> dict[str, str] | RowError:
        try:
            fields = self.step.parse(text)
        except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return RowError("parse", str(exc))
        missing = [c for c in self.step.outputs if not isinstance((fields or {}).get(c), str) or not fields[c]]
        if missing:
            return RowError("parse", f"the parser gave no text for {missing}")
        return {c: fields[c] for c in self.step.outputs}


def _as_text(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        return "\n\n".join(f"[{i + 1}] {v}" for i, v in enumerate(value))  # documents, numbered
    return json.dumps(value, ensure_ascii=False, default=str)
