"""Google Cloud Storage for the tests: fake-gcs-server (Go module github.com/fsouza/fake-gcs-server, built
by ``make deps`` into .cache/bin) on a loopback port, in memory, loaded from a folder (a subfolder per
bucket)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from support.process import ROOT
from support.servers import free_port, stop_process, wait_until_up

FAKE_GCS = ROOT / ".cache" / "bin" / "fake-gcs-server"


class FakeGCS:
    def __init__(self, data: Path) -> None:
        if not FAKE_GCS.exists():
            raise RuntimeError(f"{FAKE_GCS} is missing: run `make deps`")
        self.port = free_port()
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
        wait_until_up(
            self.proc,
            lambda: requests.get(f"{self.endpoint}/storage/v1/b", timeout=1),
            "fake-gcs-server",
            timeout=60,
            poll=0.1,
            errors=requests.ConnectionError,
        )

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
        stop_process(self.proc)
