"""Waiting for a forked child in the scripts the fork tests run in a fresh interpreter (they put tests/ on
sys.path and import this; standard library only, nothing of datago)."""

from __future__ import annotations

import os
import time
from pathlib import Path

# A script's line (one, to keep its indentation) that imports wait_child: run_python puts python/ on
# sys.path, not tests/.
IMPORT_WAIT_CHILD = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
    "from support.forking import wait_child"
)


def wait_child(pid: int, seconds: float, poll: float = 0.02) -> int | None:
    """The wait status of child ``pid``, or None if it is still running after ``seconds`` (it is then killed
    and reaped): one copy of the guard that keeps a hung child from hanging the test."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(poll)
