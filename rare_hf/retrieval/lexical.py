"""How much of a question is lifted from a document: the share of its content words the document holds verbatim.

A look-up question copies the document's own words ("What is the boiling point of X?"); a reasoning-intensive
one names a situation in other words. Content words: the question's words (CJK and Thai characters one by one)
without English stopwords and the words every question uses (what, which, would, ...).
"""

from __future__ import annotations

from bm25s.stopwords import STOPWORDS_EN

from .shingles import words_of

__all__ = ["content_words", "lexical_overlap"]

_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how would could should can does did do is was were has have had "
    "may might must shall will your you their they them its it this that these those than then there here "
    "about into from over under between within without any some each every other more most such".split()
)
_IGNORED = frozenset(STOPWORDS_EN) | _QUESTION_WORDS


def content_words(text: str) -> set[str]:
    """A text's distinct words that carry content: lower-cased, without stopwords and question words."""
    return {w for w in words_of(text) if w not in _IGNORED}


def lexical_overlap(question: str | None, document: str | None) -> float | None:
    """The share of ``question``'s content words found verbatim in ``document`` (``None`` without either, or
    when the question has no content word)."""
    if not isinstance(question, str) or not isinstance(document, str):
        return None
    asked = content_words(question)
    if not asked:
        return None
    return len(asked & set(words_of(document))) / len(asked)
