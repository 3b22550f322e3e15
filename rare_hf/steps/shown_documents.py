"""What the teacher was shown in the reasoning step: the seeded order of the positive among the negatives, and
the exact messages of a row, rebuilt from its columns (for exports and audits)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from ..text.prompts import BUILT_IN, REASONING_PROMPT, Prompt, reasoning_messages

__all__ = ["document_order", "reasoning_messages_for_row"]


def document_order(seed: int, doc_id: str, question: str, num_documents: int) -> list[int]:
    """The shown order of ``[positive, *negatives]`` for one row: a shuffle seeded by ``seed``, the row's
    ``doc_id`` and its question, so it is the same in every run and differs between rows."""
    digest = hashlib.sha256(f"{seed}\x00{doc_id}\x00{question}".encode()).digest()
    order = list(range(num_documents))
    random.Random(int.from_bytes(digest[:8], "little")).shuffle(order)
    return order


def reasoning_messages_for_row(
    row: dict[str, Any],
    *,
    input_text_key: str = "text",
    input_question_key: str = "question",
    input_scenario_key: str = "scenario",
    input_hardneg_key: str = "hard_negatives",
    output_key: str = "reasoning",
    max_doc_chars: int = 20_000,
    prompt: Prompt | None = None,
) -> list[dict[str, Any]]:
    """Rebuild, from a row written by :func:`add_reasoning`, the exact messages the teacher received.

    ``max_doc_chars`` must be the value the row was written with (the default unless you changed it). The
    built-in prompt the row names in ``{output_key}_prompt_version`` is found by itself; a custom one must be
    given as ``prompt``.

    Example:
        >>> messages = reasoning_messages_for_row(ds[0])
        >>> messages[1]["content"]        # scenario, question and the documents in their shown order
    """
    pool = [row[input_text_key][:max_doc_chars], *(n[:max_doc_chars] for n in row[input_hardneg_key])]
    order = row[f"{output_key}_doc_order"]
    if sorted(order) != list(range(len(pool))):
        raise ValueError(
            f"{output_key}_doc_order shows {len(order)} documents but the row has {len(pool)} (its positive and "
            f"{input_hardneg_key}): the negatives changed after the reasoning step, so its prompt cannot be rebuilt "
            "(split_for_eval(..., drop_held_out_negatives=False) keeps them as shown)."
        )
    documents = [pool[i] for i in order]
    return reasoning_messages(
        row[input_question_key], row.get(input_scenario_key), documents, prompt or _prompt_of(row, output_key)
    )


def _prompt_of(row: dict[str, Any], output_key: str) -> Prompt:
    version = row.get(f"{output_key}_prompt_version") or REASONING_PROMPT.version
    if version not in BUILT_IN:
        raise ValueError(f"{output_key}_prompt_version: {version!r} is a custom prompt; pass it as prompt=.")
    return BUILT_IN[version]
