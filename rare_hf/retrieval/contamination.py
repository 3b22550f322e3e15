"""Contamination: runs of n words (13 by default, as GPT-3 and most decontamination since) a text shares with
the texts of an evaluation set the user will report on.

The reference's n-grams are hashed to 64 bits and sorted once; each text's n-grams are looked up by binary
search, so a generated dataset is checked against a large benchmark in seconds and a 32-bit collision never
passes for a match. A text shorter than n words counts as one n-gram of all its words: it matches a reference
text of the same words.
"""

from __future__ import annotations

import numpy as np

from .ngrams import Texts, shingle_csr

__all__ = ["Reference"]


class Reference:
    """The n-grams of an evaluation set, ready for look-ups.

    Args:
        texts: The reference texts (questions, passages, answers of the benchmark).
        n: Words per n-gram.
    """

    def __init__(self, texts: Texts, n: int = 13) -> None:
        indptr, hashes = shingle_csr(texts, n, wide=True)
        order = np.argsort(hashes, kind="stable")
        self.n, self.size = n, len(indptr) - 1
        self.hashes = hashes[order]
        self.source = np.repeat(np.arange(self.size), np.diff(indptr))[order]

    def overlap(self, texts: Texts) -> tuple[np.ndarray, np.ndarray]:
        """Per text, the share of its n-grams found in the reference (float32; NaN for a text without words)
        and the reference text holding its first shared n-gram (-1: none)."""
        indptr, hashes = shingle_csr(texts, self.n, wide=True)
        found = np.searchsorted(self.hashes, hashes)
        found = np.minimum(found, max(0, len(self.hashes) - 1))
        hit = (self.hashes[found] == hashes) if len(self.hashes) else np.zeros(len(hashes), dtype=bool)
        counts = np.diff(indptr)
        owner = np.repeat(np.arange(len(counts)), counts)
        shared = np.bincount(owner[hit], minlength=len(counts))
        share = np.divide(shared, counts, out=np.full(len(counts), np.nan), where=counts > 0).astype(np.float32)
        first = np.full(len(counts), -1, dtype=np.int64)
        hits = np.flatnonzero(hit)[::-1]  # written last-first, so each text keeps its first hit
        first[owner[hits]] = self.source[found[hits]]
        return share, first
