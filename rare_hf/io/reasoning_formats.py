"""Reasoning exports, for a generator trained on the distilled reasoning: TRL's conversational ``messages`` and
``prompt``/``completion`` (SFT), preference pairs (DPO, ORPO) and unpaired labelled rows (KTO) from the reasoning
step's rejection sampling, and RARE's own ``instruction``/``predict``/``output`` records."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypedDict, Unpack

import datasets

from ..steps import _plumbing
from ..steps.shown_documents import reasoning_messages_for_row
from ..text.prompts import Prompt
from ..utils.datasets import column_values, quiet_datasets_progress

__all__ = ["to_sft", "to_preference", "assistant_target", "ReasoningColumns"]

logger = logging.getLogger(__name__)

SFT_FORMATS = ("messages", "prompt-completion", "rare")
PREFERENCE_FORMATS = ("pairs", "kto")


class ReasoningColumns(TypedDict, total=False):
    """The column names :func:`rare_hf.add_reasoning` read and wrote, when they are not the defaults."""

    input_text_key: str
    input_question_key: str
    input_scenario_key: str
    input_hardneg_key: str
    output_key: str
    output_answer_key: str


def assistant_target(reasoning: str, answer: str) -> str:
    """The student's target, in RARE's format: the reasoning in ``<think>``, then the ``<answer>``."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n{answer.strip()}\n</answer>"


def to_sft(
    ds: datasets.Dataset,
    format: Literal["messages", "prompt-completion", "rare"] = "messages",
    *,
    keep_columns: list[str] | None = None,
    prompt: Prompt | None = None,
    **columns: Unpack[ReasoningColumns],
) -> datasets.Dataset:
    """Supervised fine-tuning records from a dataset written by :func:`rare_hf.add_reasoning`.

    The user turn is exactly the prompt the teacher saw (scenario, question, the numbered retrieved
    documents in their recorded order, instructions); the assistant turn is the teacher's reasoning and
    answer. Rows without reasoning (failed or skipped) are left out and counted in the log.

    Args:
        ds: The enriched dataset.
        format: ``"messages"``: a ``messages`` column (system, user, assistant), TRL's conversational format.
            ``"prompt-completion"``: ``prompt`` (system and user) and ``completion`` (assistant), TRL's
            conversational prompt-completion format: ``SFTTrainer`` then trains on the completion only, with any
            chat template. ``"rare"``: ``instruction`` (the full prompt), ``predict`` (the full target: think
            and answer) and ``output`` (the final answer), the records of RARE's own training scripts.
        keep_columns: Extra columns to carry over (e.g. ``["doc_id"]``).
        prompt: The custom :class:`rare_hf.Prompt` the reasoning was written with, if any (built-in prompts,
            English or Chinese, are found from each row's prompt version).
        **columns: The column names the steps used, when not the defaults (:class:`ReasoningColumns`:
            ``input_text_key``, ``input_question_key``, ``input_scenario_key``, ``input_hardneg_key``,
            ``output_key``, ``output_answer_key``).

    Returns:
        A new ``Dataset`` with one record per usable row.

    Example:
        >>> sft = rare_hf.to_sft(ds, "prompt-completion")
        >>> trl.SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=sft,
        ...                args=trl.SFTConfig(max_length=None)).train()
    """
    if format not in SFT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, SFT_FORMATS))}, got {format!r}.")
    keep = keep_columns or []

    def records(row: dict[str, Any], system: dict, user: dict, target: str) -> Iterator[dict[str, Any]]:
        extra = {c: row[c] for c in keep}
        assistant = {"role": "assistant", "content": target}
        if format == "rare":
            answer = row[columns.get("output_answer_key", "answer")]
            instruction = f"{system['content']}\n\n{user['content']}"
            yield {"instruction": instruction, "predict": target, "output": answer, **extra}
        elif format == "prompt-completion":
            yield {"prompt": [system, user], "completion": [assistant], **extra}
        else:
            yield {"messages": [system, user, assistant], **extra}

    fields = {"messages": ["messages"], "prompt-completion": ["prompt", "completion"]}.get(
        format, ["instruction", "predict", "output"]
    )
    return _chat_records(ds, records, fields, prompt, columns, keep)


def to_preference(
    ds: datasets.Dataset,
    format: Literal["pairs", "kto"] = "pairs",
    *,
    prompt: Prompt | None = None,
    **columns: Unpack[ReasoningColumns],
) -> datasets.Dataset:
    """Preference data from the reasoning step's rejection sampling (``add_reasoning(answer_key=...)``): for the
    same prompt, the kept reasoning (its answer matched the gold one) against each reply whose answer did not.

    Args:
        ds: A dataset written by :func:`rare_hf.add_reasoning` with gold answers.
        format: ``"pairs"``: ``prompt`` (system and user messages), ``chosen`` and ``rejected`` (one assistant
            message each), one record per rejected reply: TRL's conversational preference format (DPO, ORPO,
            CPO). ``"kto"``: unpaired ``prompt``, ``completion`` and ``label`` (``True`` for the kept reasoning,
            ``False`` for each rejected one): TRL's unpaired preference format (KTO).
        prompt / **columns: As for :func:`to_sft`.

    Returns:
        A new ``Dataset``. Rows without a kept reasoning, or (for ``"pairs"``) without a rejected reply, give no
        record; the log counts them. Without gold answers nothing is ever rejected, and this raises.

    Example:
        >>> ds = rare_hf.add_reasoning(ds, answer_key="gold", max_attempts=8)
        >>> pairs = rare_hf.to_preference(ds)
        >>> trl.DPOTrainer(model=..., train_dataset=pairs, args=trl.DPOConfig(max_length=None)).train()
    """
    if format not in PREFERENCE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, PREFERENCE_FORMATS))}, got {format!r}.")
    rejected_key = f"{columns.get('output_key', 'reasoning')}_rejected"
    _plumbing.require_columns(ds, **{"the reasoning step's rejected replies": rejected_key})

    def records(row: dict[str, Any], system: dict, user: dict, target: str) -> Iterator[dict[str, Any]]:
        def turn(text: str) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": text}]

        rejected = [assistant_target(r["reasoning"], r["answer"]) for r in row[rejected_key] or []]
        if format == "kto":
            for completion, label in [(target, True), *((r, False) for r in rejected)]:
                yield {"prompt": [system, user], "completion": turn(completion), "label": label}
        else:
            for reply in rejected:
                yield {"prompt": [system, user], "chosen": turn(target), "rejected": turn(reply)}

    fields = ["prompt", "completion", "label"] if format == "kto" else ["prompt", "chosen", "rejected"]
    out = _chat_records(ds, records, fields, prompt, columns, [])
    rejected = column_values(out, "label").count(False) if format == "kto" else len(out)
    if rejected == 0:
        raise ValueError(
            f"{rejected_key}: no reply was rejected, so there is no preference to learn. Preference data comes "
            "from gold answers: run add_reasoning(..., answer_key='<gold column>') (the CLI: --answer-column)."
        )
    return out


def _chat_records(
    ds: datasets.Dataset,
    records: Callable[[dict[str, Any], dict, dict, str], Iterator[dict[str, Any]]],
    fields: list[str],
    prompt: Prompt | None,
    columns: ReasoningColumns,
    keep: list[str],
) -> datasets.Dataset:
    """``records(row, system, user, target)`` over the rows with a kept reasoning, flattened into ``fields``."""
    output_key = columns.get("output_key", "reasoning")
    answer_key = columns.get("output_answer_key", "answer")
    _plumbing.require_columns(
        ds, output_key=output_key, output_answer_key=answer_key, doc_order=f"{output_key}_doc_order"
    )
    with quiet_datasets_progress():
        usable = ds.filter(lambda r, a: r is not None and a is not None, input_columns=[output_key, answer_key])
    shown = {k: v for k, v in columns.items() if k != "output_answer_key"}

    def batch(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {field: [] for field in [*fields, *keep]}
        for i in range(len(rows[output_key])):
            row = {k: v[i] for k, v in rows.items()}
            system, user = reasoning_messages_for_row(row, **shown, prompt=prompt)
            for record in records(row, system, user, assistant_target(row[output_key], row[answer_key])):
                for k, v in record.items():
                    out[k].append(v)
        return out

    with quiet_datasets_progress():
        made = usable.map(batch, batched=True, remove_columns=[c for c in usable.column_names if c not in keep])
    if len(usable) < len(ds):
        logger.info("%s: left out %d of %d rows without a kept reasoning", fields, len(ds) - len(usable), len(ds))
    return made
