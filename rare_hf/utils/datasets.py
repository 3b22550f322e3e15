"""Small helpers over ``datasets`` objects shared by the steps and the retrieval layer."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import datasets

DOC_ID = "doc_id"


def column_values(ds: datasets.Dataset, column: str) -> list[Any]:
    """A column as a Python list, fast (``ds[column]`` is a lazy per-row view in datasets >= 4)."""
    return ds.with_format("arrow")[column].to_pylist()


def doc_id_for(text: object) -> str:
    """A stable id from a document's content: the same text gets the same id in every run."""
    return hashlib.sha1(str(text).encode("utf-8")).hexdigest()[:16]


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
