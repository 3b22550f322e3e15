"""Retriever exports, for an embedding model trained on the questions and their mined negatives:
sentence-transformers' n-tuples (with BM25 scores for distillation losses), FlagEmbedding's JSONL and Tevatron's
passages. All three read the same rows: a question, its positive (and the extra positives the semantic guard
relabelled, ``add_hard_negatives(false_negatives="positive")``) and its negatives, best first."""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any, TypedDict, Unpack

import datasets

from ..steps import _plumbing
from ..utils.datasets import TITLE, column_values, doc_id_for, doc_ids

__all__ = [
    "to_retrieval_triples",
    "to_sentence_transformers",
    "to_flag_embedding",
    "RetrievalColumns",
    "query_ids",
    "DEFAULT_QUERY_PROMPT",
]

logger = logging.getLogger(__name__)

DEFAULT_QUERY_PROMPT = "Represent this question for retrieving documents that help answer it: "


class RetrievalColumns(TypedDict, total=False):
    """The columns the questions and hard-negative steps read and wrote, when they are not the defaults;
    ``include_scenario=False`` leaves the scenario out of each query (ReasonIR's hard queries keep it)."""

    input_text_key: str
    input_question_key: str
    input_scenario_key: str
    input_hardneg_key: str
    input_title_key: str
    include_scenario: bool


def query_ids(ds: datasets.Dataset, text_key: str = "text") -> list[str]:
    """Each row's query id, ``{doc_id}-{k}`` for the k-th question of its document: the same in every export
    of the same data, and unchanged when rows of other documents are held out."""
    seen: collections.Counter[str] = collections.Counter()
    ids = []
    for doc in doc_ids(ds, text_key):
        ids.append(f"{doc}-{seen[doc]}")
        seen[doc] += 1
    return ids


@dataclasses.dataclass
class _Rows:
    """The rows with a question (and, when asked, negatives), read column-wise once."""

    query_id: list[str]
    query: list[str]
    doc_id: list[str]
    text: list[str]
    negatives: list[list[str]]
    negative_ids: list[list[str]]
    negative_scores: list[list[float] | None]
    positive_score: list[float | None]
    titles: dict[str, str]
    written: list[list[str]] | None
    extra: list[list[str]]  # extra positives (relabelled false negatives), empty lists without them
    extra_ids: list[list[str]]

    def __len__(self) -> int:
        return len(self.query)

    def title(self, doc_id: str) -> str:
        return self.titles.get(doc_id, "")


def read_rows(ds: datasets.Dataset, columns: RetrievalColumns, *, need_negatives: bool = True) -> _Rows:
    """The retrieval view of ``ds`` (rows without a question, or without negatives when needed, are left out
    and logged)."""
    text_key = columns.get("input_text_key", "text")
    question_key = columns.get("input_question_key", "question")
    scenario_key = columns.get("input_scenario_key", "scenario")
    neg_key = columns.get("input_hardneg_key", "hard_negatives")
    needed = {"input_question_key": question_key, "input_text_key": text_key}
    _plumbing.require_columns(ds, **needed, **({"input_hardneg_key": neg_key} if need_negatives else {}))

    def values(column: str) -> list[Any]:
        return column_values(ds, column) if column in ds.column_names else [None] * len(ds)

    questions, texts, docs = values(question_key), values(text_key), doc_ids(ds, text_key)
    scenarios = values(scenario_key) if columns.get("include_scenario", True) else [None] * len(ds)
    negatives, neg_ids, neg_scores = values(neg_key), values(f"{neg_key}_ids"), values(f"{neg_key}_scores")
    positive_scores = values(f"{neg_key}_positive_score")
    written = values("written_negatives") if "written_negatives" in ds.column_names else None
    extra, extra_ids = values(f"{neg_key}_positives"), values(f"{neg_key}_positives_ids")
    keep = [
        i
        for i, (q, n) in enumerate(zip(questions, negatives))
        if isinstance(q, str) and q.strip() and (n or not need_negatives)
    ]
    if len(keep) < len(ds):
        why = "a question or negatives" if need_negatives else "a question"
        logger.info("retrieval export: left out %d of %d rows without %s", len(ds) - len(keep), len(ds), why)
    qids = query_ids(ds, text_key)
    return _Rows(
        query_id=[qids[i] for i in keep],
        query=[f"{scenarios[i]}\n{questions[i]}" if scenarios[i] else questions[i] for i in keep],
        doc_id=[docs[i] for i in keep],
        text=[texts[i] for i in keep],
        negatives=[negatives[i] or [] for i in keep],
        negative_ids=[neg_ids[i] or [doc_id_for(t) for t in negatives[i] or []] for i in keep],
        negative_scores=[neg_scores[i] for i in keep],
        positive_score=[positive_scores[i] for i in keep],
        titles=_titles(ds, docs, columns.get("input_title_key", TITLE)),
        written=None if written is None else [written[i] or [] for i in keep],
        extra=[extra[i] or [] for i in keep],
        extra_ids=[extra_ids[i] or [doc_id_for(t) for t in extra[i] or []] for i in keep],
    )


def to_retrieval_triples(ds: datasets.Dataset, **columns: Unpack[RetrievalColumns]) -> datasets.Dataset:
    """Retriever-training records in Tevatron's format: ``query_id``, ``query``, ``positive_passages`` (the
    source document, then any extra positives) and ``negative_passages`` (each a list of ``{"docid", "title",
    "text"}``), plus ``written_negative_passages``
    when the dataset has written negatives (:func:`rare_hf.add_written_negatives`): kept apart from the mined
    ones, with docids starting ``written-``, so a training mix can weigh them as ReasonIR did.

    Args:
        ds: A dataset with questions and hard negatives (``add_hard_negatives`` output).
        **columns: Column names when not the defaults (:class:`RetrievalColumns`). A ``title`` column
            (``input_title_key``) gives each passage its title (a negative's is found by its id among the
            dataset's documents; ``""`` when it is not there).

    Returns:
        A new ``Dataset``; rows without a question or without negatives are left out (and logged).

    Example:
        >>> triples = rare_hf.to_retrieval_triples(ds)
        >>> triples[0]["negative_passages"][0]["text"]
    """
    rows = read_rows(ds, columns)

    def passages(ids: list[str], texts: list[str]) -> list[dict[str, str]]:
        return [{"docid": i, "title": rows.title(i), "text": t} for i, t in zip(ids, texts)]

    data: dict[str, list[Any]] = {
        "query_id": rows.query_id,
        "query": rows.query,
        "positive_passages": [
            passages([d, *ids], [t, *extra])
            for d, t, ids, extra in zip(rows.doc_id, rows.text, rows.extra_ids, rows.extra)
        ],
        "negative_passages": [passages(i, t) for i, t in zip(rows.negative_ids, rows.negatives)],
    }
    if rows.written is not None:
        data["written_negative_passages"] = [
            [{"docid": f"written-{doc_id_for(t)}", "title": "", "text": t} for t in texts] for texts in rows.written
        ]
    return datasets.Dataset.from_dict(data)


def to_sentence_transformers(
    ds: datasets.Dataset,
    *,
    num_negatives: int | None = None,
    scores: bool = False,
    **columns: Unpack[RetrievalColumns],
) -> datasets.Dataset:
    """Records in sentence-transformers' n-tuple layout: ``anchor`` (the query), ``positive``, then
    ``negative_1`` … ``negative_n`` (``negative`` when n is 1), all plain strings, best negative first. A row
    with extra positives gives one more record per extra positive (same anchor and negatives): train with
    ``batch_sampler=BatchSamplers.NO_DUPLICATES`` so one batch never holds a query twice, where one of its
    positives would count as a negative of the other.

    Args:
        ds: A dataset with questions and hard negatives.
        num_negatives: Negatives per record; default: the count most rows have. Rows with fewer are left out
            (logged), rows with more keep their best ones.
        scores: Also a ``label`` column: ``[positive score, negative scores…]`` (BM25), the teacher scores that
            ``DistillKLDivLoss`` and ``MarginMSELoss`` distil. Rows without scores are left out.
        **columns: Column names when not the defaults (:class:`RetrievalColumns`).

    Returns:
        A new ``Dataset``; its column order is what the losses read (``label`` last).

    Example:
        >>> from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
        >>> model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        >>> train = rare_hf.to_sentence_transformers(ds)
        >>> SentenceTransformerTrainer(model=model, train_dataset=train,
        ...                            loss=losses.MultipleNegativesRankingLoss(model)).train()
    """
    rows = read_rows(ds, columns)
    n = num_negatives or _most_common_count(rows.negatives)
    if n < 1:
        raise ValueError(f"num_negatives must be at least 1, got {num_negatives}.")
    keep = [i for i in range(len(rows)) if len(rows.negatives[i]) >= n and (not scores or _has_scores(rows, i, n))]
    if len(keep) < len(rows):
        logger.info(
            "sentence-transformers: left out %d of %d rows with fewer than %d negatives%s",
            len(rows) - len(keep),
            len(rows),
            n,
            " or without scores" if scores else "",
        )
    names = ["negative"] if n == 1 else [f"negative_{j + 1}" for j in range(n)]
    records = [(i, positive) for i in keep for positive in (rows.text[i], *rows.extra[i])]
    data: dict[str, list[Any]] = {"anchor": [rows.query[i] for i, _ in records], "positive": [p for _, p in records]}
    for j, name in enumerate(names):
        data[name] = [rows.negatives[i][j] for i, _ in records]
    if scores:  # an extra positive answers as the source does: it takes the source's score
        data["label"] = [[rows.positive_score[i], *rows.negative_scores[i][:n]] for i, _ in records]
    return datasets.Dataset.from_dict(data)


def to_flag_embedding(
    ds: datasets.Dataset, *, prompt: str = DEFAULT_QUERY_PROMPT, **columns: Unpack[RetrievalColumns]
) -> datasets.Dataset:
    """Records in FlagEmbedding's fine-tuning format (BGE models): ``query``, ``pos`` (the source, then any extra
    positives) and ``neg`` (lists of strings), ``pos_scores`` and ``neg_scores`` (BM25, for its distillation
    option; an extra positive takes the source's score) and ``prompt`` (the query instruction).

    Args:
        ds: A dataset with questions and hard negatives.
        prompt: The instruction put before each query at training time.
        **columns: Column names when not the defaults (:class:`RetrievalColumns`).

    Returns:
        A new ``Dataset``; write it with ``.to_json("train.jsonl")`` for ``--train_data``.

    Example:
        >>> rare_hf.to_flag_embedding(ds).to_json("bge_train.jsonl")
        >>> # torchrun -m FlagEmbedding.finetune.embedder.encoder_only.base --train_data bge_train.jsonl ...
    """
    rows = read_rows(ds, columns)
    return datasets.Dataset.from_dict(
        {
            "query": rows.query,
            "pos": [[t, *extra] for t, extra in zip(rows.text, rows.extra)],
            "neg": rows.negatives,
            "pos_scores": [
                [s if s is not None else 1.0] * (1 + len(e)) for s, e in zip(rows.positive_score, rows.extra)
            ],
            "neg_scores": [s or [0.0] * len(n) for s, n in zip(rows.negative_scores, rows.negatives)],
            "prompt": [prompt] * len(rows),
        },
        features=datasets.Features(
            {
                "query": datasets.Value("string"),
                "pos": datasets.List(datasets.Value("string")),
                "neg": datasets.List(datasets.Value("string")),
                "pos_scores": datasets.List(datasets.Value("float32")),
                "neg_scores": datasets.List(datasets.Value("float32")),
                "prompt": datasets.Value("string"),
            }
        ),
    )


def _most_common_count(negatives: list[list[str]]) -> int:
    counts = collections.Counter(len(n) for n in negatives if n)
    return max(counts, key=lambda c: (counts[c], c)) if counts else 1


def _has_scores(rows: _Rows, i: int, n: int) -> bool:
    found = rows.negative_scores[i]
    return rows.positive_score[i] is not None and found is not None and len(found) >= n


def _titles(ds: datasets.Dataset, docs: list[str], title_key: str) -> dict[str, str]:
    """Document id to title, from the dataset's own documents (empty without a title column)."""
    if title_key not in ds.column_names:
        return {}
    return {d: str(t) for d, t in zip(docs, column_values(ds, title_key)) if t is not None}
