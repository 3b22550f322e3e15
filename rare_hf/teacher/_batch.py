"""The teacher through the OpenAI Batch API (``LLM(..., batch=True)``): half the price, no rate limits.

Requests that miss the cache wait in a queue. When no new request has come for ``quiet`` seconds (every row
of the step is waiting on its reply), the queue is written as JSONL request lines whose ``custom_id`` is the
request's cache key, uploaded, and submitted as batches of at most 50,000 requests / 190 MB. Results are
matched back by ``custom_id`` and stored in the response cache at once, so parsing, repair turns and
resampling run unchanged: a repair is simply a request of the next round.

Restart-proof: every batch id is appended to a journal (``batches.jsonl`` beside the cache) as soon as it
exists. A new process first waits for the journal's uncollected batches and collects them into the cache,
and only then submits what is still missing, so the same request is never submitted twice. Lines that
did not complete (per-line errors that a retry can fix, an expired or cancelled batch) go into the next
round, up to ``max_retries`` rounds; a rejected line fails its row with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
from tqdm.auto import tqdm

from ..errors import LLMRequestError
from .replies import Completion, MalformedReply, fix_hint, parse_reply, rejection_reason, status_kind

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .usage import LLMRun

logger = logging.getLogger(__name__)

MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 1024 * 1024  # the API's limit is 200 MB
_DONE = ("completed", "failed", "expired", "cancelled")


@dataclasses.dataclass
class _Waiting:
    body: dict[str, Any]
    run: LLMRun
    future: asyncio.Future[Completion]
    rounds: int = 0  # batches this request was in without a usable reply
    error: str = ""


class BatchQueue:
    """The Batch API rounds of one :class:`rare_hf.LLM`; lives on its event loop."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        cache: ResponseCache,
        journal: Path,
        *,
        poll_interval: float,
        quiet: float,
        max_rounds: int,
        count_paid: Callable[[LLMRun, int, int], None],
        show_progress: bool = True,
    ) -> None:
        self.client = client
        self.cache = cache
        self.journal = journal
        self.poll_interval = poll_interval
        self.quiet = quiet
        self.max_rounds = max_rounds
        self.count_paid = count_paid  # the LLM's: a malformed reply was still paid for, by the run and the LLM
        self.show_progress = show_progress
        self.max_requests, self.max_bytes = MAX_REQUESTS, MAX_BYTES
        self._waiting: dict[str, _Waiting] = {}
        self._last_added = 0.0
        self._runner: asyncio.Task[None] | None = None

    async def request(self, key: str, body: dict[str, Any], run: LLMRun) -> Completion:
        """The reply to one request, from the next batch round."""
        waiting = self._waiting.get(key)
        if waiting is None:
            future = asyncio.get_running_loop().create_future()
            waiting = self._waiting[key] = _Waiting(body, run, future)
        self._last_added = time.monotonic()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._rounds())
        return await asyncio.shield(waiting.future)

    # -- rounds -----------------------------------------------------------------------------------------
    async def _rounds(self) -> None:
        try:
            while self._waiting:
                while (idle := time.monotonic() - self._last_added) < self.quiet:
                    await asyncio.sleep(self.quiet - idle)
                earlier = self._open_batches()
                if earlier:  # a killed process's batches: collect them before submitting anything
                    logger.warning("Collecting %d batch(es) submitted by an earlier run: %s", len(earlier), earlier)
                    await self._finish(earlier)
                    continue
                keys = [k for k, w in self._waiting.items() if not w.future.done()]
                ids = [await self._submit(chunk) for chunk in self._chunks(keys)]
                await self._finish(ids, submitted=set(keys))
        except Exception as exc:  # noqa: BLE001 - every waiting row must hear about it, not hang
            for waiting in self._waiting.values():
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            self._waiting.clear()

    def _chunks(self, keys: list[str]) -> Iterator[list[tuple[str, bytes]]]:
        chunk: list[tuple[str, bytes]] = []
        size = 0
        for key in keys:
            line = {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": self._waiting[key].body}
            data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
            if chunk and (len(chunk) == self.max_requests or size + len(data) > self.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append((key, data))
            size += len(data)
        if chunk:
            yield chunk

    async def _submit(self, chunk: list[tuple[str, bytes]]) -> str:
        upload = await self.client.files.create(
            file=("rare_hf_requests.jsonl", b"".join(data for _, data in chunk), "application/jsonl"),
            purpose="batch",
        )
        batch = await self.client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"created_by": "rare_hf"},
        )
        self._record({"batch_id": batch.id, "state": "submitted", "requests": len(chunk), "at": time.time()})
        logger.warning(
            "Submitted batch %s (%d requests). Waiting for it; you may stop this process (Ctrl-C) and re-run "
            "the same command later to collect its results (the batch ids are kept in %s).",
            batch.id,
            len(chunk),
            self.journal,
        )
        return batch.id

    async def _finish(self, ids: list[str], submitted: set[str] | None = None) -> None:
        """Wait for these batches to end, then match their lines back to the waiting requests (``submitted``:
        the keys they hold, when known; one with no line in any output goes to the next round)."""
        batches = {i: await self.client.batches.retrieve(i) for i in ids}
        bars = {i: tqdm(total=0, desc=f"batch {i}", unit="req", disable=not self.show_progress) for i in ids}
        interval = min(0.5, self.poll_interval)
        try:
            while True:
                for batch_id, batch in batches.items():
                    counts = batch.request_counts
                    bar = bars[batch_id]
                    if counts is not None:
                        bar.total = counts.total
                        bar.n = counts.completed + counts.failed
                    bar.set_postfix(status=batch.status, refresh=True)
                if all(b.status in _DONE for b in batches.values()):
                    break
                await asyncio.sleep(interval)
                interval = min(
                    self.poll_interval, interval * 1.5
                )  # small test batches end in seconds, real ones in hours
                batches = {i: await self.client.batches.retrieve(i) for i in ids}
        finally:
            for bar in bars.values():
                bar.close()
        seen: set[str] = set()
        for batch_id, batch in batches.items():
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await self.client.files.content(file_id)
                    for line in content.text.splitlines():
                        if line.strip():
                            seen.add(self._collect(json.loads(line), batch.status))
            self._record({"batch_id": batch_id, "state": "collected", "status": batch.status, "at": time.time()})
        statuses = ", ".join(sorted({b.status for b in batches.values()}))
        for key in (submitted or set()) - seen:
            self._retry_or_fail(key, f"no result in the batch (status {statuses})")
        self._waiting = {k: w for k, w in self._waiting.items() if not w.future.done()}

    def _collect(self, line: dict[str, Any], status: str) -> str:
        """Store or route one output/error line; returns its custom_id."""
        key = line.get("custom_id", "")
        response = line.get("response") or {}
        code = response.get("status_code")
        if code == 200:
            try:
                completion = parse_reply(response.get("body"))
            except MalformedReply as exc:
                self._paid(key, exc.prompt_tokens, exc.completion_tokens)
                self._retry_or_fail(key, f"malformed response: {exc}")
                return key
            self.cache.put(key, completion.to_json())
            waiting = self._waiting.get(key)
            if waiting is not None and not waiting.future.done():
                waiting.future.set_result(completion)
            return key
        if code is None:  # not run: the batch expired or was cancelled first
            error = line.get("error") or {}
            self._retry_or_fail(key, f"{error.get('code') or status}: {error.get('message', 'not run')}")
            return key
        body = response.get("body") or {}
        message = str((body.get("error") or {}).get("message", body)) if isinstance(body, dict) else str(body)
        kind = status_kind(code, (body.get("error") or {}).get("code") if isinstance(body, dict) else None)
        if kind in ("fatal", "rejected"):
            self._fail(key, LLMRequestError(rejection_reason(code, message), status_code=code))
            if kind == "fatal":
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.run.stop(f"the Batch API answered HTTP {code}: {message}. {fix_hint(code)}")
        else:
            self._retry_or_fail(key, f"HTTP {code}: {message}")
        return key

    def _retry_or_fail(self, key: str, error: str) -> None:
        waiting = self._waiting.get(key)
        if waiting is None or waiting.future.done():
            return
        waiting.rounds += 1
        waiting.error = error
        if waiting.rounds > self.max_rounds:
            waiting.run.count("failed")
            waiting.future.set_exception(LLMRequestError(f"{error} (after {waiting.rounds} batch rounds)"))
        else:
            waiting.run.count("retries")

    def _fail(self, key: str, exc: LLMRequestError) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None and not waiting.future.done():
            waiting.run.count("failed")
            waiting.future.set_exception(exc)

    def _paid(self, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            self.count_paid(waiting.run, prompt_tokens, completion_tokens)

    # -- journal ----------------------------------------------------------------------------------------
    def _record(self, entry: dict[str, Any]) -> None:
        with self.journal.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()

    def _open_batches(self) -> list[str]:
        """Batches submitted (by any run) and not yet collected, oldest first."""
        if not self.journal.exists():
            return []
        state: dict[str, str] = {}
        for line in self.journal.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                state[entry["batch_id"]] = entry["state"]
        return [batch_id for batch_id, s in state.items() if s == "submitted"]
