"""The teacher's final answer: where it is in a reply, and whether it agrees with a gold answer.

Matching says "no match" rather than guess: rejection sampling keeps what matches, so a false match keeps
a wrong distillation and a missed one pays for resamples of a right one. Gold answers come in three kinds:
an option letter (``"C"``, ``"(C) aspirin"``), yes/no/maybe, and short free text.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["split_reasoning", "option_of", "normalize_answer", "answers_match", "is_short_answer"]

_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(
    r"^\W*(?:final\s+answer|answer|最终答案|答案|答え|정답|답)\s*(?:is|是|は|은|는)?\s*[:：]\s*(.+)$",
    re.IGNORECASE | re.MULTILINE,
)

# "the answer is", "I think the answer is", "Final answer:", "Answer -", "The correct option is" ...
# and their Chinese, Japanese and Korean forms: "答案是", "最终答案：", "正确答案为", "答えは", "정답은".
_LEAD = re.compile(
    r"^\s*(?:(?:so|thus|therefore|hence|overall)[,\s]+)?(?:i\s+think\s+|i\s+believe\s+)?"
    r"(?:the\s+)?(?:final\s+|correct\s+|best\s+|right\s+)?(?:answer|option|choice)\s*(?:is|would\s+be|:|-|：)\s*"
    r"|^\s*(?:所以|因此)?[，,]?\s*(?:最终|正确)?(?:答案|选项)\s*(?:是|为|:|：)\s*"
    r"|^\s*(?:答え|正解)\s*(?:は|:|：)\s*|^\s*정?답\s*(?:은|는|:|：)\s*",
    re.IGNORECASE,
)
_LETTER = "[A-J]"
# The whole answer is a letter: "C", "(C)", "C.", "[C]", "**C**", "Option C".
_ONLY_LETTER = re.compile(
    rf"^\W*(?:option\s+|choice\s+|选项\s*|選択肢\s*)?\(?\[?({_LETTER})\]?\)?\s*(?:选项|項)?\W*$", re.IGNORECASE
)
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
    of its own): the last answer marker there, ``<answer>...</answer>`` or an ``Answer: ...`` line, whichever
    comes last (a reply without thinking tags may quote a document's tags before its own answer line). The
    reasoning is the ``<think>`` block, else everything before the answer.
    """
    ends = list(_THINK_END.finditer(text))
    after = ends[-1].end() if ends else (len(text) if _THINK.search(text) else 0)
    tail = text[after:]
    tags = list(_ANSWER_TAG.finditer(tail))
    inside_tags = [range(m.start(), m.end()) for m in tags]
    lines = [m for m in _ANSWER_LINE.finditer(tail) if not any(m.start() in span for span in inside_tags)]
    markers = sorted(tags + lines, key=lambda m: m.start())
    answer, answer_start = (markers[-1].group(1).strip(), after + markers[-1].start()) if markers else (None, -1)
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
    answer = unicodedata.normalize("NFKC", answer).strip()
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
    """Unicode-normalised (NFKC: full-width forms and compatibility characters folded), case-folded, accents
    dropped from Latin letters only (a Devanagari vowel sign or a Hebrew point is part of the word), no lead
    phrase ("the answer is", "答案是"), punctuation and symbols of every script as spaces, no English
    articles, single spaces."""
    text = unicodedata.normalize("NFKC", answer.strip())
    text = _LEAD.sub("", text, count=1).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in _fold_latin_accents(text))
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def _fold_latin_accents(text: str) -> str:
    out: list[str] = []
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char) and out and "LATIN" in unicodedata.name(out[-1], ""):
            continue
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out))


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


def is_short_answer(answer: str, max_words: int = 4) -> bool:
    """Whether :func:`answers_match` can judge answers against this one: an option, yes/no/maybe, or at most
    ``max_words`` words (a number, a name, a term). A sentence is free text: matching would reject right answers
    worded differently, so the ``judge`` step compares those."""
    gold_letter, _ = _gold_parts(answer)
    return gold_letter is not None or 0 < len(normalize_answer(answer).split()) <= max_words


def _gold_parts(gold: str) -> tuple[str | None, str]:
    """The gold option letter (if gold names one) and the option's normalised text (may be empty)."""
    gold = unicodedata.normalize("NFKC", gold).strip()
    if match := _ONLY_LETTER.match(gold):
        return match.group(1).upper(), ""
    if match := _LETTER_PREFIX.match(gold):
        letter = (match.group(1) or match.group(2)).upper()
        return letter, normalize_answer(_strip_letter(gold))
    return None, ""


def _strip_letter(answer: str) -> str:
    return re.sub(rf"^\W*\(?{_LETTER}[\).:]\s*", "", answer.strip(), count=1)
