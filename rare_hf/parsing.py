"""Turning teacher replies into fields, robustly: JSON after free reasoning, think/answer tags, answers.

Replies reason first and answer last, so every extractor prefers the LAST well-formed match; braces in
the reasoning (set notation, code, LaTeX) are skipped, not fatal.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ParseError",
    "iter_json_objects",
    "parse_questions",
    "validate_question",
    "split_reasoning",
    "extract_answer",
    "normalize_answer",
    "answers_match",
]


class ParseError(ValueError):
    """The reply cannot be used; the message says why (it is shown to the teacher in a repair turn)."""


_DECODER = json.JSONDecoder()


def iter_json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every top-level JSON object in ``text``, in order, skipping brace runs that are not JSON."""
    start = text.find("{")
    while start != -1:
        try:
            obj, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            yield obj
        start = text.find("{", end)


def _as_query_list(obj: dict[str, Any]) -> list[Any] | None:
    if isinstance(obj.get("hard_queries"), list):
        return obj["hard_queries"]
    if isinstance(obj.get("hard_query"), dict):  # the original operator's single-question shape
        return [obj["hard_query"]]
    if "question" in obj and "scenario" in obj:
        return [obj]
    return None


def parse_questions(text: str, num_questions: int = 1) -> list[dict[str, str]]:
    """The ``{"scenario", "question"}`` items of the last JSON object in ``text`` that has them.

    Raises:
        ParseError: no such object, or its items are not pairs of strings.
    """
    candidates = [q for q in map(_as_query_list, iter_json_objects(text)) if q is not None]
    if not candidates:
        raise ParseError('no JSON object with "hard_queries" (a list of {"scenario", "question"}) was found')
    items = candidates[-1]
    pairs = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("question"), str)
            or not isinstance(item.get("scenario"), str)
        ):
            raise ParseError('every item of "hard_queries" must have string "scenario" and "question" fields')
        pairs.append({"question": item["question"].strip(), "scenario": item["scenario"].strip()})
    if not pairs:
        raise ParseError('"hard_queries" is empty')
    return pairs[:num_questions]


_REFERS_TO_SOURCE = re.compile(
    r"\b(?:the|this|that|above|given|provided|following|attached|aforementioned)\s+"
    r"(?:document|passage|text|article|excerpt|paper|context|source\s+material)s?\b",
    re.IGNORECASE,
)
_MIN_QUESTION_CHARS = 15
_MAX_QUESTION_CHARS = 2_000
_MAX_SCENARIO_CHARS = 6_000


def validate_question(question: str, scenario: str, document: str) -> str | None:
    """Why this question/scenario pair is unusable, or ``None`` if it is fine."""
    if len(question) < _MIN_QUESTION_CHARS:
        return f"the question is empty or shorter than {_MIN_QUESTION_CHARS} characters"
    if not scenario:
        return "the scenario is empty"
    if len(question) > _MAX_QUESTION_CHARS or len(scenario) > _MAX_SCENARIO_CHARS:
        return "the question or scenario is implausibly long"
    for field, value in (("question", question), ("scenario", scenario)):
        if match := _REFERS_TO_SOURCE.search(value):
            return f'the {field} refers to its source ("{match.group(0)}"); it must stand alone'
    if _squash(question) in _squash(document):
        return "the question copies the document instead of asking something that needs reasoning"
    return None


def _squash(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\W*(?:final\s+answer|answer)\s*(?:is)?\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """Split a reply into ``(reasoning, answer)``; either is ``None`` when absent.

    The answer is the last ``<answer>...</answer>``, else the last ``Answer: ...`` line. The reasoning is
    the ``<think>`` block, else everything before the answer.
    """
    answers = _ANSWER.findall(text)
    answer = answers[-1].strip() if answers else None
    answer_start = text.rfind("<answer>") if answers else -1
    if answer is None and (lines := list(_ANSWER_LINE.finditer(text))):
        answer, answer_start = lines[-1].group(1).strip(), lines[-1].start()
    think = _THINK.search(text)
    if think:
        reasoning = think.group(1).strip()
    else:
        reasoning = (text[:answer_start] if answer_start >= 0 else text).strip()
    return reasoning or None, answer or None


_OPTION = re.compile(r"^\(?([A-J])(?:[\).:]|\s|$)")
_OPTION_ANYWHERE = re.compile(r"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?([A-J])\b\)?", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The teacher's final answer: the answer tag first, then an ``Answer: X`` line."""
    return split_reasoning(text)[1]


def option_letter(answer: str) -> str | None:
    """The option letter an answer starts with (``"B"``, ``"(B)"``, ``"B. text"``), if any."""
    answer = answer.strip()
    if match := _GOLD_LETTER_ONLY.fullmatch(answer):
        return match.group(1).upper()
    if match := _OPTION.match(answer):
        return match.group(1)
    if match := _OPTION_ANYWHERE.search(answer):
        return match.group(1).upper()
    return None


def normalize_answer(answer: str) -> str:
    """Lower case, no accents, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKD", answer).encode("ascii", "ignore").decode().lower()
    text = text.translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer agrees with a gold one: the same option letter when the gold names one
    (``"B"``, ``"(B) aspirin"``), else equal normalised text (``"B. Aspirin"`` matches ``"aspirin"``)."""
    if not predicted:
        return False
    gold = gold.strip()
    bare_letter = _GOLD_LETTER_ONLY.fullmatch(gold)
    gold_letter = bare_letter or _GOLD_LETTER_PREFIX.match(gold)
    if gold_letter and option_letter(predicted) == gold_letter.group(1).upper():
        return True
    if bare_letter:
        return False
    reference = normalize_answer(_OPTION_PREFIX.sub("", gold))
    candidates = {normalize_answer(predicted), normalize_answer(_OPTION_PREFIX.sub("", predicted.strip()))}
    return bool(reference) and reference in candidates


_GOLD_LETTER_ONLY = re.compile(r"\(?([A-Ja-j])\)?[.:]?")
_GOLD_LETTER_PREFIX = re.compile(r"\(?([A-J])[\).:]\s")
_OPTION_PREFIX = re.compile(r"^\(?[A-J][\).:]\s*")
