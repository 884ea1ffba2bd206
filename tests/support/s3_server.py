"""S3 for the tests: moto in server mode on 127.0.0.1 (a subprocess) with IAM signature checking on, so that
a wrong key is refused as AWS refuses it, and a fault proxy that cuts bodies, resets connections and answers
503 SlowDown in front of it. Also runs as a script (``python tests/support/s3_server.py``), for the bench.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import requests

try:
    from support.servers import free_port, stop_process, wait_until_up
except ModuleNotFoundError:  # run as a script: tests/support/ is sys.path[0], not tests/
    from servers import free_port, stop_process, wait_until_up  # type: ignore[no-redef]

ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}],
    }
)
TRUST_ANYONE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)


VIRTUAL_HOST = "s3.datago.test"


@dataclass
class Key:
    """An access key of a moto IAM user."""

    id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.id, "AWS_SECRET_ACCESS_KEY": self.secret}


class S3Server:
    """moto's S3 (and IAM) on a loopback port. After start, every request must be signed with a key of an
    IAM user: ``key`` may do anything on S3 and assume ``role_arn`` (which may too), ``denied_key`` nothing
    (AccessDenied)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # VIRTUAL_HOST: the endpoint a client reaches through the proxy by name; moto serves buckets by path
        # there and by virtual host at <bucket>.VIRTUAL_HOST.
        self.virtual_endpoint = f"http://{VIRTUAL_HOST}:{self.port}"
        env = dict(os.environ, MOTO_PORT=str(self.port), MOTO_S3_CUSTOM_ENDPOINTS=self.virtual_endpoint)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_until_up(
            self.proc,
            lambda: requests.get(self.endpoint + "/moto-api/data.json", timeout=1),
            "moto server",
            timeout=30,
            poll=0.05,
            errors=requests.ConnectionError,
        )
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=ALLOW_ALL)
        iam.create_user(UserName="nobody")
        # A role whose temporary credentials (sts:AssumeRole, with a session token) read S3.
        self.role_arn = iam.create_role(RoleName="reader-role", AssumeRolePolicyDocument=TRUST_ANYONE)[
            "Role"
        ]["Arn"]
        iam.put_role_policy(RoleName="reader-role", PolicyName="all", PolicyDocument=ALLOW_ALL)
        keys = [iam.create_access_key(UserName=u)["AccessKey"] for u in ("reader", "nobody")]
        self.key, self.denied_key = (Key(k["AccessKeyId"], k["SecretAccessKey"]) for k in keys)
        # From here on moto checks every request's signature and the user's policy.
        requests.post(self.endpoint + "/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
        self.s3 = self.client()

    def client(self, key: Key | None = None) -> Any:
        key = key or self.key
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key.id,
            aws_secret_access_key=key.secret,
        )

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def env(self, key: Key | None = None, endpoint: str | None = None) -> dict[str, str]:
        """The environment a datago process reads this server with (the AWS SDK's own variables)."""
        return {
            **(key or self.key).env(),
            "AWS_ENDPOINT_URL_S3": endpoint or self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        stop_process(self.proc)


# Headers the proxy sets itself rather than copying from moto's response.
HOP_HEADERS = frozenset({"transfer-encoding", "connection", "content-length", "server", "date"})

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

UNAUTHORIZED = json.dumps(
    {"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}}
).encode()


@dataclass
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream``: requests pass unchanged (the signature covers the
    Host header, which the client set to the proxy's address), and the GET requests take the faults of
    ``plan`` in turn: "ok", "cut" (headers and half of the body, then the connection closes), "reset" (a TCP
    reset instead of a response), "slowdown" (503 SlowDown), "throttle" (429 with Retry-After: 1). It also
    serves as an HTTP proxy (HTTP_PROXY), which lets a client address buckets by virtual host
    (bucket.s3.example:port) with no DNS name: every request goes to ``upstream`` with its Host header.

    With ``retry_after`` (seconds), the first GET of every request target (path and query) is answered 503
    SlowDown with that Retry-After, whatever ``plan`` says; ``times`` records when each target was asked.
    With ``authorize``, a request whose Authorization header it refuses is answered 401 (the JSON API's
    error) and counted in ``rejected``, as a store refuses an expired or unknown bearer token."""

    upstream: str
    plan: list[str] = field(default_factory=lambda: ["ok"])
    counts: dict[str, int] = field(default_factory=dict)
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (Host header, method) of every request
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    authorizations: list[bool] = field(default_factory=list)  # whether each request was signed
    retry_after: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)  # monotonic arrival times per target
    authorize: Callable[[str], bool] | None = None
    rejected: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = itertools.cycle(self.plan)
        host, port = self.upstream.removeprefix("http://").split(":")
        self._up = (host, int(port))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.hosts.append((self.headers.get("Host", ""), self.command))
                proxy.requests.append((self.command, self.path))
                proxy.authorizations.append("Authorization" in self.headers)
                if proxy.authorize is not None and not proxy.authorize(self.headers.get("Authorization", "")):
                    with proxy._lock:
                        proxy.rejected += 1
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(UNAUTHORIZED)))
                    self.end_headers()
                    self.wfile.write(UNAUTHORIZED)
                    return
                fault = proxy._next(self.path) if self.command == "GET" else "ok"
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault in ("slowdown", "throttle", "retry_after"):
                    self.send_response(429 if fault == "throttle" else 503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    if fault == "throttle":
                        self.send_header("Retry-After", "1")
                    if fault == "retry_after":
                        self.send_header("Retry-After", str(proxy.retry_after))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(*proxy._up, timeout=30)
                path = self.path
                if "://" in path:  # used as an HTTP proxy (HTTP_PROXY): the absolute form names the host
                    path = "/" + path.split("://", 1)[1].partition("/")[2]
                try:
                    conn.request(self.command, path, body=body, headers=dict(self.headers.items()))
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "cut" and len(data) > 1 and self.command == "GET":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._forward()

            def do_PUT(self) -> None:  # noqa: N802
                self._forward()

            def do_HEAD(self) -> None:  # noqa: N802
                self._forward()

            def do_POST(self) -> None:  # noqa: N802
                self._forward()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client hung up on a cut or reset: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _next(self, target: str) -> str:
        with self._lock:
            seen = target in self.times
            self.times.setdefault(target, []).append(time.monotonic())
            f = "retry_after" if self.retry_after and not seen else next(self._faults)
            self.counts[f] = self.counts.get(f, 0) + 1
            return f

    def retry_gaps(self) -> dict[str, float]:
        """Seconds between the first two requests of every target asked more than once."""
        with self._lock:
            return {t: ts[1] - ts[0] for t, ts in self.times.items() if len(ts) > 1}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """Serve a folder (every file under it, keys relative to it) from moto until interrupted."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--bucket", default="bench")
    args = ap.parse_args()
    srv = S3Server()
    srv.bucket(args.bucket)
    for p in sorted(args.root.rglob("*")):
        if p.is_file():
            srv.put(args.bucket, {p.relative_to(args.root).as_posix(): p.read_bytes()})
    print(json.dumps({"endpoint": srv.endpoint, **srv.key.env()}), flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
