"""Near-duplicate texts: one-permutation MinHash sketches, LSH banding, exact Jaccard on the candidates.

A text is the set of its runs of ``shingle_words`` words (its shingles). Classic MinHash hashes every shingle
once per permutation (128 passes); one-permutation hashing (Li, Owen & Zhang 2012) hashes each shingle once and
keeps the least hash in each of ``num_bins`` bins, and rotation densification (Shrivastava & Li 2014) fills the
bins a short text leaves empty, so two sketches agree in a bin with probability equal to the texts' Jaccard
similarity at a hundredth of the cost. Bands of bins bucket texts (LSH); each candidate pair is then checked on
the exact Jaccard of its shingle sets, so nothing is merged on an estimate. Clusters are the connected
components of the checked pairs; each is represented by its first text.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .bm25 import _HAS_NUMBA
from .ngrams import Texts, shingle_csr

__all__ = ["Clusters", "near_duplicates", "sketches", "lsh_shape", "NUM_BINS"]

NUM_BINS = 128
_EMPTY = np.uint32(0xFFFFFFFF)
_PRIME = np.uint64(1_099_511_628_211)
_OFFSET = 0x2545F491  # added per bin of distance to a borrowed value, so it rarely equals a bin's own
_NUMBA_MIN_SHINGLES = 200_000  # below this numpy is done before numba would have compiled


@dataclasses.dataclass(frozen=True)
class Clusters:
    """Which text each text duplicates.

    Attributes:
        representative: Per text, the position of its cluster's first text (itself when it is first or has no
            near-duplicate; -1 for a text without words).
        similarity: Per text, the exact Jaccard similarity of its shingles with its representative's (1.0 for a
            representative).
        candidate_pairs: Pairs the sketches proposed, each checked exactly.
    """

    representative: np.ndarray
    similarity: np.ndarray
    candidate_pairs: int

    @property
    def duplicates(self) -> np.ndarray:
        """Positions of the texts that duplicate an earlier one."""
        own = np.arange(len(self.representative))
        return np.flatnonzero((self.representative >= 0) & (self.representative != own))


def near_duplicates(texts: Texts, threshold: float = 0.8, shingle_words: int = 5, num_bins: int = NUM_BINS) -> Clusters:
    """Clusters of texts whose shingle sets have a Jaccard similarity of at least ``threshold``.

    Case, punctuation and spacing are ignored (a text is its words); CJK and Thai characters count as words.
    """
    indptr, hashes = shingle_csr(texts, shingle_words)
    n, has_shingles = len(indptr) - 1, np.diff(indptr) > 0
    pairs = _candidate_pairs(sketches(indptr, hashes, num_bins), *lsh_shape(threshold, num_bins), has_shingles)
    sets = _ShingleSets(indptr, hashes)
    parent = np.arange(n)
    for a, b in pairs:
        if sets.jaccard(a, b) >= threshold:
            ra, rb = _root(parent, a), _root(parent, b)
            parent[max(ra, rb)] = min(ra, rb)  # the earlier text represents the cluster
    representative = parent.astype(np.int64)
    while not np.array_equal(following := representative[representative], representative):
        representative = following
    representative[~has_shingles] = -1
    similarity = np.ones(n, dtype=np.float32)
    clusters = Clusters(representative, similarity, len(pairs))
    for i in clusters.duplicates.tolist():
        similarity[i] = sets.jaccard(int(representative[i]), i)
    return clusters


def sketches(indptr: np.ndarray, hashes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """One-permutation MinHash sketches, densified: (texts, num_bins) uint32; a text without shingles is all
    ``0xFFFFFFFF``."""
    n = len(indptr) - 1
    sketch = np.full((n, num_bins), _EMPTY, dtype=np.uint32)
    if _compiled_min_per_bin is not None and len(hashes) >= _NUMBA_MIN_SHINGLES:
        _compiled_min_per_bin(indptr, hashes, sketch)
    else:
        doc = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        cell = doc * num_bins + (hashes.astype(np.uint64) * np.uint64(num_bins) >> np.uint64(32)).astype(np.int64)
        np.minimum.at(sketch.reshape(-1), cell, hashes)
    return _densify(sketch, np.diff(indptr) > 0)


def min_per_bin_kernel(indptr: np.ndarray, hashes: np.ndarray, sketch: np.ndarray) -> None:
    """Each text's least hash in each bin, in plain loops for numba (numpy's ``minimum.at`` otherwise)."""
    num_bins = np.uint64(sketch.shape[1])
    for doc in range(len(indptr) - 1):
        for j in range(indptr[doc], indptr[doc + 1]):
            value = hashes[j]
            cell = (np.uint64(value) * num_bins) >> np.uint64(32)
            if value < sketch[doc, cell]:
                sketch[doc, cell] = value


_compiled_min_per_bin = None
if _HAS_NUMBA:
    import numba

    _compiled_min_per_bin = numba.njit(cache=True)(min_per_bin_kernel)


def _densify(sketch: np.ndarray, has_shingles: np.ndarray, block: int = 16_384) -> np.ndarray:
    """An empty bin takes the next filled bin's value (to the right, wrapping) offset by the distance, so two
    texts with the same content fill their bins alike."""
    n, k = sketch.shape
    out = sketch.copy()
    for start in range(0, n, block):
        part = sketch[start : start + block]
        filled = part != _EMPTY
        position = np.where(np.concatenate([filled, filled], axis=1), np.arange(2 * k), 2 * k)
        following = np.minimum.accumulate(position[:, ::-1], axis=1)[:, ::-1][:, :k]
        borrowed = np.take_along_axis(part, following % k, axis=1).astype(np.uint64)
        value = ((borrowed + (following - np.arange(k)).astype(np.uint64) * _OFFSET) & 0xFFFFFFFF).astype(np.uint32)
        empty = ~filled & has_shingles[start : start + block, None]
        out[start : start + block][empty] = value[empty]
    return out


def lsh_shape(threshold: float, num_bins: int = NUM_BINS) -> tuple[int, int]:
    """(bands, rows per band) minimising the missed-pair and false-candidate areas around ``threshold`` (as
    datasketch chooses them), misses weighted four times: a miss is lost, a false candidate only costs a check."""
    grid = np.linspace(0.0, 1.0, 201)
    best, shape = np.inf, (1, num_bins)
    for bands in range(1, num_bins + 1):
        rows = num_bins // bands
        candidate = 1 - (1 - grid**rows) ** bands
        cost = np.trapezoid(candidate * (grid < threshold), grid)
        cost += 4 * np.trapezoid((1 - candidate) * (grid >= threshold), grid)
        if cost < best:
            best, shape = cost, (bands, rows)
    return shape


def _candidate_pairs(sketch: np.ndarray, bands: int, rows: int, has_shingles: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of texts sharing a band: each text of a bucket paired with the bucket's first."""
    live = np.flatnonzero(has_shingles)
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        key = np.zeros(len(live), dtype=np.uint64)
        for column in sketch[live, band * rows : (band + 1) * rows].T:
            key = key * _PRIME + column
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, len(ordered)])
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
            first = int(live[order[start]])
            pairs.update((first, int(live[j])) for j in order[start + 1 : start + size])
    return sorted(pairs)


class _ShingleSets:
    """Exact Jaccard of two texts' shingle sets, each set sorted once on first use."""

    def __init__(self, indptr: np.ndarray, hashes: np.ndarray) -> None:
        self.indptr, self.hashes = indptr, hashes
        self.sets: dict[int, np.ndarray] = {}

    def of(self, i: int) -> np.ndarray:
        if i not in self.sets:
            self.sets[i] = np.unique(self.hashes[self.indptr[i] : self.indptr[i + 1]])
        return self.sets[i]

    def jaccard(self, a: int, b: int) -> float:
        sa, sb = self.of(a), self.of(b)
        shared = len(np.intersect1d(sa, sb, assume_unique=True))
        return shared / max(1, len(sa) + len(sb) - shared)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i
