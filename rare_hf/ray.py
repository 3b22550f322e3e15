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

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from .retrieval.bm25 import BM25Index
from .steps.negatives import add_hard_negatives
from .steps.pipeline import run_summary
from .steps.plan import Plan, PlannedStep, plan_steps
from .steps.registry import DEFAULT_STEPS, StepSpec
from .steps.summary import StepSummary
from .teacher.cache import ResponseCache
from .teacher.client import LLM
from .utils.datasets import DOC_ID

__all__ = ["build_rare_dataset_ray"]


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
    steps: Sequence[str | StepSpec | Any] = DEFAULT_STEPS,
    keep_failed: bool = False,
    num_actors: int = 2,
    batch_size: int = 256,
    index_dir: str | os.PathLike[str] | None = None,
    return_summary: bool = False,
) -> Any:
    """:func:`rare_hf.build_rare_dataset` on the running Ray cluster (``ray.init()`` first).

    Args:
        data: Input: paths of ``.jsonl``/``.parquet`` files (a glob or a list), a ``datasets.Dataset`` or a
            ``ray.data.Dataset``.
        output_dir: Folder (shared by the nodes) for the result's parquet shards (``data/``), the batches'
            summaries (``_summaries/``) and the BM25 index.
        cache_dir: Folder (shared by the nodes) of the actors' response caches; run the same call again
            with it to resume.
        llm_kwargs: Keyword arguments of :class:`rare_hf.LLM` for every actor (``model``, ``base_url``, a list
            for a fleet, ``api_key``, ``max_concurrency`` per actor and endpoint, ...).
        text_key, num_neg, num_questions, answer_key, seed, steps, keep_failed: As in
            :func:`rare_hf.build_rare_dataset`.
        num_actors: Actors per step (the steps run one after the other; a teacher actor asks for half a CPU,
            a mining actor for one, and a pool never asks for more than the cluster has, less one CPU).
        batch_size: Rows an actor takes at a time (the input is cut into blocks of this size).
        index_dir: Shared folder for the BM25 index (default: ``{output_dir}/_bm25_index``).
        return_summary: Also return the :class:`rare_hf.RunSummary`, merged from every batch's.

    Returns:
        The result, read back from ``output_dir`` with ``datasets`` (and the summary when ``return_summary``).
    """
    started = time.monotonic()
    plan = plan_steps(
        steps, text_key=text_key, num_neg=num_neg, num_questions=num_questions, answer_key=answer_key, seed=seed
    )
    filters = [s.name for s in plan.steps if not s.spec.uses_llm and s.name != "hard_negatives"]
    if filters:  # they compare rows across the whole dataset, which Ray's blocks split
        raise ValueError(
            f"steps: {filters} do not run on Ray yet; run them with rare_hf.build_rare_dataset (they take seconds per "
            "100,000 rows), then pass their output here."
        )
    llm_kwargs = dict(llm_kwargs or {})
    if llm_kwargs.get("batch"):
        raise ValueError("llm_kwargs: batch=True does not run on Ray (the Batch API needs no cluster); drop it.")
    llm = None
    if plan.uses_llm:
        llm = LLM(**{**llm_kwargs, "cache_dir": False})  # a bad teacher configuration fails here, once
        llm.close()
    output = Path(output_dir)
    summaries = output / "_summaries"
    shutil.rmtree(summaries, ignore_errors=True)
    # The same row order as the input, for datasets made from here on (Ray copies the setting into each); the
    # caller's own setting comes back after.
    with _order_preserved():
        # Streaming repartition (no all-to-all shuffle): blocks of one batch, so every actor gets work.
        table = _read(data).repartition(target_num_rows_per_block=batch_size)
        table, wall = _run_plan(
            table,
            plan,
            llm_kwargs,
            str(cache_dir),
            summaries,
            Path(index_dir or output / "_bm25_index"),
            batch_size,
            num_actors,
        )
        out = _write(table, plan, output, keep_failed)
    if not return_summary:
        return out
    merged = [_merged_summary(summaries / name, name, wall[name]) for name in plan.names]
    params = {"text_key": text_key, "num_neg": num_neg, "num_questions": num_questions, "answer_key": answer_key}
    params |= {"seed": seed, "steps": plan.names, "keep_failed": keep_failed, "ray_actors": num_actors}
    summary = run_summary(
        merged,
        rows_in=merged[0].rows_in,
        rows_before_drop=merged[-1].rows_out,
        rows_out=len(out),
        llm=llm,
        params=params,
        seconds=time.monotonic() - started,
        roles=plan.context.roles,
    )
    return out, summary


@contextlib.contextmanager
def _order_preserved() -> Iterator[None]:
    options = ray.data.DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    try:
        yield
    finally:
        options.preserve_order = before


def _run_plan(
    table: ray.data.Dataset,
    plan: Plan,
    llm_kwargs: dict[str, Any],
    cache_dir: str,
    summaries: Path,
    index_path: Path,
    batch_size: int,
    num_actors: int,
) -> tuple[ray.data.Dataset, dict[str, float]]:
    """Every step of the plan, one after the other, each over a fixed pool of actors."""
    wall: dict[str, float] = {}
    for planned in plan.steps:
        name, kwargs = planned.name, planned.kwargs
        step_started = time.monotonic()
        actor: type = _Teacher
        step_args: dict[str, Any] = {"planned": planned, "llm_kwargs": llm_kwargs}
        step_args |= {"cache_dir": cache_dir, "summaries": str(summaries / name)}
        if not planned.spec.uses_llm:  # mining: one index, built here, memory-mapped by every actor
            _build_index(table, kwargs["input_text_key"], index_path)
            actor = _Miner
            step_args = {"corpus": str(index_path), "kwargs": kwargs, "summaries": str(summaries / name)}
        table = table.map_batches(
            actor,
            fn_constructor_kwargs=step_args,
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=_pool_size(num_actors, actor.NUM_CPUS)),
            num_cpus=actor.NUM_CPUS,
        )
        # One step at a time, each with a fixed pool: pools of every step at once can ask for more CPUs than
        # the cluster has (then nothing starts), and a pool that scales down kills actors mid-batch.
        table = table.materialize()
        wall[name] = time.monotonic() - step_started
    return table, wall


def _write(table: ray.data.Dataset, plan: Plan, output: Path, keep_failed: bool) -> datasets.Dataset:
    """The result as parquet shards under ``output/data``, read back with ``datasets``."""
    if not keep_failed:
        errors = plan.error_columns()
        table = table.map_batches(_drop_failed, fn_kwargs={"errors": errors}, batch_format="pyarrow")
    shutil.rmtree(output / "data", ignore_errors=True)  # an earlier run's shards
    table.write_parquet(str(output / "data"))
    files = sorted(str(p) for p in (output / "data").glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def _pool_size(wanted: int, cpus_per_actor: float) -> int:
    """At most ``wanted`` actors, leaving a CPU for reading and writing blocks."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, min(wanted, int((cpus - 1) / cpus_per_actor)))


def _merged_summary(folder: Path, step: str, seconds: float) -> StepSummary:
    """One step's summary from its batches'; their seconds add up to actor-seconds, kept in stats."""
    parts = [StepSummary(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    merged = functools.reduce(StepSummary.merge, parts) if parts else StepSummary(step=step)
    merged.stats["actor_seconds"] = round(merged.seconds, 1)
    merged.seconds = seconds
    return merged


def _save_summary(folder: str, batch: pa.Table, summary: StepSummary) -> None:
    """A batch's summary, named by its rows: a batch retried after its actor died replaces, never adds."""
    rows = batch.num_rows
    ends = json.dumps([batch.slice(0, 1).to_pylist(), batch.slice(rows - 1, 1).to_pylist(), rows], default=str)
    path = Path(folder) / f"{hashlib.sha1(ends.encode()).hexdigest()[:20]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{uuid.uuid4().hex[:8]}.partial")
    partial.write_text(json.dumps(summary.to_dict(), default=str))
    partial.replace(path)


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
    names = [text_key, DOC_ID] if DOC_ID in table.columns() else [text_key]
    parts = pa.concat_tables(ray.get(table.select_columns(names).to_arrow_refs()))
    ids = parts[DOC_ID].to_pylist() if DOC_ID in names else None
    BM25Index.build(parts[text_key].to_pylist(), ids, show_progress=False).save(path)


class _Teacher:
    """An actor running one LLM step on its batches, with its own LLM and its own cache file."""

    NUM_CPUS = 0.5  # it mostly waits on the network

    def __init__(self, planned: PlannedStep, llm_kwargs: dict[str, Any], cache_dir: str, summaries: str) -> None:
        self.folder = Path(cache_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        own = ResponseCache(self.folder / f"responses-{uuid.uuid4().hex[:12]}.sqlite")
        self.llm = LLM(**{**llm_kwargs, "cache_dir": own})
        self.planned, self.summaries = planned, summaries

    def __call__(self, batch: pa.Table) -> pa.Table:
        # Read every other actor's file, new ones too: a batch retried after its actor died (a lost node, a
        # pool scaling down) then resends only the requests that actor had not completed.
        assert self.llm.cache is not None
        self.llm.cache.read_also(sorted(self.folder.glob("responses*.sqlite")))  # with a single machine's
        out, summary = self.planned.run(_dataset(batch), self.llm, show_progress=False)
        _save_summary(self.summaries, batch, summary)
        return out.with_format("arrow")[:]


class _Miner:
    """An actor mining hard negatives from the shared, memory-mapped index."""

    NUM_CPUS = 1.0

    def __init__(self, corpus: str, kwargs: dict[str, Any], summaries: str) -> None:
        self.index = BM25Index.load(corpus, mmap=True)
        self.kwargs, self.summaries = kwargs, summaries

    def __call__(self, batch: pa.Table) -> pa.Table:
        out, summary = add_hard_negatives(
            _dataset(batch), corpus=self.index, **self.kwargs, show_progress=False, return_summary=True
        )
        _save_summary(self.summaries, batch, summary)
        return out.with_format("arrow")[:]


def _drop_failed(batch: pa.Table, errors: list[str]) -> pa.Table:
    ok = pa.array([True] * batch.num_rows)
    for column in errors:
        ok = pc.and_(ok, pc.is_null(batch[column]))
    return batch.filter(ok)


def _dataset(batch: pa.Table) -> datasets.Dataset:
    return datasets.Dataset(datasets.table.InMemoryTable(batch))
