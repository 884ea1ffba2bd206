"""A real HTTP server on 127.0.0.1 for the WebDataset tests and benchmark: serves files from memory
(or a directory) with Range support, and injects faults.

    with ShardServer({"/a.tar": data}) as server:
        server.faults.append(Fault("status", nth=3))            # HTTP 500 on the 3rd request
        server.faults.append(Fault("cut", after=5000))          # the next response stops after 5000 bytes
        server.faults.append(Fault("slow", delay=0.01))         # every response sent in slow chunks
        server.faults.append(Fault("stall", after=100, delay=5, times=1))
        server.url("/a.tar")                                    # "http://127.0.0.1:<port>/a.tar"

Each fault applies to the requests matching ``path`` (any when None): from the ``nth`` one (1-based, counted
among matching requests), to ``times`` of them (-1: all). ``server.requests`` records every request as
(path, Range header, status sent, bytes sent).
"""

from __future__ import annotations

import contextlib
import mmap
import re
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Fault", "ShardServer"]


@dataclass
class Fault:
    # "status": answer `status`; "cut": close the connection after `after` body bytes; "slow": send the
    # body in `chunk`-byte pieces, `delay` seconds apart; "stall": pause `delay` s after `after` bytes
    kind: str
    path: str | None = None
    nth: int = 1
    times: int = 1
    status: int = 500
    after: int = 0
    delay: float = 0.0
    chunk: int = 16384
    seen: int = 0  # matching requests so far
    used: int = 0  # requests it was applied to

    def applies(self, path: str) -> bool:
        """Count a request for ``path``; whether the fault applies to it."""
        if self.path is not None and self.path != path:
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times >= 0 and self.used >= self.times):
            return False
        self.used += 1
        return True


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the client may reuse connections

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        range_header = self.headers.get("Range", "")
        with owner.lock:
            faults = [f for f in owner.faults if f.applies(path)]
            data = owner.get(path)
            no_range = owner.no_range
        status_fault = next((f for f in faults if f.kind == "status"), None)
        if status_fault is not None:
            self._simple(status_fault.status, path, range_header)
            return
        if data is None:
            self._simple(404, path, range_header)
            return
        start, end = 0, len(data)
        status = 200
        match = _RANGE.match(range_header) if range_header and not no_range else None
        if match:
            start = int(match.group(1))
            if match.group(2):
                end = min(end, int(match.group(2)) + 1)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                owner.record(path, range_header, 416, 0)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(end - start))
        if not no_range:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if head:
            owner.record(path, range_header, status, 0)
            return
        body = memoryview(data)[start:end]
        cut = next((f for f in faults if f.kind == "cut"), None)
        slow = next((f for f in faults if f.kind == "slow"), None)
        stall = next((f for f in faults if f.kind == "stall"), None)
        limit = len(body) if cut is None else min(len(body), cut.after)
        chunk = slow.chunk if slow else 1 << 16
        sent = 0
        try:
            while sent < limit:
                if stall is not None and sent <= stall.after < sent + chunk:
                    piece = body[sent : max(sent, min(limit, stall.after))]
                    if piece:
                        self.wfile.write(piece)
                        sent += len(piece)
                    self.wfile.flush()
                    time.sleep(stall.delay)
                    stall = None
                    continue
                piece = body[sent : min(limit, sent + chunk)]
                self.wfile.write(piece)
                sent += len(piece)
                if slow is not None:
                    self.wfile.flush()
                    time.sleep(slow.delay)
            self.wfile.flush()
        except OSError:  # the client went away (timeout, cancelled)
            self.close_connection = True
            owner.record(path, range_header, status, sent)
            return
        owner.record(path, range_header, status, sent)
        if cut is not None and limit < len(body):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _simple(self, status: int, path: str, range_header: str) -> None:
        body = f"{status} {HTTPStatus(status).phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.owner.record(path, range_header, status, len(body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ShardServer


class ShardServer:
    """Serves ``files`` (path -> bytes) and, when ``root`` is given, the files below it."""

    def __init__(self, files: dict[str, bytes] | None = None, root: Path | None = None) -> None:
        self.files = dict(files or {})
        self.root = root
        self.faults: list[Fault] = []
        self.no_range = False
        self.requests: list[tuple[str, str, int, int]] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="wds-server", daemon=True)

    def get(self, path: str) -> bytes | mmap.mmap | None:
        """The content of ``path``: bytes, or a read-only map of a file below ``root``."""
        if path in self.files:
            return self.files[path]
        if self.root is not None:
            target = (self.root / path.lstrip("/")).resolve()
            if target.is_file() and self.root.resolve() in target.parents and target.stat().st_size > 0:
                with open(target, "rb") as f:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return None

    def record(self, path: str, range_header: str, status: int, sent: int) -> None:
        with self.lock:
            self.requests.append((path, range_header, status, sent))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> ShardServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ShardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # serve a directory: python tests/support/wds_server.py DIR
    import sys

    with ShardServer(root=Path(sys.argv[1])) as srv:
        print(srv.url("/"), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
