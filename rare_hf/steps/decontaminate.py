"""Decontamination: rows whose question or document shares a run of 13 words with an evaluation set the user
names (files, a ``Dataset``, a Hub id), flagged or dropped — so a model is not trained on the benchmark it is
reported on."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np

from ..retrieval.contamination import Reference
from ..utils.datasets import arrow_column, column_values
from . import _plumbing
from .base import Column
from .drops import DROP_COLUMN, DROP_REASON, filter_summary, mark_dropped
from .registry import PlanContext, Read, StepDefinition
from .summary import StepSummary

__all__ = ["decontaminate"]

Against = datasets.Dataset | datasets.DatasetDict | Sequence[str] | str | os.PathLike[str]
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def decontaminate(
    ds: datasets.Dataset | datasets.DatasetDict,
    *,
    against: Against,
    input_keys: Sequence[str] = ("question", "text"),
    against_keys: Sequence[str] | None = None,
    n: int = 13,
    max_share: float = 0.0,
    action: Literal["flag", "drop"] = "flag",
    overwrite: bool = False,
    show_progress: bool = True,
    return_summary: bool = False,
) -> Any:
    """Flag or drop rows whose texts share word n-grams with an evaluation set.

    Args:
        ds: A ``Dataset`` or ``DatasetDict``.
        against: The evaluation set: a ``Dataset`` / ``DatasetDict``, a list of texts, a file or folder of files
            (``.txt`` lines, ``.jsonl``, ``.json``, ``.csv``, ``.parquet``) or a Hub dataset id (every split).
        input_keys: Columns checked (those present; at least one must be).
        against_keys: Columns of the evaluation set compared with; ``None``: every string column.
        n: Words per n-gram (13 by default, as GPT-3's and Llama's decontamination; case and punctuation do not
            count). A text shorter than ``n`` words is compared whole.
        max_share: A row is contaminated when more than this share of a checked text's n-grams is in the
            evaluation set (0.0: any shared n-gram).
        action: ``"flag"`` (the ``{key}_contamination`` columns and ``contaminated``) or ``"drop"`` (also
            ``drop_reason`` ``"contaminated: ..."``, so later steps skip the row).
        overwrite: Recompute the columns when they exist.
        show_progress: Unused; kept for the step signature.
        return_summary: Also return the :class:`rare_hf.StepSummary`.

    Returns:
        The dataset with ``{key}_contamination`` per checked column (share of its n-grams in the evaluation
        set), ``contaminated`` and ``contamination_source`` (row of the evaluation set first matched).

    Example:
        >>> ds = rare_hf.decontaminate(ds, against="my-org/my-benchmark", action="drop")
    """
    _check(n, max_share, action)
    splits = _plumbing.splits_of(ds)
    keys = [k for k in input_keys if k in splits[0].column_names]
    if not keys:
        raise ValueError(f"input_keys: none of {list(input_keys)} is a column; columns: {splits[0].column_names}.")
    outputs = [c.name for c in _columns(keys) if c.name != DROP_REASON]
    for split in splits:
        _plumbing.check_reads(split, [Read("input_keys", key, "string") for key in keys])
        _plumbing.free_output_columns(split, outputs, overwrite)
    reference = Reference(reference_texts(against, against_keys), n)

    def one_split(split: datasets.Dataset) -> tuple[datasets.Dataset, StepSummary]:
        started = time.monotonic()
        split = _plumbing.free_output_columns(split, outputs, overwrite)
        shares, sources = zip(*(reference.overlap(arrow_column(split, key)) for key in keys))
        hit = np.stack([np.nan_to_num(s) > max_share for s in shares])
        contaminated = hit.any(axis=0)
        source = np.max(np.stack(sources), axis=0)
        for key, share in zip(keys, shares):
            split = split.add_column(f"{key}_contamination", share.tolist(), feature=datasets.Value("float32"))
        split = split.add_column("contaminated", contaminated.tolist(), feature=datasets.Value("bool"))
        split = split.add_column("contamination_source", [int(s) if s >= 0 else None for s in source],
                                 feature=datasets.Value("int64"))  # fmt: skip
        if action == "drop":
            split = mark_dropped(split, "contaminated", _details(keys, shares, hit, source, n))
        params = {
            "n": n,
            "max_share": max_share,
            "action": action,
            "input_keys": keys,
            "reference_texts": reference.size,
        }
        stats = {"contaminated": int(contaminated.sum())} | {
            f"{k}_contaminated": int(h.sum()) for k, h in zip(keys, hit)
        }
        return split, filter_summary("decontaminate", split, time.monotonic() - started, params, stats, _columns(keys))

    return _plumbing.for_each_split(ds, one_split, return_summary)


def _details(keys: list[str], shares: Sequence[np.ndarray], hit: np.ndarray, source: np.ndarray, n: int) -> list[Any]:
    details: list[str | None] = []
    for row in range(hit.shape[1]):
        parts = [f"{shares[k][row]:.0%} of the {key}'s {n}-grams" for k, key in enumerate(keys) if hit[k, row]]
        details.append(f"{' and '.join(parts)} in the evaluation set (its row {source[row]})" if parts else None)
    return details


def reference_texts(against: Against, keys: Sequence[str] | None = None) -> list[str]:
    """The texts of an evaluation set given as a dataset, texts, files or a Hub id."""
    if isinstance(against, datasets.DatasetDict):
        return [t for split in against.values() for t in reference_texts(split, keys)]
    if isinstance(against, datasets.Dataset):
        strings = [c for c, f in against.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
        columns = strings if keys is None else list(keys)
        missing = [c for c in columns if c not in against.column_names]
        if missing or not columns:
            raise ValueError(
                f"against_keys: {missing or 'no string column'} in the evaluation set {against.column_names}."
            )
        return [t for c in columns for t in column_values(against, c) if isinstance(t, str)]
    if isinstance(against, (str, os.PathLike)):
        return reference_texts(_load(against), keys)
    if isinstance(against, Sequence) and all(isinstance(t, str) for t in against):
        return list(against)
    raise TypeError(f"against: expected a Dataset, a list of texts, a path or a Hub id, got {type(against).__name__}.")


def _load(against: str | os.PathLike[str]) -> datasets.DatasetDict:
    path = Path(against)
    if path.exists():
        files = sorted(p for p in path.rglob("*") if p.suffix in _FILE_BUILDERS) if path.is_dir() else [path]
        builders = {_FILE_BUILDERS.get(p.suffix) for p in files}
        if not files or None in builders or len(builders) > 1:
            raise ValueError(f"against: {path} must be files of one kind among {sorted(_FILE_BUILDERS)}.")
        return datasets.load_dataset(builders.pop(), data_files=[str(p) for p in files])  # type: ignore[no-any-return]
    return datasets.load_dataset(str(against))  # type: ignore[no-any-return]  # a Hub id


def _check(n: int, max_share: float, action: str) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (words per n-gram), got {n!r}.")
    if not 0 <= max_share < 1:
        raise ValueError(f"max_share must be in [0, 1), got {max_share!r}.")
    if action not in ("flag", "drop"):
        raise ValueError(f"action must be 'flag' or 'drop', got {action!r}.")


def _columns(keys: Sequence[str]) -> list[Column]:
    share = "Share of the {}'s word n-grams found in the evaluation set."
    return [
        *(Column(f"{key}_contamination", datasets.Value("float32"), share.format(key)) for key in keys),
        Column(
            "contaminated", datasets.Value("bool"), "Whether a checked text shares n-grams with the evaluation set."
        ),
        Column("contamination_source", datasets.Value("int64"), "Row of the evaluation set first matched."),
        DROP_COLUMN,
    ]


class _Definition(StepDefinition):
    function = staticmethod(decontaminate)

    def plan(self, ctx: PlanContext) -> dict[str, Any]:
        return {"input_keys": (ctx.column("question", "question"), ctx.column("text", "text"))}

    def reads(self, kwargs: dict[str, Any]) -> list[Read]:
        if kwargs.get("against") is None:
            raise ValueError(
                "The decontaminate step needs the evaluation set: pass decontaminate_kwargs={'against': ...}."
            )
        against = kwargs["against"]
        if isinstance(against, os.PathLike) and not Path(against).exists():
            raise ValueError(f"against: {against} does not exist.")
        return [Read("input_keys", key, "string") for key in kwargs["input_keys"]]

    def columns(self, kwargs: dict[str, Any]) -> list[Column]:
        return _columns(kwargs["input_keys"])

    def error_column(self, kwargs: dict[str, Any]) -> str:
        return DROP_REASON


DEFINITION = _Definition()
