"""The hard-negative guards' names: the per-row ``{key}_dropped`` fields and the summary's counts."""

from __future__ import annotations

__all__ = ["GUARDS"]

# What each guard is called: the per-row column's fields and the summary's ``dropped_candidates``.
GUARDS = {
    "positive": "positive or exact duplicate",
    "excluded": "excluded (exclude_ids)",
    "duplicate": "near-duplicate of the positive (dedup)",
    "score_ratio": "scores too close to the positive",
    "idf_cosine": "similar to the positive (IDF cosine)",
    "shared_passage": "shares a passage with the positive",
    "overlap": "overlaps the positive",
    "semantic": "similar to the positive (embeddings)",
    "not_embedded": "could not be embedded",
    "reranker": "answers as well as the positive (reranker)",
    "not_reranked": "could not be reranked",
}
