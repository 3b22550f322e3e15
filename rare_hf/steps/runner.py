"""The streaming runner of the LLM steps: rows stay in flight across the whole split, no batch barrier.

``Dataset.map`` still writes the output (its cache files, its fingerprint, one input row expanding into
several output rows), but its batches only *collect* results: a feeder on the LLM's event loop starts rows
ahead of the batch being written, up to a window, so a slow row holds back nothing but its own slot in
the output order. Memory stays bounded by the window (rows started or finished but not yet written).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

import datasets

from ..teacher._batch import MAX_REQUESTS as BATCH_MAX_REQUESTS
from ..teacher.client import LLM
from ..utils.datasets import quiet_datasets_progress
from .row_error import render

Row = dict[str, Any]
RowFn = Callable[[Row], Awaitable[list[Row]]]

# Rows read from Arrow at a time by the feeder.
_READ_CHUNK = 256
# Rows started ahead of the writer, per unit of max_concurrency: enough that one row many times slower
# than the median does not let the window fill up behind it.
_WINDOW_PER_SLOT = 16
_MIN_WINDOW = 1024


def stream_map(
    ds: datasets.Dataset,
    llm: LLM,
    row_fn: RowFn,
    *,
    features: datasets.Features,
    fingerprint: str,
    batch_size: int = 1000,
) -> datasets.Dataset:
    """Run ``row_fn`` over every row with ``llm``'s concurrency and write its output rows in input order.

    ``row_fn`` must not raise for a row's own failure (that is data about the row); what it raises
    (a fatal stop of the run) cancels every row in flight and leaves the map.
    """
    if len(ds) == 0:  # datasets' map drops every column of an empty table
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    # In batch mode every row of a batch-sized window must be waiting at once, or a round holds fewer requests.
    window = BATCH_MAX_REQUESTS if llm.batch else max(_MIN_WINDOW, _WINDOW_PER_SLOT * llm.total_concurrency)
    feeder = _Feeder(ds, row_fn, window=window)
    columns = list(features)

    def write_batch(_: list[Any], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = collections.defaultdict(list)
        for group in llm.run_sync(feeder.take(indices)):
            for row in group:
                for column in columns:
                    out[column].append(render(row.get(column)))  # a RowError as its text
        return {column: out[column] for column in columns}

    try:
        with quiet_datasets_progress():
            return ds.map(
                write_batch,
                batched=True,
                batch_size=batch_size,
                with_indices=True,
                input_columns=ds.column_names[:1],  # the rows themselves come from the feeder
                features=features,
                remove_columns=ds.column_names,
                load_from_cache_file=False,
                new_fingerprint=fingerprint,
            )
    finally:
        llm.run_sync(feeder.close())


class _Feeder:
    """Starts ``row_fn`` on rows in order, keeping at most ``window`` rows started but not yet taken."""

    def __init__(self, ds: datasets.Dataset, row_fn: RowFn, window: int) -> None:
        self._table = ds.with_format("arrow")
        self._row_fn = row_fn
        self._window = window
        self._results: dict[int, asyncio.Future[list[Row]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._space: asyncio.Semaphore | None = None
        self._producer: asyncio.Task[None] | None = None
        self._closed = False

    async def take(self, indices: list[int]) -> list[list[Row]]:
        """The output rows of these input rows, waiting for each in turn."""
        if self._producer is None:
            self._space = asyncio.Semaphore(self._window)
            self._producer = asyncio.ensure_future(self._produce())
        groups = []
        for i in indices:
            if self._producer.done() and self._producer.exception() is not None:
                raise self._producer.exception()  # type: ignore[misc]
            groups.append(await self._result(i))
            del self._results[i]
            assert self._space is not None
            self._space.release()
        return groups

    async def close(self) -> None:
        self._closed = True
        pending = [t for t in (self._producer, *self._tasks) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # Rows finished but never written (the run stopped before them) hold the same fatal error: it was
        # raised once already, and left unretrieved asyncio would log each one at garbage collection.
        for result in self._results.values():
            if result.done() and not result.cancelled():
                result.exception()
            result.cancel()
        self._results.clear()

    def _result(self, i: int) -> asyncio.Future[list[Row]]:
        if i not in self._results:
            self._results[i] = asyncio.get_running_loop().create_future()
        return self._results[i]

    async def _produce(self) -> None:
        assert self._space is not None
        for start in range(0, len(self._table), _READ_CHUNK):
            for offset, row in enumerate(self._table[start : start + _READ_CHUNK].to_pylist()):
                await self._space.acquire()
                task = asyncio.ensure_future(self._row_fn(row))
                self._tasks.add(task)
                task.add_done_callback(self._settle(start + offset))

    def _settle(self, i: int) -> Callable[[asyncio.Task[list[Row]]], None]:
        def done(task: asyncio.Task[list[Row]]) -> None:
            self._tasks.discard(task)
            if self._closed:  # nobody will take it: its error (the stop that closed us) is already reported
                if not task.cancelled():
                    task.exception()
                return
            result = self._result(i)
            if result.done():
                return
            if task.cancelled():
                result.cancel()
            elif task.exception() is not None:
                result.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                result.set_result(task.result())

        return done
