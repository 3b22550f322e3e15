"""Crash-proof on-disk cache of LLM responses (stdlib ``sqlite3`` in WAL mode).

Every response is committed the moment it arrives, so killing the process loses at most the requests in
flight. The key is a hash of what determines a response (see :func:`cache_key`), not of where it was
sent: a server that comes back on another host, or a pool of replicas, shares one cache. Each entry keeps
the usage it was paid with, so a resumed run still reports what its data cost.

The cache is private: folders it creates are 0700, its file 0600, and a file owned by another user is
refused (a planted cache would become training data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import CacheError

__all__ = ["ResponseCache", "CacheError", "cache_key", "default_cache_dir"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where responses are cached unless told otherwise.

    ``$RARE_HF_CACHE`` if set, else ``$XDG_CACHE_HOME/rare_hf`` (``~/.cache/rare_hf``).
    """
    if os.environ.get("RARE_HF_CACHE"):
        return Path(os.environ["RARE_HF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rare_hf"


def cache_key(
    *,
    model: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    sample_index: int,
    namespace: str | None = None,
) -> str:
    """Hash of everything that determines a response.

    The system prompt is part of the key (a peer tool omits it and serves stale hits); ``sample_index``
    makes deliberate resampling a miss. The endpoint's URL is not: the same model answers the same way on
    any host. ``namespace`` keeps apart two different servers that use one model name.
    """
    payload: dict[str, Any] = {"model": model, "messages": messages, "params": params, "sample_index": sample_index}
    if namespace:
        payload["namespace"] = namespace
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def open_cache(cache_dir: str | os.PathLike[str] | ResponseCache | Literal[False] | None) -> ResponseCache | None:
    """An LLM's cache: ``responses.sqlite`` in ``cache_dir`` (default: :func:`default_cache_dir`), the given
    cache itself, or none for ``False``."""
    if cache_dir is False:
        return None
    if isinstance(cache_dir, ResponseCache):
        return cache_dir
    return ResponseCache(Path(cache_dir or default_cache_dir()) / "responses.sqlite")


class ResponseCache:
    """A key -> JSON-object store in one SQLite file, safe to share between threads and processes.

    A failed write (a full disk) never costs a reply: it is logged once and the cache stops writing,
    so the run goes on uncached.

    Args:
        path: The SQLite file (created, with its parent folders, if missing).
        also_read: Other cache files to look replies up in, read-only (the files of other workers in a
            shared folder: SQLite must never be written by several hosts over a network file system).

    Raises:
        CacheError: the file is not a readable SQLite cache, or belongs to another user.

    Example:
        >>> cache = ResponseCache(tmp_path / "responses.sqlite")
        >>> cache.put("k", {"text": "hi"}); cache.get("k")
        {'text': 'hi'}
    """

    def __init__(self, path: str | os.PathLike[str], also_read: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.path = Path(path)
        self.writable = True
        self._lock = threading.Lock()
        _create_private(self.path)
        self._readers = {Path(p): _open_read_only(Path(p)) for p in also_read if Path(p) != self.path}
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a killed process in WAL mode (only a power cut can lose a commit).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            (check,) = self._conn.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.Error as exc:
            raise CacheError(
                f"The response cache {self.path} is unreadable ({exc}). Delete it to start a new cache (its "
                "replies are lost), or pass cache_dir= (CLI: --cache-dir) to use another folder."
            ) from exc

    def read_also(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Look replies up in these cache files too (read-only), from now on.

        For the files of other workers that appear during a run: a file not readable yet (another worker is
        creating it) is left for a later call.
        """
        for path in map(Path, paths):
            if path != self.path and path not in self._readers:
                try:
                    connection = _open_read_only(path)
                except CacheError as exc:
                    logger.debug("Not reading %s yet: %s", path, exc)
                    continue
                with self._lock:
                    self._readers[path] = connection

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with self._lock:
                row = None
                for conn in (self._conn, *self._readers.values()):
                    row = conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
                    if row:
                        break
        except sqlite3.Error as exc:
            logger.warning("Reading the response cache %s failed (%s); treating it as a miss.", self.path, exc)
            return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> bool:
        """Store ``value``; returns False (after one warning for the cache's life) when it cannot."""
        if not self.writable:
            return False
        blob = json.dumps(value, ensure_ascii=False)
        try:
            with self._lock:
                self._conn.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, blob))
        except sqlite3.Error as exc:
            self.writable = False
            logger.warning(
                "Writing to the response cache %s failed (%s); the run goes on without caching new replies "
                "(none is lost, but an interrupted run will resend them). Free disk space or pass another "
                "cache_dir= to cache again.",
                self.path,
                exc,
            )
            return False
        return True

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for conn in (self._conn, *self._readers.values()):
                conn.close()


def _open_read_only(path: Path) -> sqlite3.Connection:
    if path.stat().st_uid != os.geteuid():
        raise CacheError(f"The response cache {path} belongs to another user; rare_hf only reads its own caches.")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        conn.execute("SELECT COUNT(*) FROM responses").fetchone()
    except sqlite3.Error as exc:
        raise CacheError(f"The response cache {path} is unreadable ({exc}). Delete it or use another folder.") from exc
    return conn


def _create_private(path: Path) -> None:
    """Make the folder (0700) and the file (0600) if missing; refuse a file another user owns."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in missing:
        os.chmod(folder, 0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        owner = path.stat().st_uid
        if owner != os.geteuid():
            raise CacheError(
                f"The response cache {path} belongs to another user (uid {owner}); rare_hf only reads a cache "
                "it created. Pass cache_dir= (CLI: --cache-dir) to use a folder of your own."
            ) from None
        os.chmod(path, 0o600)  # a cache written by rare_hf 0.1 was created 0644
