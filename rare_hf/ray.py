"""The RARE steps on a Ray cluster, with Ray Data (the ``ray`` extra: ``pip install "rare-hf[ray]"``).

Each LLM step is a ``map_batches`` over a pool of actors; each actor holds its own :class:`rare_hf.LLM`
(own event loop, own adaptive limits, spread over the endpoint fleet) and runs the same step object as the
single-machine path, so the same input and seed give the same rows. The BM25 index is built once on the
driver, saved to a shared folder and memory-mapped by every mining actor. The output is written as
parquet shards that ``datasets.load_dataset("parquet", ...)`` reads back.

Resume: SQLite must not be shared over a network file system, so each actor writes its own cache file
(``responses-<actor>.sqlite``) into the shared ``cache_dir`` and, when it starts, also reads every cache
file already there. A killed job run again sends only the requests no earlier actor completed.

Example:
    >>> import ray, rare_hf.ray
    >>> ray.init()
    >>> ds = rare_hf.ray.build_rare_dataset_ray(
    ...     "s3-or-nfs/docs/*.jsonl", output_dir="/shared/out", cache_dir="/shared/cache",
    ...     llm_kwargs={"model": "Qwen/Qwen2.5-72B-Instruct", "api_key": "EMPTY",
    ...                 "base_url": ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]})
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import ray
import ray.data

from . import _steps
from .bm25 import BM25Index
from .cache import ResponseCache
from .llm import LLM
from .negatives import add_hard_negatives
from .pipeline import STEPS, _error_column, plan_steps
from .questions import add_questions
from .reasoning import add_reasoning

__all__ = ["build_rare_dataset_ray"]

_LLM_STEPS = {"questions": add_questions, "reasoning": add_reasoning}


def build_rare_dataset_ray(
    data: str | Sequence[str] | datasets.Dataset | ray.data.Dataset,
    *,
    output_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    llm_kwargs: dict[str, Any] | None = None,
    text_key: str = "text",
    num_neg: int = 3,
    num_questions: int = 1,
    answer_key: str | None = None,
    seed: int = 0,
    steps: Sequence[str] = STEPS,
    keep_failed: bool = False,
    num_actors: int = 2,
    batch_size: int = 256,
    index_dir: str | os.PathLike[str] | None = None,
) -> datasets.Dataset:
    """:func:`rare_hf.build_rare_dataset` on the running Ray cluster (``ray.init()`` first).

    Args:
        data: Input: paths of ``.jsonl``/``.parquet`` files (a glob or a list), a ``datasets.Dataset`` or a
            ``ray.data.Dataset``.
        output_dir: Folder (shared by the nodes) for the parquet shards of the result.
        cache_dir: Folder (shared by the nodes) of the actors' response caches; run the same call again
            with it to resume.
        llm_kwargs: Keyword arguments of :class:`rare_hf.LLM` for every actor (``model``, ``base_url``, a list
            for a fleet, ``api_key``, ``max_concurrency`` per actor and endpoint, ...).
        text_key, num_neg, num_questions, answer_key, seed, steps, keep_failed: As in
            :func:`rare_hf.build_rare_dataset`.
        num_actors: Actors per LLM step (and mining actors).
        batch_size: Rows an actor takes at a time.
        index_dir: Shared folder for the BM25 index (default: ``{output_dir}/_bm25_index``).

    Returns:
        The result, read back from ``output_dir`` with ``datasets``.
    """
    plan = plan_steps(
        steps, text_key=text_key, num_neg=num_neg, num_questions=num_questions, answer_key=answer_key, seed=seed
    )
    llm_kwargs = dict(llm_kwargs or {})
    if any(name in plan for name in _LLM_STEPS):
        LLM(**{**llm_kwargs, "cache_dir": False}).close()  # a bad teacher configuration fails here, once
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # same row order as the input
    table = _read(data)
    for name, kwargs in plan.items():
        actor: type = _Teacher
        step_args: dict[str, Any] = {
            "step": name,
            "kwargs": kwargs,
            "llm_kwargs": llm_kwargs,
            "cache_dir": str(cache_dir),
        }
        if name == "hard_negatives":
            index_path = Path(index_dir or Path(output_dir) / "_bm25_index")
            _build_index(table, kwargs["input_text_key"], index_path)
            actor, step_args = _Miner, {"corpus": str(index_path), "kwargs": kwargs}
        table = table.map_batches(
            actor,
            fn_constructor_kwargs=step_args,
            batch_format="pyarrow",
            batch_size=batch_size,
            concurrency=num_actors,
        )
    if not keep_failed:
        errors = [_error_column(name, kwargs) for name, kwargs in plan.items()]
        table = table.filter(lambda row: all(row.get(column) is None for column in errors))
    table.write_parquet(str(output_dir))
    files = sorted(str(p) for p in Path(output_dir).glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def _read(data: Any) -> ray.data.Dataset:
    if isinstance(data, ray.data.Dataset):
        return data
    if isinstance(data, datasets.Dataset):
        return ray.data.from_arrow(data.with_format("arrow")[:])
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if all(str(p).endswith(".parquet") for p in paths):
        return ray.data.read_parquet([str(p) for p in paths])
    return ray.data.read_json([str(p) for p in paths], lines=True)


def _build_index(table: ray.data.Dataset, text_key: str, path: Path) -> None:
    """The index of every document, built once on the driver and saved for the mining actors."""
    names = [text_key, _steps.DOC_ID] if _steps.DOC_ID in table.columns() else [text_key]
    parts = pa.concat_tables(ray.get(table.select_columns(names).to_arrow_refs()))
    ids = parts[_steps.DOC_ID].to_pylist() if _steps.DOC_ID in names else None
    BM25Index.build(parts[text_key].to_pylist(), ids, show_progress=False).save(path)


class _Teacher:
    """An actor running one LLM step on its batches, with its own LLM and its own cache file."""

    def __init__(self, step: str, kwargs: dict[str, Any], llm_kwargs: dict[str, Any], cache_dir: str) -> None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        earlier = sorted(str(p) for p in folder.glob("responses-*.sqlite"))
        self.llm = LLM(**{**llm_kwargs, "cache_dir": False})
        self.llm._cache = ResponseCache(folder / f"responses-{uuid.uuid4().hex[:12]}.sqlite", also_read=earlier)
        self.step, self.kwargs = _LLM_STEPS[step], kwargs

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self.step(_dataset(batch), self.llm, **self.kwargs, show_progress=False)
        return out.with_format("arrow")[:]


class _Miner:
    """An actor mining hard negatives from the shared, memory-mapped index."""

    def __init__(self, corpus: str, kwargs: dict[str, Any]) -> None:
        self.index = BM25Index.load(corpus, mmap=True)
        self.kwargs = kwargs

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = add_hard_negatives(_dataset(batch), corpus=self.index, **self.kwargs, show_progress=False)
        return out.with_format("arrow")[:]


def _dataset(batch: pa.Table) -> datasets.Dataset:
    return datasets.Dataset(datasets.table.InMemoryTable(batch))
