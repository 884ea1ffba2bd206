"""The checkout's paths, subprocess scripts, and readings of this process (memory, threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
LIBRARY = PYTHON_DIR / "datago" / "libdatago.so"


def run_python(
    code: str, timeout: float, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter importing datago from python/; kill it after ``timeout``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), full_env.get("PYTHONPATH")]))
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=full_env,
        check=False,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_count() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no Threads line in /proc/self/status")
