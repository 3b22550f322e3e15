"""Training formats: chat SFT records (TRL), RARE-style records, and Tevatron retrieval triples."""

from __future__ import annotations

import logging
from typing import Any, Literal

import datasets

from ..steps import _plumbing
from ..steps.shown_documents import reasoning_messages_for_row
from ..text.prompts import Prompt
from ..utils.datasets import DOC_ID, column_values, doc_id_for, quiet_datasets_progress

__all__ = ["to_sft", "to_retrieval_triples", "assistant_target"]

logger = logging.getLogger(__name__)


def assistant_target(reasoning: str, answer: str) -> str:
    """The student's target, in RARE's format: the reasoning in ``<think>``, then the ``<answer>``."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n{answer.strip()}\n</answer>"


def to_sft(
    ds: datasets.Dataset,
    format: Literal["messages", "rare"] = "messages",
    *,
    input_text_key: str = "text",
    input_question_key: str = "question",
    input_scenario_key: str = "scenario",
    input_hardneg_key: str = "hard_negatives",
    output_key: str = "reasoning",
    output_answer_key: str = "answer",
    keep_columns: list[str] | None = None,
    prompt: Prompt | None = None,
) -> datasets.Dataset:
    """Supervised fine-tuning records from a dataset written by :func:`rare_hf.add_reasoning`.

    The user turn is exactly the prompt the teacher saw (scenario, question, the numbered retrieved
    documents in their recorded order, instructions); the assistant turn is the teacher's reasoning and
    answer. Rows without reasoning (failed or skipped) are left out and counted in the log.

    Args:
        ds: The enriched dataset.
        format: ``"messages"``: a ``messages`` column (system, user, assistant) ready for TRL's
            ``SFTTrainer``. ``"rare"``: ``instruction`` (the full prompt), ``predict`` (the full target:
            think and answer) and ``output`` (the final answer), as in RARE's training data.
        input_*_key / output_key / output_answer_key: Column names used by the steps.
        keep_columns: Extra columns to carry over (e.g. ``["doc_id"]``).
        prompt: The custom :class:`rare_hf.Prompt` the reasoning was written with, if any (built-in prompts,
            English or Chinese, are found from each row's prompt version).

    Returns:
        A new ``Dataset`` with one record per usable row.

    Example:
        >>> sft = rare_hf.to_sft(ds)
        >>> trl.SFTTrainer(model=..., train_dataset=sft)
    """
    if format not in ("messages", "rare"):
        raise ValueError(f"format must be 'messages' or 'rare', got {format!r}.")
    keys = dict(
        input_text_key=input_text_key,
        input_question_key=input_question_key,
        input_scenario_key=input_scenario_key,
        input_hardneg_key=input_hardneg_key,
        output_key=output_key,
    )
    _plumbing.require_columns(
        ds, output_key=output_key, output_answer_key=output_answer_key, doc_order=f"{output_key}_doc_order"
    )
    usable = _usable(ds, output_key, output_answer_key)
    keep = keep_columns or []

    def record(row: dict[str, Any]) -> dict[str, Any]:
        system, user = reasoning_messages_for_row(row, **keys, prompt=prompt)
        target = assistant_target(row[output_key], row[output_answer_key])
        extra = {c: row[c] for c in keep}
        if format == "rare":
            return {
                "instruction": f"{system['content']}\n\n{user['content']}",
                "predict": target,
                "output": row[output_answer_key],
                **extra,
            }
        return {"messages": [system, user, {"role": "assistant", "content": target}], **extra}

    with quiet_datasets_progress():
        return usable.map(record, remove_columns=[c for c in usable.column_names if c not in keep])


def to_retrieval_triples(
    ds: datasets.Dataset,
    *,
    input_text_key: str = "text",
    input_question_key: str = "question",
    input_scenario_key: str = "scenario",
    input_hardneg_key: str = "hard_negatives",
    input_written_key: str = "written_negatives",
    input_title_key: str = "title",
    include_scenario: bool = True,
) -> datasets.Dataset:
    """Retriever-training triples in Tevatron's format: ``query_id``, ``query``, ``positive_passages`` and
    ``negative_passages`` (each a list of ``{"docid", "title", "text"}``), plus ``written_negative_passages``
    when the dataset has written negatives (:func:`rare_hf.add_written_negatives`): kept apart from the mined
    ones, with docids starting ``written-``, so a training mix can weigh them as ReasonIR did.

    Args:
        ds: A dataset with questions and hard negatives (``add_hard_negatives`` output).
        input_title_key: The documents' titles, when the input has them: each passage's ``title`` (a negative's
            is found by its id among the dataset's documents; ``""`` when it is not there).
        include_scenario: Put the scenario before the question in ``query`` (ReasonIR's hard queries are
            scenario and question together).

    Returns:
        A new ``Dataset``; rows without a question or without negatives are left out (and logged).

    Example:
        >>> triples = rare_hf.to_retrieval_triples(ds)
        >>> triples[0]["negative_passages"][0]["text"]
    """
    _plumbing.require_columns(
        ds, input_question_key=input_question_key, input_hardneg_key=input_hardneg_key, input_text_key=input_text_key
    )
    ids_key = f"{input_hardneg_key}_ids"
    has_written = input_written_key in ds.column_names
    has_scenario = include_scenario and input_scenario_key in ds.column_names
    with quiet_datasets_progress():
        usable = ds.filter(
            lambda q, n: q is not None and bool(n), input_columns=[input_question_key, input_hardneg_key]
        )
    _log_dropped(len(ds), len(usable), "retrieval triples")
    titles = _titles(ds, input_title_key)

    def record(row: dict[str, Any], index: int) -> dict[str, Any]:
        doc_id = row.get(DOC_ID)
        doc_id = doc_id_for(row[input_text_key]) if doc_id is None else str(doc_id)
        neg_ids = row.get(ids_key) or [doc_id_for(t) for t in row[input_hardneg_key]]
        scenario = row[input_scenario_key] if has_scenario else None
        query = f"{scenario}\n{row[input_question_key]}" if scenario else row[input_question_key]
        return {
            "query_id": f"{doc_id}-{index}",
            "query": query,
            "positive_passages": [{"docid": doc_id, "title": titles.get(doc_id, ""), "text": row[input_text_key]}],
            "negative_passages": [
                {"docid": i, "title": titles.get(i, ""), "text": t} for i, t in zip(neg_ids, row[input_hardneg_key])
            ],
            **(
                {
                    "written_negative_passages": [
                        {"docid": f"written-{doc_id_for(t)}", "title": "", "text": t}
                        for t in row[input_written_key] or []
                    ]
                }
                if has_written
                else {}
            ),
        }

    with quiet_datasets_progress():
        return usable.map(record, with_indices=True, remove_columns=usable.column_names)


def _titles(ds: datasets.Dataset, title_key: str) -> dict[str, str]:
    """Document id to title, from the dataset's own documents (empty without a title column)."""
    if title_key not in ds.column_names or DOC_ID not in ds.column_names:
        return {}
    pairs = zip(column_values(ds, DOC_ID), column_values(ds, title_key))
    return {str(i): str(t) for i, t in pairs if i is not None and t is not None}


def _usable(ds: datasets.Dataset, output_key: str, answer_key: str) -> datasets.Dataset:
    with quiet_datasets_progress():
        usable = ds.filter(lambda r, a: r is not None and a is not None, input_columns=[output_key, answer_key])
    _log_dropped(len(ds), len(usable), "SFT records")
    return usable


def _log_dropped(before: int, after: int, what: str) -> None:
    if after < before:
        logger.info("%s: left out %d of %d rows without a usable result", what, before - after, before)
