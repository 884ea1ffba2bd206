"""A loopback Hugging Face Hub for the tests: the documented endpoints datago uses, on 127.0.0.1.

- ``GET /api/datasets/<org>/<name>/tree/<revision>[/<path>]?recursive=true``: the files under a path, as the
  Hub's JSON entries (``type``, ``path``, ``size``, ``oid``, ``lfs``), ``page_size`` a page, the next page
  named by a ``Link: <...>; rel="next"`` header;
- ``GET /datasets/<org>/<name>/resolve/<revision>/<path>``: a 302 redirect to a second server (another
  port: another host), with ``X-Linked-Etag`` and ``X-Linked-Size``, as the Hub does for LFS files; the
  second server serves the bytes with ``Range`` support and refuses any request carrying an
  ``Authorization`` header (400), as signed storage URLs do;
- errors as the Hub sends them: ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) and
  ``X-Error-Message`` headers, 401 without the right token for a private repository.

``cut_first`` makes the storage server cut the first response for each path halfway (a broken body);
``retry_after`` (seconds) makes the Hub answer the first request of every target (tree page, resolve)
503 with that Retry-After, and ``times`` records when each target was asked.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    files: dict[str, bytes]
    revisions: tuple[str, ...] = ("main",)
    private: bool = False


@dataclass
class HubServer:
    repos: dict[str, Repo]
    token: str = "hf_" + "t0k3n" * 6
    page_size: int = 10
    cut_first: bool = False
    retry_after: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)  # monotonic arrival times per target
    hub_auth: list[str] = field(default_factory=list)  # the Authorization header of every Hub request
    storage_requests: list[tuple[str, str | None, str | None]] = field(
        default_factory=list
    )  # path, auth, range

    def __post_init__(self) -> None:
        self._cut: set[str] = set()
        self._lock = threading.Lock()
        hub, storage = self, self

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        class Storage(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                auth, rng = self.headers.get("Authorization"), self.headers.get("Range")
                storage.storage_requests.append((self.path, auth, rng))
                if auth is not None:
                    self._send(400, b"<Error><Code>InvalidArgument</Code>Only one auth mechanism</Error>")
                    return
                parts = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/").split("/", 2)
                repo = storage.repos.get("/".join(parts[:2]))
                data = repo.files.get(parts[2]) if repo is not None and len(parts) == 3 else None
                if data is None:
                    self._send(404, b"no such object")
                    return
                start = 0
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                with storage._lock:
                    cut = storage.cut_first and not rng and self.path not in storage._cut and len(body) > 1
                    if cut:
                        storage._cut.add(self.path)
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Hub(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                hub.hub_auth.append(self.headers.get("Authorization", ""))
                with hub._lock:
                    first = self.path not in hub.times
                    hub.times.setdefault(self.path, []).append(time.monotonic())
                if hub.retry_after and first:
                    body = b'{"error": "Service Unavailable"}'
                    self.send_response(503)
                    self.send_header("Retry-After", str(hub.retry_after))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                parsed = urllib.parse.urlsplit(self.path)
                parts = [urllib.parse.unquote(p) for p in parsed.path.split("/")]
                try:
                    if parts[1:3] == ["api", "datasets"] and parts[5] == "tree":
                        self._tree(f"{parts[3]}/{parts[4]}", parts[6], "/".join(parts[7:]), parsed.query)
                    elif parts[1] == "datasets" and parts[4] == "resolve":
                        self._resolve(f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:]))
                    else:
                        self._error(404, "EntryNotFound", "unknown endpoint")
                except IndexError:
                    self._error(404, "EntryNotFound", "unknown endpoint")

            def _repo(self, name: str, revision: str) -> Repo | None:
                repo = hub.repos.get(name)
                authorized = self.headers.get("Authorization") == f"Bearer {hub.token}"
                if repo is None or (repo.private and not authorized):
                    # The Hub answers 401 for a repository it will not show, existing or not.
                    self._error(401, "RepoNotFound", f"Repository Not Found for url: /datasets/{name}.")
                    return None
                if revision not in repo.revisions:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return None
                return repo

            def _tree(self, name: str, revision: str, path: str, query: str) -> None:
                repo = self._repo(name, revision)
                if repo is None:
                    return
                prefix = path.strip("/") + "/" if path.strip("/") else ""
                entries = sorted(k for k in repo.files if k.startswith(prefix))
                if prefix and not entries:
                    self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
                    return
                params = urllib.parse.parse_qs(query)
                cursor = int(params.get("cursor", ["0"])[0])
                page = entries[cursor : cursor + hub.page_size]
                out = []
                for k in page:
                    data = repo.files[k]
                    e: dict[str, Any] = {"type": "file", "path": k, "size": len(data), "oid": _git_oid(data)}
                    if k.endswith((".tar", ".jpg", ".png")):
                        sha = hashlib.sha256(data).hexdigest()
                        e["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 130}
                    out.append(e)
                body = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cursor + hub.page_size < len(entries):
                    query = f"recursive=true&cursor={cursor + hub.page_size}"
                    nxt = f"{hub.endpoint}{parsed_path(self.path)}?{query}"
                    self.send_header("Link", f'<{nxt}>; rel="next"')
                self.end_headers()
                self.wfile.write(body)

            def _resolve(self, name: str, revision: str, path: str) -> None:
                repo = self._repo(name, revision)
                if repo is None:
                    return
                data = repo.files.get(path)
                if data is None:
                    self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
                    return
                self.send_response(302)
                location = (
                    f"{hub.storage_endpoint}/{urllib.parse.quote(name + '/' + path)}?X-Amz-Signature=abc"
                )
                self.send_header("Location", location)
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _error(self, code: int, error_code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(code)
                self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._servers = [Quiet(("127.0.0.1", 0), Hub), Quiet(("127.0.0.1", 0), Storage)]
        self.endpoint = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.storage_endpoint = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        for s in self._servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()

    def retry_gaps(self) -> dict[str, float]:
        """Seconds between the first two requests of every Hub target asked more than once."""
        with self._lock:
            return {t: ts[1] - ts[0] for t, ts in self.times.items() if len(ts) > 1}

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()


def parsed_path(path: str) -> str:
    return urllib.parse.urlsplit(path).path


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
