"""Small helpers over ``datasets`` objects shared by the steps and the retrieval layer."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import datasets

DOC_ID = "doc_id"
ID = "id"  # an input's own document ids, used as doc_id when they are unique
TITLE = "title"  # an input's own document titles, carried into the retrieval exports


def column_values(ds: datasets.Dataset, column: str) -> list[Any]:
    """A column as a Python list, fast (``ds[column]`` is a lazy per-row view in datasets >= 4)."""
    return ds.with_format("arrow")[column].to_pylist()


def arrow_column(ds: datasets.Dataset, column: str) -> Any:
    """A column as Arrow, in the dataset's row order (``ds.data`` ignores a ``select``/``filter``'s indices)."""
    return ds.with_format("arrow")[column]


def doc_id_for(text: object) -> str:
    """A stable id from a document's content: the same text gets the same id in every run."""
    return hashlib.sha1(str(text).encode("utf-8")).hexdigest()[:16]


def doc_ids(ds: datasets.Dataset, text_key: str) -> list[str]:
    """Each row's document id: its ``doc_id``; else the input's own ``id`` column when its values are unique and
    present (a corpus' ids then run through to every export); else a hash of the text (:func:`doc_id_for`)."""
    texts = column_values(ds, text_key)
    for column in (DOC_ID, ID):
        if column not in ds.column_names:
            continue
        given = column_values(ds, column)
        if column == DOC_ID:
            return [doc_id_for(t) if i is None else str(i) for i, t in zip(given, texts)]
        if None not in given and len(set(map(str, given))) == len(given):
            return [str(i) for i in given]
    return [doc_id_for(t) for t in texts]


@contextlib.contextmanager
def quiet_datasets_progress() -> Iterator[None]:
    """Hide datasets' own "Map" bar while our step shows a richer one; restore the user's setting after."""
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets.utils.logging.enable_progress_bar()
