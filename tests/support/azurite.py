"""Azure Blob Storage for the tests: Azurite (the npm package ``azurite``, installed by ``make deps`` into
.cache/npm) on a loopback port, in memory, with its well-known development account; with ``tls`` (a
certificate and its key), over HTTPS with bearer tokens accepted (``--oauth basic``: Azurite checks a
token's audience, issuer and lifetime, not its signature)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from support.process import ROOT
from support.servers import free_port, stop_process, wait_until_up

AZURITE = ROOT / ".cache" / "npm" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (public: it is the same in every Azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    def __init__(self, workdir: Path, tls: tuple[Path, Path] | None = None) -> None:
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `make deps` (npm install azurite)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--silent",
                *(["--cert", str(tls[0]), "--key", str(tls[1]), "--oauth", "basic"] if tls else []),
            ],
            cwd=workdir,  # its debug log, if any, goes there
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}/{ACCOUNT}"
        self.connection_string = ";".join(
            [
                f"DefaultEndpointsProtocol={scheme}",
                f"AccountName={ACCOUNT}",
                f"AccountKey={KEY}",
                f"BlobEndpoint={self.endpoint}",
            ]
        )
        wait_until_up(
            self.proc,
            lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close(),
            "azurite",
            timeout=60,
            poll=0.1,
        )
        from azure.storage.blob import BlobServiceClient

        verify: dict[str, Any] = {"connection_verify": str(tls[0])} if tls else {}
        self.service: Any = BlobServiceClient.from_connection_string(self.connection_string, **verify)

    def put(self, container: str, objects: dict[str, bytes]) -> None:
        c = self.service.get_container_client(container)
        if not c.exists():
            c.create_container()
        for name, data in objects.items():
            c.upload_blob(name, data, overwrite=True)

    def stop(self) -> None:
        stop_process(self.proc)
