"""Exact dense retrieval over unit vectors, in numpy: the top ``k`` documents by cosine similarity, computed in
blocks so memory stays bounded whatever the corpus; and reciprocal-rank fusion with a BM25 list (hybrid).

Exact search costs one matrix product and one selection per block: about 28 s for 20,000 questions over
100,000 documents on two cores, most of it numpy's ``argpartition``. Past a few million documents an
approximate index (FAISS) pays; the vectors saved here (``.npy``) load into one directly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DenseIndex", "reciprocal_rank_fusion", "RRF_K"]

# Reciprocal-rank fusion's constant (Cormack et al. 2009, the value Elasticsearch and most hybrid retrievers use).
RRF_K = 60


class DenseIndex:
    """Unit vectors of a corpus, searched exactly.

    Args:
        vectors: ``(documents, dimensions)`` float32, L2-normalised (a document that could not be embedded is a
            row of zeros: it is never retrieved).
        query_block: Queries scored at once.
        document_block: Documents scored at once; ``query_block x document_block`` floats bound the memory
            (64 MB by default). Selecting each row's best costs more than scoring: small query blocks keep the
            selection in cache (2.8 s against 5.4 s with 512 x 32,768 for 2,000 queries over 100,000 documents).
    """

    def __init__(self, vectors: np.ndarray, *, query_block: int = 128, document_block: int = 131_072) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors: expected a 2-D array (documents, dimensions), got shape {vectors.shape}.")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.query_block, self.document_block = query_block, document_block

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar documents of each query (rows of unit vectors), best first, and their cosines."""
        k = min(k, len(self))
        docs = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), self.query_block):
            block = slice(start, start + self.query_block)
            docs[block], scores[block] = self._search_block(queries[block].astype(np.float32), k)
        return docs, scores

    def scores(self, queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Cosine of each query with each of its row's documents (``docs``: corpus positions, -1 for none: NaN)."""
        vectors = self.vectors[np.maximum(docs, 0)]
        out = np.einsum("rkd,rd->rk", vectors, queries.astype(np.float32))
        return np.where(docs >= 0, out, np.nan)

    def _search_block(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        best_docs = np.empty((len(queries), 0), dtype=np.int64)
        best = np.empty((len(queries), 0), dtype=np.float32)
        for start in range(0, len(self), self.document_block):
            chunk = queries @ self.vectors[start : start + self.document_block].T
            ids = np.broadcast_to(np.arange(start, start + chunk.shape[1]), chunk.shape)
            pool, pool_docs = np.hstack([best, chunk]), np.hstack([best_docs, ids])
            top = np.argpartition(-pool, k - 1, axis=1)[:, :k] if pool.shape[1] > k else np.argsort(-pool, axis=1)
            best, best_docs = np.take_along_axis(pool, top, 1), np.take_along_axis(pool_docs, top, 1)
        order = np.lexsort((best_docs, -best))  # best first; ties by corpus position, for determinism
        return np.take_along_axis(best_docs, order, 1), np.take_along_axis(best, order, 1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vectors as one ``.npy`` file (written whole, then renamed: never half a file)."""
        path = Path(path)
        partial = path.with_suffix(".partial.npy")
        np.save(partial, self.vectors)
        partial.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> DenseIndex:
        return cls(np.load(path, mmap_mode="r" if mmap else None))


def reciprocal_rank_fusion(*ranked: np.ndarray, k: int = RRF_K) -> tuple[np.ndarray, np.ndarray]:
    """Fuse lists of corpus positions (rows x width each, best first, -1 for none) by reciprocal rank:
    each document scores ``sum(1 / (k + rank))`` over the lists that hold it. Returns the union per row, best
    first (ties by position), padded with -1, and the fused scores (0 for padding)."""
    rows = ranked[0].shape[0]
    docs = np.hstack(ranked)
    ranks = np.hstack([np.broadcast_to(np.arange(1, r.shape[1] + 1), r.shape) for r in ranked])
    gains = np.where(docs >= 0, 1.0 / (k + ranks), 0.0)
    width = docs.shape[1]
    out_docs = np.full((rows, width), -1, dtype=np.int64)
    out_scores = np.zeros((rows, width), dtype=np.float64)
    for r in range(rows):  # a few hundred candidates a row: unique and bincount are the fast path
        valid = docs[r] >= 0
        unique, inverse = np.unique(docs[r][valid], return_inverse=True)
        fused = np.bincount(inverse, weights=gains[r][valid], minlength=len(unique))
        order = np.lexsort((unique, -fused))
        out_docs[r, : len(unique)], out_scores[r, : len(unique)] = unique[order], fused[order]
    return out_docs, out_scores
