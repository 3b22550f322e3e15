"""What a run will cost, before anything is sent (``rare-hf --dry-run``): requests, cache hits, tokens, dollars.

The questions step's prompts are built exactly and looked up in the response cache. The reasoning step's
prompts depend on questions that do not exist yet, so they are estimated from the same template with the
row's own document, ``num_neg`` documents of the corpus' mean length and a question of typical length.
Tokens are estimated from characters: 4 per token for ASCII text and 1 per token for other scripts (CJK
text tokenises near one character per token), which errs on the high side for most tokenizers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import datasets

from ..text.tokens import estimate_tokens
from ..teacher.client import LLM
from ..text.prompts import VERIFY_PROMPT, WRITTEN_NEGATIVES_PROMPT, format_documents, reasoning_messages
from .questions import QuestionStep

__all__ = ["StepEstimate", "estimate_run", "estimate_tokens"]

# Assumed replies when nothing is known yet (first-try replies; repairs and resamples add to them).
COMPLETION_TOKENS = {"questions": 200, "verify_negatives": 60, "written_negatives": 500, "reasoning": 800}
_TYPICAL_QUESTION = "x" * 400  # ~100 tokens with its scenario


@dataclasses.dataclass
class StepEstimate:
    """One LLM step's estimated first-try cost.

    Attributes:
        step: ``"questions"`` or ``"reasoning"``.
        requests: First-try requests of the step (one per row).
        cached: Of them, those already in the response cache (exact for questions; 0 for reasoning, whose
            prompts are not known yet).
        prompt_tokens / completion_tokens: Estimated tokens of the requests still to send.
        usd: Their estimated dollars at the LLM's price, or ``None`` without one.
    """

    step: str
    requests: int
    cached: int
    prompt_tokens: int
    completion_tokens: int
    usd: float | None


def estimate_run(
    ds: datasets.Dataset,
    llm: LLM,
    *,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    steps: tuple[str, ...] | list[str] = ("questions", "hard_negatives", "reasoning"),
    max_doc_chars: int = 20_000,
) -> list[StepEstimate]:
    """Estimate the LLM steps of :func:`rare_hf.build_rare_dataset` on ``ds`` without sending a request (the
    prompts of steps after the questions, whose questions do not exist yet, from their templates).

    Args:
        ds: The documents, as given to the pipeline.
        llm: The teacher (its cache, model, parameters and price are used; nothing is sent).
        text_key, num_neg, num_questions, steps: As in :func:`rare_hf.build_rare_dataset`.
        max_doc_chars: As in the steps.

    Returns:
        One :class:`StepEstimate` per LLM step in ``steps``.

    Example:
        >>> for e in rare_hf.estimate_run(docs, rare_hf.LLM("gpt-4o-mini", price_per_million=(0.15, 0.6))):
        ...     print(e.step, e.requests, e.usd)
    """
    texts = [t if isinstance(t, str) else "" for t in ds[text_key]]
    estimates = []
    if "questions" in steps:
        step = QuestionStep(llm, num_questions=num_questions, max_doc_chars=max_doc_chars)
        step.detect_language(ds, text_key)  # the prompt set the run will use, so the cache lookups match
        prompts = [step.first_request(t) for t in texts if t.strip()]
        to_send = [m for m, params in prompts if not llm.is_cached(m, **params)]
        estimates.append(
            _estimate(llm, "questions", len(prompts), to_send, COMPLETION_TOKENS["questions"] * num_questions)
        )
    mean_doc = "x" * int(sum(min(len(t), max_doc_chars) for t in texts) / max(1, len(texts)))
    rows = len(texts) * (num_questions if "questions" in steps else 1)
    later = {  # each later step's prompt for one row, from the template with typical fields
        "verify_negatives": lambda t: VERIFY_PROMPT.render(
            question=_TYPICAL_QUESTION, documents=format_documents([mean_doc] * (2 * num_neg))
        ),
        "written_negatives": lambda t: WRITTEN_NEGATIVES_PROMPT.render(
            question=_TYPICAL_QUESTION, scenario=_TYPICAL_QUESTION, document=t[:max_doc_chars], num_neg=1
        ),
        "reasoning": lambda t: reasoning_messages(
            _TYPICAL_QUESTION, _TYPICAL_QUESTION, [t[:max_doc_chars], *[mean_doc] * num_neg]
        ),
    }
    for name, build in later.items():
        if name in steps:
            per_row = sum(_tokens(build(t)) for t in texts) / max(1, len(texts))
            completion = COMPLETION_TOKENS[name] * rows
            estimates.append(_priced(llm, StepEstimate(name, rows, 0, round(per_row * rows), completion, None)))
    return estimates


def _estimate(llm: LLM, step: str, requests: int, to_send: list[Any], completion_per_request: int) -> StepEstimate:
    prompt_tokens = sum(_tokens(m) for m in to_send)
    estimate = StepEstimate(
        step, requests, requests - len(to_send), prompt_tokens, completion_per_request * len(to_send), None
    )
    return _priced(llm, estimate)


def _priced(llm: LLM, estimate: StepEstimate) -> StepEstimate:
    if llm.price is not None:
        estimate.usd = round(llm.price.usd(estimate.prompt_tokens, estimate.completion_tokens), 4)
    return estimate


def _tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages)  # + the chat template's marks
