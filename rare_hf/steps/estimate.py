"""What a run will cost, before anything is sent (``rare-hf --dry-run``): requests, cache hits, tokens, dollars.

Each LLM step estimates itself (its :class:`~rare_hf.steps.registry.StepDefinition`). A step whose inputs exist
before the run (the questions step, a user step over input columns) builds its exact first requests and looks
them up in the response cache. A later step's prompts depend on columns that do not exist yet, so they are
estimated from its template with the row's own document, documents of the corpus' mean length and a question
of typical length. Tokens are estimated from characters (``rare_hf.text.tokens``), erring on the high side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import datasets

from ..errors import LLMFatalError
from ..teacher.client import LLM
from ..text.tokens import estimate_tokens
from ..utils.datasets import column_values
from ..utils.datasets import quiet_datasets_progress
from .registry import PlanContext, StepSpec, spec_of
from .row_error import DROP_REASON
from .summary import StepSummary

if TYPE_CHECKING:
    from .pipeline import RunSummary

__all__ = ["StepEstimate", "estimate_run", "estimate_requests", "estimate_templated", "TYPICAL_QUESTION"]

TYPICAL_QUESTION = "x" * 400  # ~100 tokens with its scenario
Messages = list[dict[str, Any]]


@dataclasses.dataclass
class StepEstimate:
    """One LLM step's estimated first-try cost.

    Attributes:
        step: The step's name.
        requests: First-try requests of the step (one per row).
        cached: Of them, those the response cache answers: looked up exactly where the prompts are known before
            the run; for a later step, the rows a replay of the run from the cache alone answered.
        prompt_tokens / completion_tokens: Estimated tokens of the requests still to send.
        usd: Their estimated dollars at the LLM's price, or ``None`` without one.
        templated: The prompts were estimated from the step's template (they depend on earlier steps).
    """

    step: str
    requests: int
    cached: int
    prompt_tokens: int
    completion_tokens: int
    usd: float | None
    templated: bool = False


def estimate_run(
    ds: datasets.Dataset,
    llm: LLM,
    *,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    answer_key: str | None = None,
    seed: int = 0,
    steps: Sequence[str | StepSpec | Any] | None = None,
    **step_kwargs: dict[str, Any] | None,
) -> list[StepEstimate]:
    """Estimate the LLM steps of :func:`rare_hf.build_rare_dataset` on ``ds`` without sending a request.

    Args:
        ds: The documents, as given to the pipeline.
        llm: The teacher (its cache, model, parameters and price are used; nothing is sent).
        text_key, num_neg, num_questions, answer_key, seed, steps: As in :func:`rare_hf.build_rare_dataset`.
        **step_kwargs: The pipeline's ``question_kwargs``, ``reasoning_kwargs``, … .

    Returns:
        One :class:`StepEstimate` per LLM step in ``steps``, in run order.

    Example:
        >>> for e in rare_hf.estimate_run(docs, rare_hf.LLM("gpt-4o-mini", price_per_million=(0.15, 0.6))):
        ...     print(e.step, e.requests, e.usd)
    """
    from .pipeline import plan_steps

    plan = plan_steps(
        steps,
        text_key=text_key,
        num_neg=num_neg,
        num_questions=num_questions,
        answer_key=answer_key,
        seed=seed,
        **step_kwargs,
    )
    options = {"text_key": text_key, "num_neg": num_neg, "num_questions": num_questions}
    replayed = _replay(ds, llm, steps, {**options, "answer_key": answer_key, "seed": seed}, step_kwargs)
    estimates = []
    leading = plan.steps[: next((i for i, s in enumerate(plan.steps) if not _is_filter(s)), len(plan.steps))]
    for planned in leading:  # filters the run starts with (dedup) read only the input: rows they drop cost nothing
        ds = _kept(planned.run(ds, None, show_progress=False, overwrite=True)[0])
    for planned in plan.steps:
        if planned.spec.uses_llm:
            estimate = planned.definition.estimate(ds, llm, planned.kwargs, plan.context)
            summary = replayed.step(planned.name) if replayed is not None else None
            if estimate is not None:
                estimates.append(estimate if summary is None else _cached_by_replay(llm, estimate, summary))
    return estimates


def _is_filter(planned: Any) -> bool:
    return not planned.spec.uses_llm and planned.definition.error_column(planned.kwargs) == DROP_REASON


def _kept(ds: datasets.Dataset) -> datasets.Dataset:
    with quiet_datasets_progress():
        return ds.filter(lambda reason: reason is None, input_columns=DROP_REASON)


def _replay(
    ds: datasets.Dataset, llm: LLM, steps: Any, options: dict[str, Any], step_kwargs: dict[str, Any]
) -> RunSummary | None:
    """The run replayed from the response cache alone (nothing is sent): a later step's prompts exist only
    once the earlier steps' replies do, and after a finished or interrupted run the cache holds them."""
    from .pipeline import build_rare_dataset

    if llm.cache is None:
        return None
    caching = datasets.is_caching_enabled()
    datasets.disable_caching()  # the replay's tables go to a temporary folder, not beside the user's data
    try:
        with llm.cache_only(), quiet_datasets_progress():
            _, summary = build_rare_dataset(
                ds, llm, **options, steps=steps, keep_failed=True, overwrite=True, show_progress=False,
                return_summary=True, **step_kwargs,
            )  # fmt: skip
        return summary  # type: ignore[no-any-return]
    except LLMFatalError:  # the cached replies stop the run (they nearly all fail): the templates estimate
        return None
    finally:
        if caching:
            datasets.enable_caching()


def _cached_by_replay(llm: LLM, estimate: StepEstimate, summary: StepSummary) -> StepEstimate:
    """``estimate`` with its cached rows counted by the replay: rows the cache answered need nothing sent;
    the others (their request not in the cache, or their input not yet made) cost a templated row each."""
    if not estimate.templated:  # its requests were looked up exactly already
        return estimate
    missed = summary.failure_reasons.get("request", 0)
    cached = max(0, min(estimate.requests, summary.rows_out - summary.skipped - missed))
    share = (estimate.requests - cached) / max(1, estimate.requests)
    prompt, completion = round(estimate.prompt_tokens * share), round(estimate.completion_tokens * share)
    return _priced(
        llm, dataclasses.replace(estimate, cached=cached, prompt_tokens=prompt, completion_tokens=completion)
    )


def estimate_requests(
    llm: LLM,
    step: str,
    requests: list[tuple[Messages, dict[str, Any]]],
    replies_per_request: int = 1,
    completion_tokens: int | None = None,
) -> StepEstimate:
    """Exact first requests, each looked up in the cache; only those still to send count in tokens.
    ``completion_tokens`` per reply defaults to the step's registry entry."""
    to_send = [messages for messages, params in requests if not llm.is_cached(messages, **params)]
    completion = spec_of(step).completion_tokens if completion_tokens is None else completion_tokens
    estimate = StepEstimate(
        step,
        len(requests),
        len(requests) - len(to_send),
        sum(_tokens(m) for m in to_send),
        completion * replies_per_request * len(to_send),
        None,
    )
    return _priced(llm, estimate)


def estimate_templated(
    llm: LLM,
    step: str,
    ds: datasets.Dataset,
    ctx: PlanContext,
    prompt: Callable[[str, str], Messages],
    completion_tokens: int | None = None,
) -> StepEstimate:
    """A later step's requests from its template: ``prompt(row's document, a document of mean length)``."""
    max_doc_chars = 20_000
    texts = [t if isinstance(t, str) else "" for t in column_values(ds, ctx.column("text", "text"))]
    mean_doc = "x" * int(sum(min(len(t), max_doc_chars) for t in texts) / max(1, len(texts)))
    rows = len(texts) * (ctx.options["num_questions"] if "questions" in ctx.chosen else 1)
    per_row = sum(_tokens(prompt(t, mean_doc)) for t in texts) / max(1, len(texts))
    completion = spec_of(step).completion_tokens if completion_tokens is None else completion_tokens
    return _priced(llm, StepEstimate(step, rows, 0, round(per_row * rows), completion * rows, None, templated=True))


def _priced(llm: LLM, estimate: StepEstimate) -> StepEstimate:
    if llm.price is not None:
        estimate.usd = round(llm.price.usd(estimate.prompt_tokens, estimate.completion_tokens), 4)
    return estimate


def _tokens(messages: Messages) -> int:
    return sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages)  # + the chat template's marks
