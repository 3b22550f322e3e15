"""A step is one object: its input checks, its output columns (name, type, the doc the card shows), its
fingerprint, and a per-row coroutine. The public functions (``add_questions``, ``add_reasoning``), the
pipeline, the CLI, the DataFlow operators and the card are thin wrappers over these objects."""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import datasets

from ..errors import LLMRequestError
from ..teacher.client import LLM, LLMRun
from ..teacher.replies import Completion, is_repetitive, refused_parameter
from ..text.prompts import PROMPT_SETS, Prompt, resolve_prompt_language
from ..utils.datasets import DOC_ID
from . import _plumbing
from .row_error import RowError, Tally, dropped
from .runner import stream_map
from .summary import StepSummary
from .window import Fit, cut_to_tokens, fit_documents

Row = dict[str, Any]
Messages = list[dict[str, Any]]
logger = logging.getLogger(__name__)

# Retries after an unusable reply sample afresh at least this hot, with the attempt as seed.
RESAMPLE_TEMPERATURE = 0.7


@dataclasses.dataclass(frozen=True)
class Column:
    """An output column: its name, its ``datasets`` type and the one-line doc the dataset card shows."""

    name: str
    feature: Any
    doc: str


class StepOptions:
    """Base of a step's options: a frozen dataclass whose fields are the public function's keyword arguments,
    with the same names and defaults (``tests/test_steps.py`` holds them to it). The function builds it from its
    own arguments and the step object reads it; ``params`` is what the summary and the card record."""

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> Any:
        """The options among a function's ``locals()``."""
        return cls(**{f.name: arguments[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]

    def params(self, llm: LLM, **resolved: Any) -> dict[str, Any]:
        """What determines the output, to record and fingerprint: the teacher, every option (a custom prompt
        is recorded by :meth:`LLMStep.use_language`), and values resolved from the LLM's defaults."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "prompt"}  # type: ignore[arg-type]
        return {
            "model": llm.model,
            "base_url": llm.display_url,
            **options,
            **resolved,
            "llm_params": llm.default_params,
        }


def column_docs(columns: list[Column]) -> dict[str, str]:
    return {c.name: c.doc for c in columns}


class LLMStep(abc.ABC):
    """A step that asks the teacher something per row. Subclasses say what; :meth:`apply` does the rest."""

    name: ClassVar[str]  # the summary's step name
    function: ClassVar[str]  # the public function, for messages and the fingerprint
    progress_desc: ClassVar[str]
    prompt_version: str

    default_budget: ClassVar[int]  # completion tokens a reply of this step needs, with room to spare
    prompt_name: ClassVar[str]  # its prompt in each language's set of PROMPT_SETS
    prompt_placeholders: ClassVar[set[str]]  # what a custom prompt may use
    prompt_required: ClassVar[set[str]]  # and must use
    max_doc_tokens: int | None = None  # a token budget per shown document (steps that show documents set it)

    def __init__(self, llm: LLM, error_column: str, max_tokens: int | None = None, structured: str = "off") -> None:
        if structured not in ("auto", "json_schema", "off"):
            raise ValueError(f"structured: expected 'auto', 'json_schema' or 'off', got {structured!r}.")
        self.llm = llm
        self.error_column = error_column
        self.params: dict[str, Any] = {}
        self.structured = structured
        # "json_schema" once a reply came back in the format; "off" when off, or when "auto" saw it refused.
        self.structured_mode: str | None = None if structured == "auto" else structured
        self.structured_fallback = ""
        # The step's own argument, else the LLM's max_tokens, else the step's default: never unbounded, or a
        # looping model generates until the server's context is full.
        self.budget: int = max_tokens or llm.default_params.get("max_tokens") or self.default_budget
        self.window_cuts = 0  # rows whose documents were cut to fit the server's context window

    # -- what a subclass says --------------------------------------------------------------------------
    @abc.abstractmethod
    def columns(self) -> list[Column]:
        """The columns this step writes (``doc_id`` included when it adds it)."""

    @abc.abstractmethod
    def check(self, ds: datasets.Dataset) -> None:
        """Raise a one-line ``ValueError`` naming the argument and column when an input is unusable."""

    @abc.abstractmethod
    async def rows(self, row: Row, run: LLMRun) -> list[Row]:
        """The output rows of one input row; a row's failure is written in its error column, never raised."""

    def prepare(self, ds: datasets.Dataset) -> datasets.Dataset:
        """Last changes to a split before it runs (e.g. adding ``doc_id``)."""
        return ds

    def stats(self, out: datasets.Dataset) -> dict[str, Any]:
        return {}

    # -- shared ---------------------------------------------------------------------------------------------
    def choose_prompt(self, prompt: Prompt | None, language: str) -> None:
        """Check a custom prompt (before any request) and take the prompt set of ``language`` for now;
        :meth:`detect_language` settles ``"auto"`` once the step sees its data."""
        if prompt is not None:
            prompt.check("prompt", allowed=self.prompt_placeholders, required=self.prompt_required)
            prompt = dataclasses.replace(prompt, name=self.prompt_name)  # its version was set from its text
        self.custom_prompt, self.language = prompt, language
        self.use_language(resolve_prompt_language(language, []))

    def use_language(self, language: str) -> None:
        self.prompt = self.custom_prompt or PROMPT_SETS[language][self.prompt_name]
        self.prompt_version = self.prompt.version
        self.params |= {
            "prompt_language": language,
            "prompt_version": self.prompt.version,
            "prompt": self.prompt.to_dict() if self.custom_prompt else None,
        }

    def detect_language(self, ds: datasets.Dataset, column: str) -> None:
        sample = ds.select(range(0, len(ds), max(1, len(ds) // 500)))[column] if len(ds) else []
        self.use_language(resolve_prompt_language(self.language, sample))

    async def fit(self, text: str, max_chars: int) -> str:
        """``text`` cut to ``max_chars`` characters and, with ``max_doc_tokens``, to that many tokens as the
        server's tokenizer counts them (estimated high when it has none)."""
        text = text[:max_chars]
        if self.max_doc_tokens is None:
            return text
        return (await cut_to_tokens(self.llm, text, self.max_doc_tokens))[0]

    async def fit_window(self, documents: list[str], render: Callable[[list[str]], Messages]) -> Fit:
        """``documents`` (already :meth:`fit`) cut so the prompt ``render`` makes of them and the reply fit the
        server's context window; counted for the summary."""
        fitted = await fit_documents(self.llm, documents, render, self.budget)
        self.window_cuts += fitted.cut
        return fitted

    def run_prompt_version(self) -> str:
        """The prompt version the summary names (the rows name each their own)."""
        return self.prompt_version

    def response_format(self) -> dict[str, Any] | None:
        """The ``response_format`` this step's replies follow when the server supports it (None: free text)."""
        return None

    async def ask(
        self, messages: Messages, run: LLMRun, sample_index: int, room: int | None = None, **params: Any
    ) -> Completion:
        """One request within the budget (and the ``room`` the context window leaves), in the step's structured
        format where the server takes it. A reply cut off by the budget, not by a loop, is asked once more with
        twice the budget where the window has room; a looping reply is not (more room only buys more loop)."""
        room = room or 2 * self.budget
        budget = min(self.budget, room)
        completion = await self._send(messages, run, sample_index, params, budget)
        if completion.truncated and budget < room and not is_repetitive((completion.reasoning or "") + completion.text):
            completion = await self._send(messages, run, sample_index, params, min(2 * self.budget, room))
        return completion

    async def _send(
        self, messages: list[dict[str, Any]], run: LLMRun, sample_index: int, params: dict[str, Any], budget: int
    ) -> Completion:
        """With ``"auto"`` the schema is optional: the client leaves it out, as each request leaves, once the
        server has refused it. With ``"json_schema"`` it is required: a refusal stops the run."""
        schema = None if self.structured == "off" else self.response_format()
        fmt = {} if schema is None else {"response_format": schema}
        try:
            completion = await self.llm.acomplete(
                messages,
                sample_index=sample_index,
                run=run,
                **params,
                max_tokens=budget,
                **(fmt if self.structured == "json_schema" else {}),
                optional=fmt if self.structured == "auto" else None,
            )
        except LLMRequestError as exc:
            if (
                fmt
                and self.structured == "json_schema"
                and refused_parameter(exc.status_code or 0, exc.reason, list(fmt))
            ):
                run.stop(f"the server rejected response_format ({exc.reason}); pass structured='auto' or 'off'.")
                run.check()
            raise
        if "response_format" in completion.dropped:
            self.structured_mode = "off"
            self.structured_fallback = self.llm.refused_params.get("response_format", "")
        elif fmt and self.structured_mode is None:
            self.structured_mode = "json_schema"
        return completion

    def structured_stat(self) -> dict[str, str]:
        """What the summary says about structured outputs (nothing for a step without a schema)."""
        if self.response_format() is None:
            return {}
        if self.structured_fallback:
            return {"structured_output": f"off: the server rejected response_format ({self.structured_fallback})"}
        return {"structured_output": self.structured_mode or "auto: no reply came back in the format"}

    def window_stat(self, rows: int) -> dict[str, Any]:
        """What the summary says about the context window, once a step has asked for it."""
        if not self.llm.facts.context_source:
            return {}
        window = f"{self.llm.facts.context_window} tokens ({self.llm.facts.context_source})"
        if self.window_cuts:
            logger.warning(
                "%s: %d of %d rows had their documents cut to fit the teacher's context window (%s; see the "
                "*_input_kept column): a larger window shows the teacher whole documents.",
                self.function, self.window_cuts, rows, window,
            )  # fmt: skip
        return {"context_window": window, "rows_cut_to_fit_window": self.window_cuts}

    @staticmethod
    def sampling(attempt: int, temperature: float | None) -> dict[str, Any]:
        """The sampling parameters of attempt ``attempt``: the first as configured; later ones fresh samples (the
        attempt as seed, at least :data:`RESAMPLE_TEMPERATURE`), so a deterministic teacher does not repeat its
        failure and a resumed run asks the cache for the same requests."""
        if attempt == 0:
            return {} if temperature is None else {"temperature": temperature}
        return {"temperature": max(temperature or 0.0, RESAMPLE_TEMPERATURE), "seed": attempt}

    @staticmethod
    def judged(run: LLMRun, problem: RowError | None) -> RowError | None:
        """``problem``, the step's verdict on a reply, after counting it toward the run's failure-rate stop."""
        run.reply_judged(None if problem is None else str(problem))
        return problem

    def truncation_problem(self, completion: Completion) -> RowError:
        if is_repetitive((completion.reasoning or "") + completion.text):
            return RowError("truncated", "repetitive output (the teacher repeated itself until max_tokens)")
        return RowError("truncated", f"the reply was cut off at max_tokens={2 * self.budget}; raise max_tokens")

    def skipped_row(self, row: Row, error: RowError) -> Row:
        """The output of a row the step does not attempt: its outputs empty, the error said."""
        return {**row, **dict.fromkeys(self.output_names()), self.error_column: error}

    def output_names(self) -> list[str]:
        return [c.name for c in self.columns() if c.name != DOC_ID]

    def apply(
        self,
        ds: datasets.Dataset | datasets.DatasetDict,
        *,
        overwrite: bool,
        batch_size: int,
        show_progress: bool,
        return_summary: bool,
    ) -> Any:
        """Check every split, then run the step on each (an empty split gives an empty split)."""
        splits = _plumbing.splits_of(ds, argument="ds")
        for split in splits:  # every check before the first request
            self.check(split)
            _plumbing.free_output_columns(split, self.output_names(), overwrite)

        def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
            split = self.prepare(_plumbing.free_output_columns(split, self.output_names(), overwrite))
            return self.run(split, batch_size=batch_size, show_progress=show_progress)

        return _plumbing.for_each_split(ds, one_split, return_summary)

    def features(self, ds: datasets.Dataset) -> datasets.Features:
        return datasets.Features({**ds.features, **{c.name: c.feature for c in self.columns()}})

    def run(
        self, ds: datasets.Dataset, *, batch_size: int, show_progress: bool
    ) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        run = self.llm.new_run(self.function)
        self.window_cuts = 0  # this split's
        progress = _plumbing.StepProgress(self.progress_desc, len(ds), run, show_progress)

        tally = Tally()

        async def row_fn(row: Row) -> list[Row]:
            gone = dropped(row)
            out = [self.skipped_row(row, gone)] if gone else await self.rows(row, run)
            for one in out:
                tally.add(one[self.error_column])
            error = out[0][self.error_column]
            progress.row_done(failed=error is not None and not error.skipped)
            return out

        try:
            out = stream_map(
                ds,
                self.llm,
                row_fn,
                features=self.features(ds),
                fingerprint=_plumbing.fingerprint(ds, self.function, self.params),
                batch_size=batch_size,
            )
        finally:
            progress.close()
        stats = {**self.stats(out), **self.structured_stat()}
        if self.max_doc_tokens is not None:
            stats["document_tokens"] = self.llm.facts.tokenizer or "not measured"
        stats |= self.window_stat(len(out))
        if len(self.llm.base_urls) > 1:
            stats["requests_per_endpoint"] = dict(run.endpoints)
        summary = _plumbing.llm_step_summary(
            self.name,
            len(ds),
            tally,
            run,
            time.monotonic() - started,
            self.params,
            self.run_prompt_version(),
            stats,
        )
        summary.columns = column_docs(self.columns())
        return out, summary
