"""Turning the questions step's replies into fields, robustly: JSON after free reasoning, then validation.
(Answers and the think/answer split are in :mod:`rare_hf.answers`.)

Replies reason first and answer last, so every extractor prefers the LAST well-formed match; braces in
the reasoning (set notation, code, LaTeX) are skipped, not fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ParseError",
    "iter_json_objects",
    "parse_questions",
    "validate_question",
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


# A reference to the document the teacher was given ("according to the passage", "the text provided",
# "this excerpt"), not an ordinary use of those words: "in the context of", "this article of the treaty"
# and "the text of the constitution" name something else, so a noun followed by "of" is never a reference.
_SOURCE_NOUN = r"(?:document|passage|text|article|excerpt|paper|context|source(?:\s+material)?|reading)s?"
_NOT_OF = r"(?!\s+(?:of|on|about|that|which|in)\b)"
_REFERS_TO_SOURCE = re.compile(
    r"\b(?:"
    rf"(?:the|this|that)\s+(?:above|given|provided|following|attached|aforementioned|preceding|accompanying|"
    rf"supplied|original)\s+{_SOURCE_NOUN}"
    rf"|(?:according\s+to|based\s+on|as\s+(?:stated|described|mentioned|discussed|shown|noted)\s+in|"
    rf"in\s+light\s+of)\s+(?:the|this)\s+{_SOURCE_NOUN}{_NOT_OF}"
    rf"|the\s+{_SOURCE_NOUN}\s+(?:above|provided|given|below|you\s+(?:read|were\s+given))"
    rf"|(?:this|that|above)\s+(?:document|passage|excerpt|text|context|source){_NOT_OF}"
    r")\b",
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
