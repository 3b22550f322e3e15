"""A retrieval benchmark of the user's own domain: documents held out of training, and their questions as a
BEIR / MTEB test set (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``). The questions are ReasonIR-style
(a scenario and a question that needs reasoning), so the set measures what BRIGHT measures, on this corpus."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Unpack

import datasets

from ..utils.datasets import TITLE, column_values, doc_ids, quiet_datasets_progress
from .retrieval_formats import RetrievalColumns, read_rows

__all__ = ["split_for_eval", "held_out_documents", "to_beir", "save_beir"]

logger = logging.getLogger(__name__)


def split_for_eval(
    ds: datasets.Dataset,
    eval_fraction: float = 0.1,
    *,
    seed: int = 0,
    drop_held_out_negatives: bool = True,
    input_text_key: str = "text",
    input_hardneg_key: str = "hard_negatives",
) -> datasets.DatasetDict:
    """Hold out a share of the documents, with every question about them, for evaluation.

    Split by document, not by row: a document with several questions is wholly in one split. Held-out
    documents are also taken out of the training rows' negatives (with their ids and scores), so a retriever
    trained on ``train`` never sees a test document.

    Args:
        ds: The enriched dataset (any step's output).
        eval_fraction: Share of the documents to hold out, in (0, 1) (:func:`held_out_documents`).
        seed: Seeds the choice of documents.
        drop_held_out_negatives: Take held-out documents out of the training rows' negatives (for retriever
            training). ``False`` keeps the rows as the teacher saw them, which reasoning exports need: their
            prompts show every negative (a held-out document there is a distractor, never the answer's source).
        input_text_key / input_hardneg_key: The documents' and the negatives' columns.

    Returns:
        A ``DatasetDict`` with ``train`` and ``test``.

    Example:
        >>> split = rare_hf.split_for_eval(ds, 0.1)
        >>> train = rare_hf.to_sentence_transformers(split["train"])
        >>> rare_hf.save_beir(rare_hf.to_beir(split["test"], corpus=ds), "my_domain_beir")
    """
    docs = doc_ids(ds, input_text_key)
    held = held_out_documents(docs, eval_fraction, seed=seed)
    unique = set(docs)
    test_rows = [i for i, d in enumerate(docs) if d in held]
    train_rows = [i for i, d in enumerate(docs) if d not in held]
    train = ds.select(train_rows)
    if drop_held_out_negatives:
        train = _without_negatives(train, held, input_hardneg_key)
    logger.info("held out %d of %d documents (%d rows) for evaluation", len(held), len(unique), len(test_rows))
    return datasets.DatasetDict({"train": train, "test": ds.select(test_rows)})


def held_out_documents(doc_ids: Iterable[str], eval_fraction: float, *, seed: int = 0) -> set[str]:
    """The documents :func:`split_for_eval` holds out: each by a hash of its id and the seed, so the choice of a
    document never changes when rows are added, dropped or failed, and can be made before any step runs (pass
    it to ``add_hard_negatives(exclude_ids=...)`` so no training row is mined a test document).

    Args:
        doc_ids: The documents' ids (``doc_id``), repeats allowed.
        eval_fraction: The share to hold out, in (0, 1): each document with that probability, at least one,
            never all.
        seed: Another seed, another choice.

    Returns:
        The held-out ids.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1 (a share of the documents), got {eval_fraction}.")
    ranked = sorted(set(doc_ids), key=lambda d: _unit_hash(seed, d))
    if len(ranked) < 2:
        raise ValueError(f"eval_fraction: {len(ranked)} document(s) cannot be split into training and evaluation.")
    held = [d for d in ranked if _unit_hash(seed, d) < eval_fraction]
    return set(held[: len(ranked) - 1] or ranked[:1])


def _unit_hash(seed: int, doc_id: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def to_beir(
    ds: datasets.Dataset,
    *,
    corpus: datasets.Dataset | None = None,
    **columns: Unpack[RetrievalColumns],
) -> datasets.DatasetDict:
    """A BEIR / MTEB retrieval test set: every row with a question is a query whose relevant documents are its
    source and its extra positives (``add_hard_negatives(false_negatives="positive")``).

    Args:
        ds: The evaluation rows (``split_for_eval(...)["test"]``, or a whole dataset to test an existing
            retriever on the domain).
        corpus: The documents to retrieve from (a dataset with the same text column, e.g. the whole enriched
            dataset); default: the documents of ``ds`` and every negative mined for it.
        **columns: Column names when not the defaults (:class:`rare_hf.RetrievalColumns`).

    Returns:
        A ``DatasetDict``: ``corpus`` (``_id``, ``title``, ``text``), ``queries`` (``_id``, ``text``) and ``qrels``
        (``query-id``, ``corpus-id``, ``score``), ids consistent with the training exports.

    Example:
        >>> beir = rare_hf.to_beir(split["test"], corpus=ds)
        >>> rare_hf.save_beir(beir, "my_domain_beir")   # then: beir's GenericDataLoader("my_domain_beir")
    """
    rows = read_rows(ds, columns, need_negatives=False)
    if not len(rows):
        raise ValueError("to_beir: no row has a question; run the questions step first.")
    text_key = columns.get("input_text_key", "text")
    documents: dict[str, tuple[str, str]] = {}
    if corpus is not None:
        _corpus_documents(corpus, text_key, columns.get("input_title_key", TITLE), documents)
    else:
        for r, (doc, text) in enumerate(zip(rows.doc_id, rows.text)):
            for i, t in [
                (doc, text),
                *zip(rows.extra_ids[r], rows.extra[r]),
                *zip(rows.negative_ids[r], rows.negatives[r]),
            ]:
                documents.setdefault(i, (rows.title(i), t))
    relevant = [(q, d) for r, q in enumerate(rows.query_id) for d in [rows.doc_id[r], *rows.extra_ids[r]]]
    relevant = [(q, d) for q, d in relevant if d in documents or d in rows.doc_id]
    missing = sorted(set(rows.doc_id) - set(documents))
    if missing:
        raise ValueError(f"corpus: {len(missing)} source document(s) of the queries are not in it, e.g. {missing[0]}.")
    return datasets.DatasetDict(
        {
            "corpus": datasets.Dataset.from_dict(
                {
                    "_id": list(documents),
                    "title": [t for t, _ in documents.values()],
                    "text": [x for _, x in documents.values()],
                }
            ),
            "queries": datasets.Dataset.from_dict({"_id": rows.query_id, "text": rows.query}),
            "qrels": datasets.Dataset.from_dict(
                {
                    "query-id": [q for q, _ in relevant],
                    "corpus-id": [d for _, d in relevant],
                    "score": [1] * len(relevant),
                }
            ),
        }
    )


def save_beir(beir: datasets.DatasetDict, folder: str | os.PathLike[str]) -> Path:
    """Write :func:`to_beir`'s output in BEIR's folder layout: ``corpus.jsonl``, ``queries.jsonl`` and
    ``qrels/test.tsv`` (with its header line), which ``beir``'s ``GenericDataLoader`` and MTEB read.

    Returns:
        The folder.
    """
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with quiet_datasets_progress():
        beir["corpus"].to_json(str(folder / "corpus.jsonl"), lines=True, force_ascii=False)
        beir["queries"].to_json(str(folder / "queries.jsonl"), lines=True, force_ascii=False)
        beir["qrels"].to_csv(str(folder / "qrels" / "test.tsv"), sep="\t", index=False)
    return folder


def _without_negatives(ds: datasets.Dataset, held: set[str], key: str) -> datasets.Dataset:
    """Take the held-out documents out of each row's negatives (their ids and scores) and extra positives."""
    ds = _without_held(ds, held, f"{key}_ids", (key, f"{key}_scores"))
    return _without_held(ds, held, f"{key}_positives_ids", (f"{key}_positives",))


def _without_held(ds: datasets.Dataset, held: set[str], ids_key: str, aligned: tuple[str, ...]) -> datasets.Dataset:
    """Take the held-out documents out of the list column ``ids_key`` and the lists ``aligned`` with it."""
    if ids_key not in ds.column_names:
        return ds
    present = [c for c in (ids_key, *aligned) if c in ds.column_names]
    ids = column_values(ds, ids_key)
    if not any(i in held for row in ids if row for i in row):
        return ds
    values = {c: column_values(ds, c) for c in present}
    removed = 0
    for r, row_ids in enumerate(ids):
        if not row_ids:
            continue
        kept = [j for j, i in enumerate(row_ids) if i not in held]
        removed += len(row_ids) - len(kept)
        for c in present:
            if values[c][r] is not None:
                values[c][r] = [values[c][r][j] for j in kept]
    logger.info("took %d held-out documents out of the training rows' %s", removed, ids_key)
    out = ds
    for c in present:
        out = out.remove_columns(c).add_column(c, values[c], feature=ds.features[c])
    return out.select_columns(ds.column_names)


def _corpus_documents(corpus: datasets.Dataset, text_key: str, title_key: str, into: dict) -> None:
    if text_key not in corpus.column_names:
        raise ValueError(f"corpus: column '{text_key}' (the documents' text) not found; it has {corpus.column_names}.")
    titles = column_values(corpus, title_key) if title_key in corpus.column_names else [None] * len(corpus)
    for i, text, title in zip(doc_ids(corpus, text_key), column_values(corpus, text_key), titles):
        into.setdefault(i, ("" if title is None else str(title), text))
