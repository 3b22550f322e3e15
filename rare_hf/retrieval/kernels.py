"""The mining kernels: per row, the first candidates that pass the lexical guards, in the numpy subset numba
compiles (the ``fast`` extra); without numba the same code runs as Python."""

from __future__ import annotations

import numpy as np

from .bm25 import _HAS_NUMBA

__all__ = ["pick", "csr_rows", "idf_cosines", "NUMBA_MIN_CELLS"]


def count_shared(ids_a: np.ndarray, a: int, a_end: int, ids_b: np.ndarray, b: int, b_end: int) -> int:
    """How many values two sorted, distinct runs ``ids_a[a:a_end]`` and ``ids_b[b:b_end]`` share."""
    shared = 0
    while a < a_end and b < b_end:
        if ids_a[a] == ids_b[b]:
            shared += 1
            a += 1
            b += 1
        elif ids_a[a] < ids_b[b]:
            a += 1
        else:
            b += 1
    return shared


def pick_kernel(
    docs: np.ndarray,
    keep: np.ndarray,
    pos_doc: np.ndarray,
    indptr: np.ndarray,
    token_ids: np.ndarray,
    passage_indptr: np.ndarray,
    passage_ids: np.ndarray,
    pos_passage_indptr: np.ndarray,
    pos_passage_ids: np.ndarray,
    max_overlap: float,
    num_neg: int,
    skip_top: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the columns of the first ``num_neg`` kept candidates after ``skip_top``, dropping those
    that share a passage with the positive (a winnowed run of words, see ``_shingles``) and those whose
    distinct terms overlap the positive's by more than ``max_overlap`` (Jaccard; < 0: no overlap check).
    Those two are marked in ``keep`` as they are found, so picking again (after a later guard dropped a
    chosen one) neither scores nor counts them twice. Returns the chosen columns (-1: none) and, per row,
    how many candidates overlapped and how many shared a passage.

    Written in the numpy subset numba compiles; without numba the same code runs as Python.
    """
    rows, width = docs.shape
    chosen = np.full((rows, num_neg), -1, dtype=np.int64)
    overlapping = np.zeros(rows, dtype=np.int64)
    sharing = np.zeros(rows, dtype=np.int64)
    for r in range(rows):
        found, skipped, p = 0, 0, pos_doc[r]
        for c in range(width):
            if found == num_neg:
                break
            if not keep[r, c]:
                continue
            d = docs[r, c]
            if count_shared(
                passage_ids,
                passage_indptr[d],
                passage_indptr[d + 1],
                pos_passage_ids,
                pos_passage_indptr[r],
                pos_passage_indptr[r + 1],
            ):
                sharing[r] += 1
                keep[r, c] = False
                continue
            if max_overlap >= 0 and p >= 0:
                a, a_end, b, b_end = indptr[d], indptr[d + 1], indptr[p], indptr[p + 1]
                shared = count_shared(token_ids, a, a_end, token_ids, b, b_end)
                union = max(1, (a_end - a) + (b_end - b) - shared)
                if shared > max_overlap * union:
                    overlapping[r] += 1
                    keep[r, c] = False
                    continue
            if skipped < skip_top:
                skipped += 1
                continue
            chosen[r, found] = c
            found += 1
    return chosen, overlapping, sharing


# Candidate cells from which the compiled kernel pays for its one-off compilation (about 3 s cold); below
# that the same code runs as Python.
NUMBA_MIN_CELLS = 200_000
_compiled_pick_kernel = None

if _HAS_NUMBA:
    import types

    import numba

    # The compiled kernel calls the compiled helper; the Python one keeps calling the Python helper.
    _compiled_pick_kernel = numba.njit(cache=True)(
        types.FunctionType(
            pick_kernel.__code__,
            {**globals(), "count_shared": numba.njit(cache=True)(count_shared)},
            "pick_kernel",
        )
    )


def csr_rows(indptr: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of only these rows, in this order."""
    starts, ends = indptr[rows], indptr[rows + 1]
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=out[1:])
    picked = [ids[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
    return out, np.concatenate(picked) if picked else ids[:0]


def pick(docs: np.ndarray, *args: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pick_kernel`, compiled when numba is installed and the batch is large enough to pay for it."""
    compiled = _compiled_pick_kernel is not None and docs.size >= NUMBA_MIN_CELLS
    return (_compiled_pick_kernel if compiled else pick_kernel)(docs, *args)  # type: ignore[misc]


def idf_cosines(
    docs: np.ndarray,
    pos_doc: np.ndarray,
    indptr: np.ndarray,
    token_ids: np.ndarray,
    weights: np.ndarray,
    norms: np.ndarray,
    chunk_pairs: int = 16_384,
) -> np.ndarray:
    """The IDF-weighted cosine of each candidate in ``docs`` (rows x width) with its row's positive, over
    distinct terms (0 where the positive is not in the index). Pairs are scored ``chunk_pairs`` at a time,
    each chunk at once: every pair's terms become keys ``pair * vocabulary + term`` and the shared keys are
    one sorted intersection, no Python loop over terms; the chunk bounds the memory the keys take."""
    rows, width = docs.shape
    candidates, positives = docs.ravel().astype(np.int64), np.repeat(pos_doc.astype(np.int64), width)
    valid = np.flatnonzero((candidates >= 0) & (positives >= 0))
    out = np.zeros(rows * width)
    vocabulary = len(weights)
    for start in range(0, len(valid), chunk_pairs):
        pairs = valid[start : start + chunk_pairs]
        keys = []
        for side in (candidates[pairs], positives[pairs]):
            side_indptr, side_ids = csr_rows(indptr, token_ids, side)
            keys.append(np.repeat(np.arange(len(pairs)), np.diff(side_indptr)) * vocabulary + side_ids)
        shared = np.intersect1d(keys[0], keys[1], assume_unique=True)
        # float even when nothing is shared (bincount of nothing gives integers)
        sums = np.bincount(shared // vocabulary, weights=weights[shared % vocabulary], minlength=len(pairs)) * 1.0
        denominator = norms[candidates[pairs]] * norms[positives[pairs]]
        out[pairs] = np.divide(sums, denominator, out=np.zeros_like(sums), where=denominator > 0)
    return out.reshape(rows, width)
