"""The teacher's final answer: where it is in a reply, and whether it agrees with a gold answer.

Matching says "no match" rather than guess: rejection sampling keeps what matches, so a false match keeps
a wrong distillation and a missed one pays for resamples of a right one. Gold answers come in three kinds:
an option letter (``"C"``, ``"(C) aspirin"``), yes/no/maybe, and short free text.
"""

from __future__ import annotations

import re
import string
import unicodedata

__all__ = ["split_reasoning", "option_of", "normalize_answer", "answers_match"]

_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\W*(?:final\s+answer|answer)\s*(?:is)?\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)

# "the answer is", "I think the answer is", "Final answer:", "Answer -", "The correct option is" ...
_LEAD = re.compile(
    r"^\s*(?:(?:so|thus|therefore|hence|overall)[,\s]+)?(?:i\s+think\s+|i\s+believe\s+)?"
    r"(?:the\s+)?(?:final\s+|correct\s+|best\s+|right\s+)?(?:answer|option|choice)\s*(?:is|would\s+be|:|-|：)\s*",
    re.IGNORECASE,
)
_LETTER = "[A-J]"
# The whole answer is a letter: "C", "(C)", "C.", "[C]", "**C**", "Option C".
_ONLY_LETTER = re.compile(rf"^\W*(?:option\s+|choice\s+)?\(?\[?({_LETTER})\]?\)?\W*$", re.IGNORECASE)
# A letter with a separator and the option's text: "C. Aspirin", "(C) aspirin", "C) aspirin", "C: aspirin".
_LETTER_PREFIX = re.compile(rf"^\W*\(((?i:{_LETTER}))\)\s*\S|^\W*({_LETTER})\s*[\.\):]\s*\S")
# A named option anywhere: "(option C)", "answer is C", "answer: (C)"; the letter must stand alone.
_NAMED = re.compile(
    rf"\b(?:answer|option|choice)\s*(?:is|would\s+be|:|-)?\s*\(?({_LETTER})\)?(?![\w'])",
    re.IGNORECASE,
)
# After "answer is A", a word that is not a conjunction makes "A" the article of a noun phrase.
_ARTICLE_FOLLOWS = re.compile(r"\s+(?!(?:because|since|as|given|which|and|but|so|for|with)\b)[a-z]")
_YES_NO = ("yes", "no", "maybe")


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """Split a reply into ``(reasoning, answer)``; either is ``None`` when absent.

    The answer is looked for only after the thinking (a document quoted inside it may contain answer tags
    of its own): the last ``<answer>...</answer>`` there, else the last ``Answer: ...`` line. The reasoning
    is the ``<think>`` block, else everything before the answer.
    """
    ends = list(_THINK_END.finditer(text))
    after = ends[-1].end() if ends else (len(text) if _THINK.search(text) else 0)
    tail = text[after:]
    answers = list(_ANSWER_TAG.finditer(tail))
    answer, answer_start = (answers[-1].group(1).strip(), after + answers[-1].start()) if answers else (None, -1)
    if answer is None and (lines := list(_ANSWER_LINE.finditer(tail))):
        answer, answer_start = lines[-1].group(1).strip(), after + lines[-1].start()
    think = _THINK.search(text)
    if think:
        reasoning = think.group(1).strip()
    else:
        reasoning = (text[:answer_start] if answer_start >= 0 else text).strip()
    return reasoning or None, answer or None


def option_of(answer: str) -> str | None:
    """The option letter an answer commits to (``"C"``, ``"(C) aspirin"``, ``"The answer is C"``,
    ``"... (option C)"``), or ``None`` when it names none. ``"A beta blocker"`` names none: "A" is an
    article there."""
    answer = answer.strip()
    body = _LEAD.sub("", answer, count=1)
    for candidate in (body, answer):
        if match := _ONLY_LETTER.match(candidate):
            return match.group(1).upper()
        if match := _LETTER_PREFIX.match(candidate):
            return (match.group(1) or match.group(2)).upper()
    named = [m for m in _NAMED.finditer(answer) if not _is_article(answer, m)]
    return named[-1].group(1).upper() if named else None


def _is_article(text: str, match: re.Match[str]) -> bool:
    """``answer is a combination``, ``answer is A beta blocker``: "a"/"i" before a word is a word, not an
    option (``answer is A because ...`` still names option A)."""
    return match.group(1).upper() in "AI" and bool(_ARTICLE_FOLLOWS.match(text, match.end()))


def normalize_answer(answer: str) -> str:
    """Lower case, no accents, no lead phrase ("the answer is"), no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKD", _LEAD.sub("", answer.strip(), count=1)).encode("ascii", "ignore").decode()
    text = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer agrees with a gold one; ``False`` when unsure.

    - Gold names an option (``"B"``, ``"(B) aspirin"``): the prediction must name the same option, or,
      naming none, give the option's text.
    - Gold is yes/no/maybe: the prediction must start with that word (``"Yes, because ..."``).
    - Otherwise: equal after normalisation (case, punctuation, articles, "the answer is").
    """
    if not predicted or not predicted.strip() or not gold.strip():
        return False
    gold_letter, gold_text = _gold_parts(gold)
    predicted_letter = option_of(predicted)
    if gold_letter is not None:
        if predicted_letter is not None:
            return predicted_letter == gold_letter
        return bool(gold_text) and normalize_answer(predicted) == gold_text
    label = normalize_answer(gold)
    if label in _YES_NO:
        words = normalize_answer(predicted).split()
        # "Yes or no, it depends" commits to neither.
        return bool(words) and words[0] == label and not any(w in _YES_NO and w != label for w in words[1:4])
    return bool(label) and normalize_answer(_strip_letter(predicted)) == label


def _gold_parts(gold: str) -> tuple[str | None, str]:
    """The gold option letter (if gold names one) and the option's normalised text (may be empty)."""
    gold = gold.strip()
    if match := _ONLY_LETTER.match(gold):
        return match.group(1).upper(), ""
    if match := _LETTER_PREFIX.match(gold):
        letter = (match.group(1) or match.group(2)).upper()
        return letter, normalize_answer(_strip_letter(gold))
    return None, ""


def _strip_letter(answer: str) -> str:
    return re.sub(rf"^\W*\(?{_LETTER}[\).:]\s*", "", answer.strip(), count=1)
