"""Local servers the tests start as subprocesses (Azurite, fake-gcs-server, moto) and the jobs they give a
port to (torchrun): a free loopback port, waiting for a server to answer, stopping it (one copy of each;
standard library only, so that s3_server.py still runs as a script)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A loopback TCP port nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], object],
    what: str,
    timeout: float,
    poll: float,
    errors: type[Exception] | tuple[type[Exception], ...] = OSError,
) -> None:
    """Call ``probe`` until it stops raising ``errors``; RuntimeError if ``proc`` exits or ``timeout`` passes
    first (every server start waited the same way, so it is written once)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except errors:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(poll)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s, and reap it: how every test server subprocess is stopped."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
