"""Texts as word n-grams ("shingles"): words split and hashed in Arrow's kernels, runs of n words hashed in numpy.

Near-duplicate detection (:mod:`.minhash`) and decontamination (:mod:`.contamination`) both compare texts by
their runs of words; case, punctuation and spacing do not count.
"""

from __future__ import annotations

import concurrent.futures
import os
import zlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..text.script import NO_SPACE

__all__ = ["Texts", "shingle_csr"]

Texts = Sequence[str | None] | pa.Array | pa.ChunkedArray
_PRIME = np.uint64(1_099_511_628_211)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’„…—–·、。，；：？！（）"


def shingle_csr(texts: Texts, shingle_words: int, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every text's shingle hashes as one CSR: uint32, or uint64 with ``wide`` (for exact look-ups among
    millions); a text shorter than a shingle is one shingle, of all its words."""
    ids, lengths = _word_ids(texts)
    k, total = shingle_words, len(ids)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    short = np.flatnonzero((lengths > 0) & (lengths < k))
    padded = np.concatenate([ids, np.zeros(k - 1, dtype=np.uint64)])
    rolling, whole = np.zeros(total, dtype=np.uint64), np.zeros(len(short), dtype=np.uint64)
    for offset in range(k):  # polynomial hash of the run of k words from each position, wrapping mod 2**64
        rolling = rolling * _PRIME + padded[offset : offset + total]
        done = lengths[short] == offset + 1
        whole[done] = rolling[starts[short[done]]]  # a text shorter than a shingle is one, of all its words
    inside = np.arange(total) + k <= np.repeat(ends, lengths)  # runs that end within their own text
    rolling[starts[short]], inside[starts[short]] = whole, True
    counts = np.maximum(lengths - k + 1, 0)
    counts[short] = 1
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    mixed = rolling[inside] * _MIX
    return indptr, mixed if wide else (mixed >> np.uint64(32)).astype(np.uint32)


def _word_ids(texts: Texts, block: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every word of every text, flat (uint64), and each text's word count (blocks of texts
    split on every core: Arrow's kernels release the GIL)."""
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.large_string())
    blocks = [array.slice(start, block) for start in range(0, len(array), block)] or [array]
    with concurrent.futures.ThreadPoolExecutor(min(len(blocks), os.cpu_count() or 1)) as pool:
        parts = list(pool.map(_block_word_ids, blocks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _block_word_ids(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every word of every text, flat (uint64), and each text's word count.

    A word is a run of non-space characters with its surrounding punctuation trimmed, lower-cased; in texts
    with CJK or Thai characters each of those is a word of its own. Arrow's kernels do the splitting (a regular
    expression over every word took longer than the rest together) and each distinct word is hashed once."""
    lower = pc.utf8_lower(array)
    spaceless = pc.fill_null(pc.match_substring_regex(lower, f"[{NO_SPACE}]"), False)
    if pc.any(spaceless).as_py():
        spaced = pc.replace_substring_regex(pc.if_else(spaceless, lower, ""), f"([{NO_SPACE}])", r" \1 ")
        lower = pc.if_else(spaceless, spaced, lower)
    split = pc.utf8_split_whitespace(lower)
    if isinstance(split, pa.ChunkedArray):
        split = split.combine_chunks()
    encoded = pc.dictionary_encode(pc.utf8_trim(split.flatten(), characters=_PUNCTUATION))
    # a word of punctuation only trims to "": hashed to 0, then left out
    codes = np.array([zlib.crc32(w.encode()) | 1 if w else 0 for w in encoded.dictionary.to_pylist()], np.uint64)
    ids = codes[encoded.indices.to_numpy(zero_copy_only=False)] if len(codes) else np.empty(0, dtype=np.uint64)
    lengths = pc.fill_null(pc.list_value_length(split), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    blank = np.flatnonzero(ids == 0)
    if len(blank):
        offsets = np.asarray(split.offsets, dtype=np.int64)
        lengths -= np.bincount(np.searchsorted(offsets - offsets[0], blank, side="right") - 1, minlength=len(lengths))
        ids = ids[ids != 0]
    return ids, lengths
