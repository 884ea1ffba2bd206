"""Running a worker script under torchrun on one node (gloo, loopback), as test_cluster.py and test_torch.py
both do (one copy of the environment and command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.process import PYTHON_DIR
from support.servers import free_port


def run_torchrun(nproc: int, script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` in ``nproc`` ranks of a fresh torchrun job, importing datago from python/, one OpenMP
    thread each, with none of this process's rank variables (shared so every test launches jobs alike)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), env.get("PYTHONPATH")]))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(script),
        *args,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
