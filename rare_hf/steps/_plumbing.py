"""Plumbing shared by the steps: input checks, DatasetDict fan-out, doc ids, and the async LLM map."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import datasets
from tqdm.auto import tqdm

from ..teacher.client import LLMRun
from ..utils.datasets import DOC_ID, doc_ids
from .registry import Read
from .row_error import Tally
from .summary import StepSummary

logger = logging.getLogger("rare_hf")

_STRING_TYPES = ("string", "large_string")

Row = dict[str, Any]


def require_columns(ds: datasets.Dataset, **columns: str) -> None:
    """Raise ``ValueError`` naming the argument and the column when a required column is missing."""
    for argument, column in columns.items():
        if column not in ds.column_names:
            raise ValueError(
                f"Column '{column}' ({_source(argument)}) not found in the dataset. "
                f"Available columns: {ds.column_names}.{_hint(argument)}"
            )


def _source(argument: str) -> str:
    return f"from {argument}=" if argument.isidentifier() else argument


def _hint(argument: str) -> str:
    if argument.isidentifier():
        return f" Pass {argument}=<your column name>."
    if argument.startswith("--"):
        return f" Pass {argument} <your column name>."
    return ""


def require_string_column(ds: datasets.Dataset, argument: str, column: str) -> None:
    require_columns(ds, **{argument: column})
    feature = ds.features[column]
    if not isinstance(feature, datasets.Value) or feature.dtype not in _STRING_TYPES:
        raise ValueError(f"Column '{column}' ({_source(argument)}) must hold strings, but its type is {feature}.")


def require_string_list_column(ds: datasets.Dataset, argument: str, column: str) -> None:
    require_columns(ds, **{argument: column})
    feature = ds.features[column]
    inner = getattr(feature, "feature", None)
    if (
        not isinstance(feature, (datasets.Sequence, datasets.List, datasets.LargeList))
        or not isinstance(inner, datasets.Value)
        or inner.dtype not in _STRING_TYPES
    ):
        raise ValueError(
            f"Column '{column}' ({_source(argument)}) must be a list of strings per row "
            f"(e.g. the output of add_hard_negatives), but its type is {feature}."
        )


def free_output_columns(ds: datasets.Dataset, columns: list[str], overwrite: bool) -> datasets.Dataset:
    """Refuse to clobber existing columns unless ``overwrite``; then drop them so they can be rewritten."""
    existing = [c for c in columns if c in ds.column_names]
    if existing and not overwrite:
        raise ValueError(
            f"Output column(s) {existing} already exist in the dataset. Pass overwrite=True to "
            "replace them, or choose other output key names."
        )
    return ds.remove_columns(existing) if existing else ds


def with_doc_ids(ds: datasets.Dataset, text_key: str) -> datasets.Dataset:
    """Add a ``doc_id`` column from the text's content when the dataset has none."""
    if DOC_ID in ds.column_names:
        return ds
    # add_column joins the new column to the table without rewriting the existing ones.
    return ds.add_column(DOC_ID, doc_ids(ds, text_key))


def splits_of(ds: Any, argument: str = "ds") -> list[datasets.Dataset]:
    """The splits of a Dataset or DatasetDict; any other input is a ``TypeError`` saying what to pass."""
    if isinstance(ds, datasets.DatasetDict):
        return list(ds.values())
    if isinstance(ds, datasets.Dataset):
        return [ds]
    if isinstance(ds, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise TypeError(
            f"{argument} is an IterableDataset; rare_hf steps need a map-style Dataset (they write Arrow cache "
            "files and can be resumed). Materialise it: datasets.Dataset.from_generator(lambda: (yield from "
            f"{argument})), or load it without streaming=True."
        )
    hint = {
        "DataFrame": "datasets.Dataset.from_pandas(df)",
        "list": "datasets.Dataset.from_list(rows)",
        "dict": "datasets.Dataset.from_dict(columns)",
    }.get(type(ds).__name__, "datasets.Dataset.from_list / from_dict / from_pandas")
    raise TypeError(
        f"{argument} must be a datasets.Dataset or DatasetDict, got {type(ds).__name__}; wrap it with {hint}."
    )


def for_each_split(
    ds: datasets.Dataset | datasets.DatasetDict,
    fn: Callable[[datasets.Dataset], tuple[datasets.Dataset, StepSummary]],
    return_summary: bool,
) -> Any:
    """Apply a step to a Dataset or to every split of a DatasetDict; sum the summaries."""
    if isinstance(ds, datasets.DatasetDict):
        results = {name: fn(split) for name, split in ds.items()}
        out: Any = datasets.DatasetDict({name: result[0] for name, result in results.items()})
        summaries = [result[1] for result in results.values()]
        summary = summaries[0]
        for other in summaries[1:]:
            summary = summary.merge(other)
    else:
        out, summary = fn(splits_of(ds)[0])
    logger.info("%s", summary)
    return (out, summary) if return_summary else out


def fingerprint(ds: datasets.Dataset, step: str, params: dict[str, Any]) -> str:
    blob = json.dumps([ds._fingerprint, step, params], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class StepProgress:
    """A tqdm bar with failures, tokens and request rate, fed from the LLM loop thread."""

    def __init__(self, desc: str, total: int, run: LLMRun | None, enabled: bool) -> None:
        self._bar = tqdm(total=total, desc=desc, unit="row", disable=not enabled, dynamic_ncols=True)
        self._run = run
        self._start = time.monotonic()
        self.failed = 0

    def row_done(self, failed: bool) -> None:
        self.failed += failed
        self._bar.update(1)
        if self._bar.n % 16 == 0 or self._bar.n == self._bar.total:
            postfix: dict[str, Any] = {"failed": self.failed}
            if self._run is not None:
                usage = self._run.usage
                elapsed = max(time.monotonic() - self._start, 1e-9)
                # Tokens the data cost so far, cached replies included (a resumed run is not "0 tokens").
                postfix.update(tokens=f"{usage.data_tokens:,}", cached=usage.cached)
                postfix["req_s"] = f"{usage.requests / elapsed:.1f}"
                if usage.usd is not None:
                    postfix["usd"] = f"{usage.usd:.4f}"
            self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self._bar.close()


def step_summary(step: str, rows_in: int, tally: Tally, **fields: Any) -> StepSummary:
    """The summary of a step from the rows it counted as it finished them."""
    return StepSummary(
        step=step,
        rows_in=rows_in,
        rows_out=tally.rows,
        ok=tally.ok,
        failed=tally.failed,
        skipped=tally.skipped,
        failure_reasons=dict(tally.reasons),
        **fields,
    )


def llm_step_summary(
    step: str,
    rows_in: int,
    tally: Tally,
    run: LLMRun,
    seconds: float,
    params: dict[str, Any],
    prompt_version: str,
    stats: dict[str, Any],
) -> StepSummary:
    """The summary of an LLM step."""
    return step_summary(
        step,
        rows_in,
        tally,
        usage=run.usage.to_dict(),
        seconds=seconds,
        params=params,
        prompt_version=prompt_version,
        stats=stats,
    )


def check_reads(ds: datasets.Dataset, reads: list[Read], names: dict[str, str] | None = None) -> None:
    """Raise a one-line ``ValueError`` for the first column a step reads that is missing or of the wrong type.
    ``names`` says how to call an argument in the message (the CLI names its flags)."""
    for read in reads:
        label = (names or {}).get(read.argument, read.argument)
        if read.kind == "list":
            require_string_list_column(ds, label, read.column)
        elif read.kind == "string":
            require_string_column(ds, label, read.column)
        else:
            require_columns(ds, **{label: read.column})


def arguments(function: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` over the defaults of ``function``'s keyword arguments: a step's defaults live in its signature."""
    defaults = {
        name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty
    }
    return {**defaults, **kwargs}
