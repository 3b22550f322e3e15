"""Turning the questions step's replies into fields, robustly: JSON after free reasoning, then validation.
(Answers and the think/answer split are in :mod:`rare_hf.answers`.)

Replies reason first and answer last, so every extractor prefers the LAST well-formed match; braces in
the reasoning (set notation, code, LaTeX) are skipped, not fatal.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

from ..errors import ParseError
from .script import han_count

__all__ = [
    "ParseError",
    "iter_json_objects",
    "parse_questions",
    "validate_question",
    "prompt_echo",
    "is_near_duplicate",
]


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
        pair = {"question": item["question"].strip(), "scenario": item["scenario"].strip()}
        if isinstance(item.get("answer"), str) and item["answer"].strip():  # asked with reference_answer=True
            pair["answer"] = item["answer"].strip()
        pairs.append(pair)
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
# The same in Chinese: "根据上文", "本文", "该段落", "文中提到" (a bare 文章 or 材料 is an ordinary word).
_REFERS_TO_SOURCE_ZH = re.compile(
    r"(?:根据|依据|按照|结合)?(?:上述|以上|上文|下文|本|该|此|这篇|这段|所给|给定)(?:的)?(?:文档|文章|段落|文本|材料|资料|原文)"
    r"|文中|原文中|上文"
)
_MIN_QUESTION_CHARS = 15
_MAX_QUESTION_CHARS = 2_000
_MAX_SCENARIO_CHARS = 6_000
_MAX_LONG_SCENARIO_CHARS = 20_000  # 2,000 words and room to spare


def validate_question(
    question: str, scenario: str, document: str, prompt: str = "", *, long: bool = False
) -> str | None:
    """Why this question/scenario pair is unusable, or ``None`` if it is fine.

    ``prompt`` is the text of the prompt without the document: a field that repeats its placeholders or a
    run of its instructions is an echo (small models copy the format they were shown), not a question.
    ``long``: the scenario may be a long query (up to 2,000 words).
    """
    for field, value in (("question", question), ("scenario", scenario)):  # first: "<the question>" is short too
        if echo := prompt_echo(value, prompt):
            return f'the {field} echoes the prompt ("{echo}") instead of writing one'
    if len(question) + han_count(question) < _MIN_QUESTION_CHARS:  # a Han character says about two letters' worth
        return f"the question is empty or shorter than {_MIN_QUESTION_CHARS} characters"
    if not scenario:
        return "the scenario is empty"
    if len(question) > _MAX_QUESTION_CHARS or len(scenario) > (
        _MAX_LONG_SCENARIO_CHARS if long else _MAX_SCENARIO_CHARS
    ):
        return "the question or scenario is implausibly long"
    for field, value in (("question", question), ("scenario", scenario)):
        if match := _REFERS_TO_SOURCE.search(value) or _REFERS_TO_SOURCE_ZH.search(value):
            return f'the {field} refers to its source ("{match.group(0)}"); it must stand alone'
    if _squash(question) in _squash(document):
        return "the question copies the document instead of asking something that needs reasoning"
    return None


def is_near_duplicate(question: str, others: list[str], threshold: float = 0.8) -> bool:
    """Whether ``question`` shares at least ``threshold`` of its words (Jaccard) with one of ``others``."""
    words = set(_squash(question).split())
    for other in others:
        theirs = set(_squash(other).split())
        if words and theirs and len(words & theirs) / len(words | theirs) >= threshold:
            return True
    return False


_ECHO_WORDS = 6  # a run of this many of the prompt's words is copied, not written


def prompt_echo(value: str, prompt: str) -> str | None:
    """The part of the prompt ``value`` repeats: a whole ``<placeholder>``, or a run of its words."""
    if not prompt:
        return None
    squashed = _squash(value)
    for placeholder in re.findall(r"<([^<>{}/\n]{2,80})>", prompt):
        if f"<{placeholder}>" in value or squashed == _squash(placeholder):
            return f"<{placeholder}>"
    runs = _word_runs(prompt)
    words = squashed.split()
    for i in range(len(words) - _ECHO_WORDS + 1):
        run = " ".join(words[i : i + _ECHO_WORDS])
        if run in runs:
            return run
    return None


@functools.lru_cache(maxsize=16)
def _word_runs(prompt: str) -> frozenset[str]:
    words = _squash(prompt).split()
    return frozenset(" ".join(words[i : i + _ECHO_WORDS]) for i in range(len(words) - _ECHO_WORDS + 1))


def _squash(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
