"""Step 2 (BM25HardNeg): documents that look relevant to a question but are not its source."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import Any, Literal

import datasets

from ..retrieval.bm25 import BM25Index
from ..utils.datasets import DOC_ID, column_values
from . import _plumbing
from ..teacher.embedder import Embedder
from ..teacher.reranker import Reranker
from ._candidates import METHODS, Candidates, Method
from ._dense import dense_index
from ._miner import GUARDS, Filters, Miner
from ._rerank import RerankGuard
from ._semantic import SemanticGuard
from .base import Column
from .dedup import cluster_labels
from .registry import PlanContext, Read, StepDefinition
from .summary import StepSummary

__all__ = ["add_hard_negatives"]


def add_hard_negatives(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    input_question_key: str = "question",
    input_text_key: str = "text",
    output_negatives_key: str = "hard_negatives",
    num_neg: int = 3,
    min_neg: int = 1,
    corpus: datasets.Dataset | list[str] | BM25Index | str | os.PathLike[str] | None = None,
    skip_top: int = 0,
    max_score_ratio: float | None = 0.95,
    max_overlap: float | None = 0.6,
    max_similarity: float | None = 0.4,
    exclude_shared_passages: bool = True,
    exclude_ids: Collection[str] | None = None,
    embedder: Embedder | None = None,
    method: Method = "bm25",
    max_semantic_similarity: float | Literal["auto"] | None = "auto",
    false_negatives: Literal["drop", "positive"] = "drop",
    reranker: Reranker | None = None,
    max_rerank_ratio: float = 0.95,
    k1: float = 0.9,
    b: float = 0.4,
    language: str | None = "auto",
    stopwords: str | list[str] | None = "en",
    batch_size: int = 10_000,
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Mine BM25 hard negatives for every question: top-ranked documents that are not its source.

    Args:
        ds: A ``Dataset`` or ``DatasetDict`` with a question and a text (positive document) column.
        input_question_key: Column of the queries.
        input_text_key: Column of the positive documents.
        output_negatives_key: Column to write (a list of document texts per row).
        num_neg: Negatives per question.
        min_neg: Rows with fewer negatives than this fail (``short: ...`` in ``{key}_error``); rows with at
            least ``min_neg`` but fewer than ``num_neg`` are kept and counted as short in the summary.
        corpus: Where negatives come from. ``None``: the split's own unique documents. Otherwise a
            ``Dataset`` (with ``input_text_key`` and optionally ``doc_id``), a list of texts, a
            :class:`BM25Index`, or the folder of a saved index (loaded memory-mapped).
        skip_top: Skip this many of the best remaining candidates (ReasonIR skipped 20) to avoid
            unlabelled positives.
        max_score_ratio: Drop candidates scoring above this fraction of the positive's own score
            (positive-aware false-negative filter); ``None`` disables it.
        max_overlap: Drop candidates whose distinct terms overlap the positive's by more than this (Jaccard:
            shared terms over all terms of both, so a short document is not penalised for being short);
            ``None`` disables it.
        max_similarity: Drop candidates whose IDF-weighted cosine with the positive (their distinct terms,
            each weighted by the corpus's BM25 IDF) is above this: a rewritten copy of the positive shares its
            rare terms even when it shares few words (a re-edited version, a mirror, the next manual's
            section). 0.4 (default) removed half the rewritten twins left by the other guards on a benchmark of
            two versions of the same documentation, for 3-5 % of hardness (README, "False negatives");
            ``None`` disables it.
        exclude_shared_passages: Drop candidates that share a passage with the positive: a run of 13 or
            more words (any shared run of 16 words is always found). Overlapping chunks of one document
            share passages even when they share few terms, and the sibling chunk holds the answer.
        exclude_ids: ``doc_id`` s never served as a negative, e.g. documents held out for evaluation
            (:func:`rare_hf.held_out_documents`), so no training row shows a test document.
        embedder: A :class:`rare_hf.Embedder`: turns on the semantic false-negative guard. The positives and
            the candidates about to be served are embedded (not the whole corpus) and a candidate too close
            to its positive — a rewritten copy, which answers the question — is replaced by the next one.
        method: Where candidates come from: ``"bm25"`` (default), ``"dense"`` (the embedder's nearest documents
            to the question, exact search in numpy) or ``"hybrid"`` (both lists fused by reciprocal rank, as
            ReasonIR and ReasonEmbed mine). Dense and hybrid embed the whole corpus once: beside a saved index
            (``corpus=`` its folder or a loaded :class:`BM25Index`) the vectors are stored under a name that
            fingerprints corpus and model, and the next run loads them; otherwise the embedder's response cache
            makes a re-run free. With them,
            ``{key}_scores`` and ``max_score_ratio`` use the question's cosine similarity to each document
            (NV-Retriever's positive-aware filter) instead of BM25 scores. Needs ``embedder``.
        max_semantic_similarity: The guard's cut-off on the cosine similarity of a candidate with the
            positive. ``"auto"`` (default) derives it from the run: halfway from the median candidate's similarity
            to an exact copy's (1.0), since embedding models spread similarities differently and a fixed number
            does not travel across them (all-MiniLM-L6-v2 on the Django benchmark: cut-off 0.79, rewritten twins
            0.6 % -> 0.2 % of rows, hardness -3 %); the value used is in the summary. A float fixes it; ``None``
            turns the guard off even with an embedder.
        false_negatives: What becomes of candidates the semantic guard drops: ``"drop"`` (default), or
            ``"positive"``: kept as extra positives in ``{key}_positives`` / ``{key}_positives_ids``, which the
            retrieval exports use (RLHN relabels false negatives so rather than losing them). The reranker's
            catches are treated the same way.
        reranker: A :class:`rare_hf.Reranker` (a cross-encoder on a ``/v1/rerank`` endpoint): each row's question
            is scored against its positive and the candidates about to be served (after the semantic guard, when
            both are given); one scoring at least ``max_rerank_ratio`` of the positive's answers as well as the
            source and is replaced. One request per row (more when replacements need judging too).
        max_rerank_ratio: The reranker guard's cut-off, a share of the positive's score (0.95: NV-Retriever's
            positive-aware margin; scores outside [0, 1] go through a sigmoid first).
        k1, b, language, stopwords: BM25 and tokenisation settings when an index is built here. ``language``
            is ``"auto"`` by default: Chinese, Japanese, Korean and Thai corpora are detected and indexed as
            character bigrams, others with English stemming; see :meth:`BM25Index.build`.
        batch_size: Questions retrieved per batch (bounds memory).
        overwrite: Replace output columns that already exist instead of raising.
        show_progress: Show progress bars.
        return_summary: Also return the :class:`StepSummary`.

    Returns:
        The dataset with ``{key}`` (list of texts, best first), ``{key}_ids`` (their ``doc_id``),
        ``{key}_scores`` (BM25 scores), ``{key}_positive_score``, ``{key}_dropped`` (candidates each guard
        removed from the row) and ``{key}_error`` (why a row was not mined, else ``None``), where ``{key}`` is
        ``output_negatives_key``; ``doc_id`` is added if absent.
        The question's own document is never returned, neither by ``doc_id`` nor as an exact (case- and
        whitespace-insensitive) copy. Rows with fewer candidates keep what was found.

    Example:
        >>> ds = rare_hf.add_hard_negatives(ds, num_neg=3)
        >>> ds[0]["hard_negatives"]
    """
    _check_numbers(num_neg, skip_top, max_score_ratio, max_overlap, max_similarity)
    _check_semantic(embedder, max_semantic_similarity, false_negatives, method, reranker, max_rerank_ratio)
    if not 0 <= min_neg <= num_neg:
        raise ValueError(f"min_neg must be between 0 and num_neg ({num_neg}), got {min_neg}.")
    key = output_negatives_key
    relabel = false_negatives == "positive"
    outputs = [c.name for c in negative_columns(key, relabel)]
    reads = DEFINITION.reads({"input_question_key": input_question_key, "input_text_key": input_text_key})
    for split in _plumbing.splits_of(ds):
        _plumbing.check_reads(split, reads)
        _plumbing.free_output_columns(split, outputs, overwrite)
    shared_index = _external_index(corpus, input_text_key, k1, b, language, stopwords, show_progress)
    filters = Filters(
        num_neg,
        min_neg,
        skip_top,
        max_score_ratio,
        max_overlap,
        exclude_shared_passages,
        frozenset(exclude_ids or ()),
        max_similarity,
        relabel,
    )

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.with_doc_ids(_plumbing.free_output_columns(split, outputs, overwrite), input_text_key)
        if shared_index is not None:
            index = shared_index
        elif len(split):
            index = _own_index(split, input_text_key, k1, b, language, stopwords, show_progress)
        else:
            index = None  # an empty split: nothing to index, nothing to mine
        guard, candidates, dense_params = _embedding_parts(
            index, embedder, method, max_semantic_similarity, len(split), show_progress
        )
        rerank = RerankGuard(reranker, max_rerank_ratio, index) if reranker is not None and index is not None else None
        miner = Miner(
            index, filters, input_question_key, input_text_key, negative_columns(key, relabel), len(split),
            show_progress, [judge for judge in (guard, rerank) if judge is not None], candidates,
            None if index is None else cluster_labels(split, index),
        )  # fmt: skip
        try:
            out = miner.run(split, batch_size)
        finally:
            miner.close()
        params = {
            "num_neg": num_neg,
            "min_neg": min_neg,
            "skip_top": skip_top,
            "max_score_ratio": max_score_ratio,
            "max_overlap": max_overlap,
            "max_similarity": max_similarity,
            "exclude_shared_passages": exclude_shared_passages,
            "excluded_ids": len(filters.exclude_ids),
            "false_negatives": false_negatives,
            **_semantic_params(guard, embedder, max_semantic_similarity),
            **dense_params,
            **({} if rerank is None else rerank.params()),
            "corpus": "own documents" if corpus is None else type(corpus).__name__,
            "corpus_size": len(index) if index is not None else 0,
            **(index.params if index is not None else {}),
        }
        return out, miner.summary(out, params, time.monotonic() - started)

    return _plumbing.for_each_split(ds, one_split, return_summary)


def negative_columns(key: str = "hard_negatives", relabel: bool = False) -> list[Column]:
    """The columns :func:`add_hard_negatives` writes with ``output_negatives_key=key`` (and, with
    ``false_negatives="positive"``, ``relabel=True``)."""
    strings = datasets.List(datasets.Value("string"))
    guards = ", ".join(GUARDS)
    columns = [
        Column(key, strings, "BM25 hard negatives: documents that look relevant but are not the source, best first."),
        Column(f"{key}_ids", strings, "doc_id of each hard negative."),
        Column(
            f"{key}_scores",
            datasets.List(datasets.Value("float32")),
            "Score of each hard negative for the question: BM25, or cosine similarity (dense and hybrid mining).",
        ),
        Column(f"{key}_positive_score", datasets.Value("float32"), "The source document's score, the same way."),
        Column(
            f"{key}_positive_rank",
            datasets.Value("int32"),
            "The source document's rank for the question (1: retrieved first; null: below every candidate retrieved).",
        ),
        Column(
            f"{key}_dropped",
            datasets.Features({guard: datasets.Value("int32") for guard in GUARDS}),
            f"Candidates each guard removed before the negatives were chosen ({guards}).",
        ),
        Column(f"{key}_error", datasets.Value("string"), "Why the row was not mined (null when it was)."),
    ]
    if relabel:
        columns += [
            Column(f"{key}_positives", strings, "Extra positives: candidates so close to the source that they answer."),
            Column(f"{key}_positives_ids", strings, "doc_id of each extra positive."),
        ]
    return columns


def _check_numbers(
    num_neg: int, skip_top: int, max_score_ratio: float | None, max_overlap: float | None, max_similarity: float | None
) -> None:
    if num_neg < 1:
        raise ValueError(f"num_neg must be >= 1, got {num_neg}.")
    if skip_top < 0:
        raise ValueError(f"skip_top must be >= 0, got {skip_top}.")
    if max_score_ratio is not None and max_score_ratio <= 0:
        raise ValueError(f"max_score_ratio must be > 0 (or None to disable), got {max_score_ratio}.")
    if max_overlap is not None and not 0 < max_overlap <= 1:
        raise ValueError(f"max_overlap must be in (0, 1] (or None to disable), got {max_overlap}.")
    if max_similarity is not None and not 0 < max_similarity <= 1:
        raise ValueError(f"max_similarity must be in (0, 1] (or None to disable), got {max_similarity}.")


def _embedding_parts(
    index: BM25Index | None, embedder: Embedder | None, method: Method, threshold: Any, total: int, show_progress: bool,
) -> tuple[SemanticGuard | None, Candidates | None, dict[str, Any]]:  # fmt: skip
    """The semantic guard and the candidates' source of one split, sharing one embedding run (its usage)."""
    if index is None or embedder is None:
        return None, None, {}
    run, dense, params = embedder.new_run("hard negatives"), None, {"mining": method}
    if method != "bm25":
        dense, failed, source = dense_index(embedder, index, index.path, run, show_progress)
        params |= {"dense_vectors": source, "corpus_not_embedded": failed}
    guard = None if threshold is None else SemanticGuard(embedder, threshold, index, run, dense)
    return guard, Candidates(index, method, dense, embedder, run, total), params


def _check_semantic(
    embedder: Any, threshold: Any, false_negatives: str, method: str, reranker: Any, max_rerank_ratio: float
) -> None:
    if reranker is not None and not isinstance(reranker, Reranker):
        raise TypeError(f"reranker must be a rare_hf.Reranker or None, got {type(reranker).__name__}.")
    if not 0 < max_rerank_ratio <= 1:
        raise ValueError(f"max_rerank_ratio must be in (0, 1], got {max_rerank_ratio}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    if method != "bm25" and embedder is None:
        raise ValueError(f"method={method!r} needs an embedder: pass embedder=rare_hf.Embedder(...).")
    if embedder is not None and not isinstance(embedder, Embedder):
        raise TypeError(f"embedder must be a rare_hf.Embedder or None, got {type(embedder).__name__}.")
    if (
        threshold != "auto"
        and threshold is not None
        and not (isinstance(threshold, (int, float)) and -1 < threshold < 1)
    ):
        raise ValueError(f"max_semantic_similarity must be 'auto', a number in (-1, 1) or None, got {threshold!r}.")
    if false_negatives not in ("drop", "positive"):
        raise ValueError(f"false_negatives must be 'drop' or 'positive', got {false_negatives!r}.")
    if false_negatives == "positive" and (embedder is None or threshold is None) and reranker is None:
        raise ValueError(
            "false_negatives='positive' needs a guard that finds them: embedder=rare_hf.Embedder(...) (with "
            "max_semantic_similarity on) or reranker=rare_hf.Reranker(...)."
        )


def _semantic_params(guard: SemanticGuard | None, embedder: Any, threshold: Any) -> dict[str, Any]:
    if embedder is None:
        return {}
    used = None if guard is None or guard.threshold is None else round(guard.threshold, 4)
    return {
        "embedder": embedder.fingerprint,
        "max_semantic_similarity": threshold,
        "semantic_threshold_used": used,
    }


def _external_index(
    corpus: Any, text_key: str, k1: float, b: float, language: str | None, stopwords: Any, show_progress: bool
) -> BM25Index | None:
    if corpus is None or isinstance(corpus, BM25Index):
        return corpus
    if isinstance(corpus, (str, os.PathLike)):
        return BM25Index.load(corpus, mmap=True)
    if isinstance(corpus, datasets.Dataset):
        _plumbing.require_string_column(corpus, "input_text_key (in corpus)", text_key)
        ids = column_values(corpus, "doc_id") if "doc_id" in corpus.column_names else None
        return BM25Index.build(
            column_values(corpus, text_key),
            ids,
            k1=k1,
            b=b,
            language=language,
            stopwords=stopwords,
            show_progress=show_progress,
        )
    if isinstance(corpus, (list, tuple)):
        return BM25Index.build(
            list(corpus), k1=k1, b=b, language=language, stopwords=stopwords, show_progress=show_progress
        )
    raise TypeError(
        f"corpus must be None, a datasets.Dataset, a list of strings, a BM25Index or the path of "
        f"a saved index; got {type(corpus).__name__}."
    )


def _own_index(
    ds: datasets.Dataset, text_key: str, k1: float, b: float, language: str | None, stopwords: Any, show_progress: bool
) -> BM25Index:
    return BM25Index.build(
        column_values(ds, text_key),
        column_values(ds, DOC_ID),
        k1=k1,
        b=b,
        language=language,
        stopwords=stopwords,
        show_progress=show_progress,
    )


class _Definition(StepDefinition):
    function = staticmethod(add_hard_negatives)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        num_neg = ctx.options["num_neg"]
        return {
            "input_question_key": ctx.column("question", "question"),
            "input_text_key": ctx.column("text", "text"),
            "num_neg": 2 * num_neg if "verify_negatives" in ctx.chosen else num_neg,  # replacements for dropped ones
        }

    def provides(self, kwargs: dict[str, Any]) -> dict[str, str]:
        return {"hard_negatives": _plumbing.arguments(add_hard_negatives, kwargs)["output_negatives_key"]}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        args = _plumbing.arguments(add_hard_negatives, kwargs)
        return [
            Read("input_question_key", args["input_question_key"], "string"),
            Read("input_text_key", args["input_text_key"], "string"),
        ]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        relabel = _plumbing.arguments(add_hard_negatives, kwargs)["false_negatives"] == "positive"
        return negative_columns(self.provides(kwargs)["hard_negatives"], relabel)

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return f"{self.provides(kwargs)['hard_negatives']}_error"


DEFINITION = _Definition()
