"""Ctrl-C and exit stay prompt while a worker is blocked in a read the kernel will not interrupt: a
file under another process's write lease (open() waits for lease-break-time, 45 s by default) and
a FIFO without a writer (open() waits forever). Stop abandons such a worker after StopGrace (1 s)."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

CHILD = r"""
import json, signal, sys, time
# A process started from a shell without job control inherits SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler: put the default one back, as an interactive run has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
import datago
config = json.loads(sys.argv[1])
with datago.Client(config) as client:
    print("ready", flush=True)
    try:
        for sample in client:
            print("sample", flush=True)
    except BaseException as e:
        print("raised", type(e).__name__, time.time(), flush=True)
        raise
"""


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The child's next line, or a failure (never a hang) when none comes within timeout."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = getattr(proc, "lines", None) or queue.Queue()
    if not hasattr(proc, "lines"):
        proc.lines = lines  # type: ignore[attr-defined]
        stdout = proc.stdout
        threading.Thread(
            target=lambda: [lines.put(x) for x in iter(stdout.readline, "")], daemon=True
        ).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output from the child within {timeout} s") from None


def interrupt_while_stuck(config: dict, expect_samples: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert read_line(proc).strip() == "ready"  # SIGINT before this would hit the import
        for _ in range(expect_samples):
            assert read_line(proc).strip() == "sample"
        time.sleep(0.5)  # every other sample is delivered: the client now waits on the stuck read
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        line = read_line(proc, 10).split()
        assert line[:2] == ["raised", "KeyboardInterrupt"], line
        assert float(line[2]) - sent < 0.5, f"KeyboardInterrupt {float(line[2]) - sent:.2f} s after SIGINT"
        proc.wait(timeout=5)  # leaving the with block and interpreter exit: bounded
        assert time.time() - sent < 5
        # Python's exit for an uncaught KeyboardInterrupt: killed by SIGINT.
        assert proc.returncode == -signal.SIGINT, (proc.returncode, proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def leased_folder(tmp_path: Path) -> Iterator[Path]:
    for i in range(6):
        Image.new("RGB", (32, 24), (i * 30, 10, 10)).save(tmp_path / f"ok{i}.png")
    stuck = tmp_path / "stuck.png"
    Image.new("RGB", (32, 24)).save(stuck)
    # The kernel signals a lease holder with SIGIO when another process opens the file, and SIGIO
    # ends a process by default: ignore it, so the lease is kept and the opener waits.
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
    fd = os.open(stuck, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)  # held by this process, broken by the child's open
    except OSError as e:
        os.close(fd)
        pytest.fail(f"cannot take a write lease (the test needs root or the file's owner): {e}")
    try:
        yield tmp_path
    finally:
        os.close(fd)
        signal.signal(signal.SIGIO, previous)


def test_ctrl_c_with_a_worker_stuck_on_a_leased_file(leased_folder: Path) -> None:
    config = {"source_type": "filesystem", "source_config": {"root_path": str(leased_folder)}}
    config["concurrency"] = 2
    interrupt_while_stuck(config, expect_samples=6)


def test_ctrl_c_with_a_shard_that_is_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "shard.tar"
    os.mkfifo(fifo)
    config = {"source_type": "webdataset", "source_config": {"url": str(fifo)}, "concurrency": 2}
    interrupt_while_stuck(config, expect_samples=0)


def test_stop_is_bounded_and_counts_the_abandoned_worker(leased_folder: Path) -> None:
    import datago

    config = {"source_type": "filesystem", "source_config": {"root_path": str(leased_folder)}}
    config["concurrency"] = 2
    client = datago.Client(config)
    got = [client.get_sample(timeout=10) for _ in range(6)]
    assert all(s is not None for s in got)
    t0 = time.monotonic()
    client.stop()
    assert time.monotonic() - t0 < 2.0
    assert client.stats()["abandoned"] >= 1
    client.close()
