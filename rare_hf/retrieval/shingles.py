"""Shared passages between documents: hashed runs of words ("shingles"), winnowed.

Chunked corpora overlap: two chunks sharing a third of their text share few enough distinct terms and
score far enough below the positive to pass any term-overlap or score filter, yet the sibling chunk
contains the answer. A shared run of words is the direct evidence. Each document keeps the winnowed
hashes of its runs of ``SHINGLE_WORDS`` words (the minimum of every ``_WINDOW`` consecutive shingle
hashes, as in MOSS's winnowing), so any shared run of ``SHINGLE_WORDS + _WINDOW - 1`` words or more is
always found, at about 2 / (_WINDOW + 1) of the memory of keeping every shingle.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from ..text.script import NO_SPACE

SHINGLE_WORDS = 13
_WINDOW = 4
_PRIME = np.uint64(1_099_511_628_211)
# CJK and Thai are not written with spaces: each character is a unit there; elsewhere a word is.
_UNIT = re.compile(f"[{NO_SPACE}]|[^\\W_]+")


def words_of(text: str) -> list[str]:
    """A text's units, lower-cased: its words, and each CJK or Thai character on its own."""
    return _UNIT.findall(text.lower())


def passage_hashes(text: str) -> np.ndarray:
    """Sorted distinct winnowed shingle hashes (uint32) of a text; empty when it has fewer units than a run."""
    words = words_of(text) if isinstance(text, str) else []
    if len(words) < SHINGLE_WORDS:
        return np.empty(0, dtype=np.uint32)
    ids = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
    n = len(ids) - SHINGLE_WORDS + 1
    rolling = np.zeros(n, dtype=np.uint64)
    for offset in range(SHINGLE_WORDS):  # polynomial hash of each run, wrapping mod 2**64
        rolling = rolling * _PRIME + ids[offset : offset + n]
    hashes = (rolling >> np.uint64(32)).astype(np.uint32)
    if n > _WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(hashes, _WINDOW)
        hashes = windows.min(axis=1)
    return np.unique(hashes)


def passage_csr(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The passage hashes of every text as one CSR (indptr int64, ids uint32)."""
    parts = [passage_hashes(t) for t in texts]
    indptr = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=indptr[1:])
    ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)
    return indptr, ids.astype(np.uint32, copy=False)
