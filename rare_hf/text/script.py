"""Which writing system a text is in, the one place that knows the character ranges.

Chinese, Japanese, Korean and Thai are written without spaces between words: retrieval indexes them as
character bigrams, shingles count their characters as units, and Han text picks the Chinese prompts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["HAN", "NO_SPACE", "HAN_CHAR", "NO_SPACE_CHAR", "han_count", "share"]

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, extension A, compatibility ideographs
NO_SPACE = "\u0e00-\u0e7f\u3040-\u30ff" + HAN + "\uac00-\ud7af"  # Thai, kana, Han, Hangul
HAN_CHAR = re.compile(f"[{HAN}]")
NO_SPACE_CHAR = re.compile(f"[{NO_SPACE}]")
_LETTER = re.compile(r"[^\W\d_]")


def han_count(text: str) -> int:
    """How many Han characters ``text`` has (one says about two letters' worth)."""
    return len(HAN_CHAR.findall(text))


def share(texts: Sequence[Any], chars: re.Pattern[str], sample: int = 2000) -> float:
    """The share of letters matching ``chars`` in an even sample of ``texts`` (non-strings skipped)."""
    picked = "".join(t for t in list(texts)[:: max(1, len(texts) // sample)][:sample] if isinstance(t, str))
    letters = len(_LETTER.findall(picked))
    return len(chars.findall(picked)) / letters if letters else 0.0
