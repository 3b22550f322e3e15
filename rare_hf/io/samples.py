"""The bundled sample corpus (20 short domain documents written for rare_hf, CC0)."""

from __future__ import annotations

import json
from importlib import resources

import datasets

__all__ = ["load_sample_documents"]


def load_sample_documents() -> datasets.Dataset:
    """The sample documents as a ``Dataset`` with ``doc_id``, ``domain``, ``title`` and ``text`` columns.

    Example:
        >>> docs = rare_hf.load_sample_documents()
        >>> len(docs), docs.column_names
        (20, ['doc_id', 'domain', 'title', 'text'])
    """
    lines = resources.files("rare_hf").joinpath("data/sample_documents.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return datasets.Dataset.from_list(records)
