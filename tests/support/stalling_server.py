"""A TCP server on 127.0.0.1 that accepts connections and never answers, for the cancellation tests."""

from __future__ import annotations

import socket
import threading
import time


class StallingServer:
    """A loopback TCP server that accepts connections and never answers (or answers the headers of a
    page and never sends its body). It records when each connection was closed by the client, to
    check that a stopped client really lets go of its request."""

    def __init__(self, headers_only: bool = False) -> None:
        self.headers_only = headers_only
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.requests: list[bytes] = []
        self.closed_at: list[float] = []  # monotonic time at which the client closed each connection
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._hold, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        data = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:  # the client closed its side
                    self.closed_at.append(time.monotonic())
                    return
                data += chunk
                if b"\r\n\r\n" in data:
                    self.requests.append(data)
                    data = b""
                    if self.headers_only:  # a page is coming... and never does
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                        conn.sendall(b'Content-Length: 100000\r\n\r\n{"results": [')

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(2)
