"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1 (standard library only), for push/load tests.

It implements the endpoints ``datasets``' ``push_to_hub``/``load_dataset`` and ``huggingface_hub`` use:
repo info and creation, pre-upload, LFS batch + upload, NDJSON commits, tree listing, paths-info,
resolve (with HEAD and Range), and YAML validation. Repos are kept in memory with their commit history.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def commit(self, repo: Repo, summary: str, changes: dict[str, bytes | None], lfs_paths: set[str]) -> str:
        for path, content in changes.items():
            if content is None:
                repo.files.pop(path, None)
                repo.lfs.discard(path)
            else:
                repo.files[path] = content
                (repo.lfs.add if path in lfs_paths else repo.lfs.discard)(path)
        oid = hashlib.sha1(f"{repo.sha}{summary}{len(repo.commits)}".encode()).hexdigest()
        repo.commits.append({"oid": oid, "summary": summary, "files": sorted(changes)})
        return oid


class LocalHub:
    """Context manager running the server; ``url`` goes into ``HF_ENDPOINT``."""

    def __init__(self) -> None:
        self.state = HubState()
        state = self.state

        class Handler(_Handler):
            hub = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        Handler.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def file(self, repo_id: str, path: str) -> bytes:
        return self.state.repos[repo_id].files[path]


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_REV = r"(?P<rev>[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubState
    base_url: str

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes | dict | list = b"",
        headers: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def _route(self, method: str) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        with self.hub.lock:
            self.hub.log.append((method, path))
        for pattern, handler_method, name in _ROUTES:
            if handler_method == method or (method == "HEAD" and handler_method == "GET"):
                match = re.fullmatch(pattern, path)
                if match:
                    getattr(self, name)(query=query, head_only=method == "HEAD", **match.groupdict())
                    return
        self._error(404, "EntryNotFound", f"no route {method} {path}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _repo(self, repo: str) -> Repo | None:
        found = self.hub.repos.get(repo)
        if found is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        return found

    # -- endpoints -----------------------------------------------------------------------------------------
    def whoami(self, **_: Any) -> None:
        self._send(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def repo_info(self, repo: str, rev: str | None = None, **_: Any) -> None:
        found = self._repo(repo)
        if found is None:
            return
        self._send(
            200,
            {
                "id": repo,
                "_id": repo,
                "private": found.private,
                "sha": found.sha,
                "siblings": [{"rfilename": p} for p in sorted(found.files)],
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "cardData": {},
                "disabled": False,
                "gated": False,
            },
        )

    def create_repo(self, **_: Any) -> None:
        body = json.loads(self._body() or b"{}")
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        if repo_id in self.hub.repos:
            self._send(
                409, {"error": "You already created this dataset repo", "url": f"{self.base_url}/datasets/{repo_id}"}
            )
            return
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.hub.repos[repo_id] = Repo(repo_id, private=private)
        self._send(200, {"url": f"{self.base_url}/datasets/{repo_id}", "name": repo_id})

    def preupload(self, repo: str, rev: str, **_: Any) -> None:
        if self._repo(repo) is None:
            return
        files = json.loads(self._body())["files"]
        self._send(
            200,
            {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular" if f["path"].endswith((".md", ".json", ".yaml")) else "lfs",
                        "shouldIgnore": False,
                    }
                    for f in files
                ]
            },
        )

    def lfs_batch(self, repo: str, **_: Any) -> None:
        body = json.loads(self._body())
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, oid: str, **_: Any) -> None:
        self.hub.lfs_objects[oid] = self._body()
        self._send(200, b"")

    def commit(self, repo: str, rev: str, **_: Any) -> None:
        found = self._repo(repo)
        if found is None:
            return
        summary, changes, lfs_paths = "", {}, set()
        for line in self._body().decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                changes[value["path"]] = self.hub.lfs_objects[value["oid"]]
                lfs_paths.add(value["path"])
            elif key in ("deletedFile", "deletedFolder"):
                prefix = value["path"]
                for path in [p for p in found.files if p == prefix or p.startswith(prefix.rstrip("/") + "/")]:
                    changes[path] = None
        with self.hub.lock:
            oid = self.hub.commit(found, summary, changes, lfs_paths)
        self._send(
            200, {"commitOid": oid, "commitUrl": f"{self.base_url}/datasets/{repo}/commit/{oid}", "success": True}
        )

    def _entry(self, found: Repo, path: str) -> dict[str, Any]:
        content = found.files[path]
        entry: dict[str, Any] = {
            "type": "file",
            "path": path,
            "size": len(content),
            "oid": hashlib.sha1(content).hexdigest(),
        }
        if path in found.lfs:
            entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
        return entry

    def tree(self, repo: str, rev: str, path: str = "", query: dict | None = None, **_: Any) -> None:
        found = self._repo(repo)
        if found is None:
            return
        path = (path or "").strip("/")
        recursive = (query or {}).get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path}/" if path else ""
        if path and path not in found.files and not any(p.startswith(prefix) for p in found.files):
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
            return
        entries, dirs = [], set()
        for file in sorted(found.files):
            if not file.startswith(prefix):
                continue
            rest = file[len(prefix) :]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/", 1)[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                dirs.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            entries.append(self._entry(found, file))
        entries += [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
            for d in sorted(dirs)
        ]
        self._send(200, entries)

    def paths_info(self, repo: str, rev: str, **_: Any) -> None:
        found = self._repo(repo)
        if found is None:
            return
        raw = self._body().decode()
        try:
            paths = json.loads(raw)["paths"]
        except (ValueError, KeyError):
            paths = urllib.parse.parse_qs(raw).get("paths", [])
        if isinstance(paths, str):
            paths = [paths]
        out = [self._entry(found, p) for p in paths if p in found.files]
        out += [
            {"type": "directory", "path": p, "oid": "0" * 40, "size": 0}
            for p in paths
            if p not in found.files and any(f.startswith(p.rstrip("/") + "/") for f in found.files)
        ]
        self._send(200, out)

    def resolve(self, repo: str, rev: str, path: str, head_only: bool = False, **_: Any) -> None:
        found = self._repo(repo)
        if found is None:
            return
        if path not in found.files:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}")
            return
        content = found.files[path]
        etag = hashlib.sha256(content).hexdigest() if path in found.lfs else hashlib.sha1(content).hexdigest()
        headers = {
            "X-Repo-Commit": found.sha,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if path in found.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(content))})
        status = 200
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes="):
            start_text, _, end_text = byte_range[6:].partition("-")
            start = int(start_text or 0)
            end = min(int(end_text) if end_text else len(content) - 1, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, head_only=head_only)

    def validate_yaml(self, **_: Any) -> None:
        self._body()
        self._send(200, {"errors": [], "warnings": []})

    def not_converted(self, **_: Any) -> None:
        self._error(404, "EntryNotFound", "no parquet conversion on this test hub")


_API = r"/api/(?:datasets|models)"  # model repos (a GGUF teacher) are served like dataset repos
_ROUTES = [
    (r"/api/whoami-v2", "GET", "whoami"),
    (r"/api/repos/create", "POST", "create_repo"),
    (r"/api/validate-yaml", "POST", "validate_yaml"),
    (rf"{_API}/{_REPO}/parquet(?:/.*)?", "GET", "not_converted"),
    (rf"{_API}/{_REPO}/preupload/{_REV}", "POST", "preupload"),
    (rf"{_API}/{_REPO}/commit/{_REV}", "POST", "commit"),
    (rf"{_API}/{_REPO}/paths-info/{_REV}", "POST", "paths_info"),
    (rf"{_API}/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", "GET", "tree"),
    (rf"{_API}/{_REPO}/revision/{_REV}", "GET", "repo_info"),
    (rf"{_API}/{_REPO}", "GET", "repo_info"),
    (rf"(?:/datasets)?/{_REPO}\.git/info/lfs/objects/batch", "POST", "lfs_batch"),
    (r"/lfs-upload/(?P<oid>[0-9a-f]+)", "PUT", "lfs_upload"),
    (rf"(?:/datasets)?/{_REPO}/resolve/{_REV}/(?P<path>.+)", "GET", "resolve"),
]
