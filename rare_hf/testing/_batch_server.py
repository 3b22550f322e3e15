"""The OpenAI Batch API side of :class:`rare_hf.testing.LocalTeacher`: file upload and content, batches
create / retrieve / cancel, with a controllable completion time, per-line errors (the teacher's faults,
drawn per line) and expiry. Lines are answered by the teacher's own responder."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

Route = tuple[int, tuple[tuple[str, str], ...], bytes, None]
LineAnswer = Callable[[dict[str, Any]], Awaitable[tuple[int, bytes]]]

_FILE_CONTENT = re.compile(r"^/v1/files/([^/]+)/content$")
_BATCH = re.compile(r"^/v1/batches/([^/]+)(/cancel)?$")


@dataclasses.dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    metadata: dict[str, Any] | None
    total: int
    status: str = "validating"
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    expire_after: int | None = None  # lines answered before it expires

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


class BatchAPI:
    """In-memory files and batches; see :class:`rare_hf.testing.LocalTeacher` for the knobs."""

    def __init__(self, answer: LineAnswer, seconds: float) -> None:
        self.answer = answer
        self.seconds = seconds
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.submitted_ids: list[str] = []  # custom_id of every line of every batch created, in order
        self._expire_next: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def expire_next(self, after_lines: int) -> None:
        self._expire_next.append(after_lines)

    async def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Route | None:
        """The reply to a Batch API request, or None when the path is not one."""
        path = path.rstrip("/")
        if method == "POST" and path == "/v1/files":
            return self._upload(headers.get("content-type", ""), body)
        if method == "GET" and (match := _FILE_CONTENT.match(path)):
            content = self.files.get(match.group(1))
            return (200, (), content, None) if content is not None else _not_found(f"No file {match.group(1)}")
        if method == "POST" and path == "/v1/batches":
            return self._create(json.loads(body or b"{}"))
        if match := _BATCH.match(path):
            batch = self.batches.get(match.group(1))
            if batch is None:
                return _not_found(f"No batch {match.group(1)}")
            if method == "POST" and match.group(2) and batch.status in ("validating", "in_progress"):
                batch.status = "cancelling"
            return 200, (), json.dumps(batch.to_dict()).encode(), None
        return None

    def _upload(self, content_type: str, body: bytes) -> Route:
        fields = _multipart(content_type, body)
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, (), _error("expected multipart fields purpose=batch and file"), None
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = fields["file"]
        info = {"id": file_id, "object": "file", "bytes": len(fields["file"]), "purpose": "batch"}
        info |= {"created_at": int(time.time()), "filename": "input.jsonl", "status": "processed"}
        return 200, (), json.dumps(info).encode(), None

    def _create(self, request: dict[str, Any]) -> Route:
        content = self.files.get(request.get("input_file_id", ""))
        if content is None:
            return 400, (), _error(f"input_file_id {request.get('input_file_id')!r} does not exist"), None
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        batch = _Batch(
            id=f"batch_{len(self.batches) + 1}",
            input_file_id=request["input_file_id"],
            endpoint=request.get("endpoint", ""),
            completion_window=request.get("completion_window", ""),
            created_at=int(time.time()),
            metadata=request.get("metadata"),
            total=len(lines),
            expire_after=self._expire_next.pop(0) if self._expire_next else None,
        )
        self.batches[batch.id] = batch
        self.submitted_ids.extend(line["custom_id"] for line in lines)
        task = asyncio.ensure_future(self._run(batch, lines))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return 200, (), json.dumps(batch.to_dict()).encode(), None

    async def _run(self, batch: _Batch, lines: list[dict[str, Any]]) -> None:
        batch.status = "in_progress"
        await asyncio.sleep(self.seconds)
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if batch.status == "cancelling" or (batch.expire_after is not None and i >= batch.expire_after):
                code = "batch_cancelled" if batch.status == "cancelling" else "batch_expired"
                errors.append(_line(line, None, {"code": code, "message": f"not run: {code}"}))
                continue
            status, payload = await self.answer(line["body"])
            response = {"status_code": status, "request_id": f"req_{i}", "body": json.loads(payload)}
            (outputs if status == 200 else errors).append(_line(line, response, None))
        # Like the real API, output order is not input order: clients must match lines by custom_id.
        random.Random(batch.id).shuffle(outputs)
        batch.completed, batch.failed = len(outputs), len(errors)
        batch.output_file_id = self._store(outputs)
        batch.error_file_id = self._store(errors)
        batch.status = {"cancelling": "cancelled"}.get(
            batch.status, "expired" if batch.expire_after is not None else "completed"
        )

    def _store(self, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id


def _line(request: dict[str, Any], response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": f"batch_req_{request['custom_id'][:12]}",
        "custom_id": request["custom_id"],
        "response": response,
        "error": error,
    }


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name (enough for the SDK's file upload)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return {}
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name.group(1).decode()] = value
    return fields


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}}).encode()


def _not_found(message: str) -> Route:
    return 404, (), json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode(), None
