"""One mining round's choice: per row, the first candidates that pass the lexical guards (the kernel), and
the batch's results as rows finish their rounds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..retrieval.kernels import csr_rows, pick
from ._guards import GUARDS

if TYPE_CHECKING:
    from ._miner import Miner


class Mined:
    """One batch's results, by row of the batch's rows to mine."""

    def __init__(self, rows: int) -> None:
        self.picks: list[tuple[list[int], list[float]]] = [([], [])] * rows  # corpus positions, scores
        self.positive_scores = np.full(rows, np.nan, dtype=np.float32)
        self.positive_ranks = np.full(rows, -1, dtype=np.int64)  # -1: below every candidate retrieved, or unscored
        self.counts = np.zeros((len(GUARDS), rows), dtype=np.int64)  # candidates dropped, by guard
        self.false_negatives: dict[int, list[int]] = {}  # rewritten copies of the positive, for relabelling

    def rank(self, pending: np.ndarray, scores: np.ndarray) -> None:
        """Each pending row's positive's rank among the candidates retrieved: exact when a candidate scored no
        higher than it (everything above it was retrieved), unknown (-1) when all of them scored higher."""
        positive = self.positive_scores[pending][:, None]
        above = (scores > positive).sum(axis=1)
        known = ~np.isnan(positive[:, 0]) & (above < scores.shape[1])
        self.positive_ranks[pending] = np.where(known, above + 1, -1)


class Picker:
    """The kernel's first ``num_neg`` candidates per row that pass the lexical guards, for any subset of one
    round's rows (picking again after the semantic guard dropped some)."""

    def __init__(
        self,
        miner: Miner,
        docs: np.ndarray,
        keep: np.ndarray,
        pos_doc: np.ndarray,
        passages: tuple[np.ndarray, np.ndarray],
        counts: dict[str, np.ndarray],
    ) -> None:
        self.miner, self.docs, self.keep, self.pos_doc, self.passages, self.counts = (
            miner, docs, keep, pos_doc, passages, counts,
        )  # fmt: skip

    def pick(self, rows: np.ndarray) -> np.ndarray:
        index, filters = self.miner.index, self.miner.filters
        keep = self.keep[rows]  # the kernel marks what it drops: written back so a later pick skips it
        chosen, overlapping, sharing = pick(
            self.docs[rows].astype(np.int64),
            keep,
            self.pos_doc[rows],
            index.token_indptr,
            index.token_ids,
            index.passage_indptr,
            index.passage_ids,
            *csr_rows(*self.passages, rows),
            -1.0 if filters.max_overlap is None else filters.max_overlap,
            filters.num_neg,
            filters.skip_top,
        )
        self.keep[rows] = keep
        self.counts["overlap"][rows] += overlapping
        self.counts["shared_passage"][rows] += sharing
        return chosen
