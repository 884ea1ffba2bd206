"""Google Cloud Storage for the tests: fake-gcs-server (Go module github.com/fsouza/fake-gcs-server, built
by ``make deps`` into .cache/bin) on a loopback port, in memory, loaded from a folder (a subfolder per
bucket)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import requests

from support.process import ROOT

FAKE_GCS = ROOT / ".cache" / "bin" / "fake-gcs-server"


class FakeGCS:
    def __init__(self, data: Path) -> None:
        if not FAKE_GCS.exists():
            raise RuntimeError(f"{FAKE_GCS} is missing: run `make deps`")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.endpoint = f"http://{self.host}"
        self.proc = subprocess.Popen(
            [
                str(FAKE_GCS),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-backend",
                "memory",
                "-data",
                str(data),
                "-public-host",
                self.host,
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{self.endpoint}/storage/v1/b", timeout=1)
                break
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fake-gcs-server did not start") from None
                time.sleep(0.1)

    def put(self, bucket: str, name: str, data: bytes) -> None:
        r = requests.post(
            f"{self.endpoint}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            timeout=30,
        )
        r.raise_for_status()

    def delete(self, bucket: str, name: str) -> None:
        requests.delete(
            f"{self.endpoint}/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}", timeout=30
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
