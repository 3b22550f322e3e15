"""Crash-proof on-disk cache of LLM responses (stdlib ``sqlite3`` in WAL mode).

Every response is committed the moment it arrives, so killing the process loses at most the requests in
flight. The key is a hash of everything that determines a response (see :func:`cache_key`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "cache_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """Where responses are cached unless told otherwise.

    ``$RARE_HF_CACHE`` if set, else ``$XDG_CACHE_HOME/rare_hf`` (``~/.cache/rare_hf``).
    """
    if os.environ.get("RARE_HF_CACHE"):
        return Path(os.environ["RARE_HF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rare_hf"


def cache_key(
    *, base_url: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any], sample_index: int
) -> str:
    """Hash of everything that determines a response.

    The system prompt and base URL are part of the key (a peer tool omits them and serves stale hits);
    ``sample_index`` makes deliberate resampling a miss.
    """
    payload = {
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": messages,
        "params": params,
        "sample_index": sample_index,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> JSON-object store in one SQLite file, safe to share between threads and processes.

    Args:
        path: The SQLite file (created with its parent folders if missing).

    Example:
        >>> cache = ResponseCache(tmp_path / "responses.sqlite")
        >>> cache.put("k", {"text": "hi"}); cache.get("k")
        {'text': 'hi'}
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process in WAL mode (only a power cut can lose a commit).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, blob))

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
