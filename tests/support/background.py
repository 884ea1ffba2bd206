"""Long test runs in the background, so that runs which mostly wait (the 2-minute expiring-credential runs
of the storage tests) overlap each other and the rest of the suite instead of adding up.

A test marked ``@pytest.mark.background(run=function)`` names a function of its own module,
``function(workdir: Path) -> dict``, that starts the servers it needs, runs, stops them and returns JSON-able
facts. tests/conftest.py starts it (a ``BackgroundRun``) as soon as the session has collected the test; the
test takes the ``background`` fixture and asserts on ``background.result()``, which waits for the run.

The function runs in a fresh interpreter (``python -m support.background``), not in a thread of pytest:
tests of this process count its threads and file descriptors, monkeypatch its environment and fork it. The
interpreter leads a process group of its own, so stopping the group at the session's end also stops what
it started (moto, Azurite, fake-gcs-server, the datago reader), even when a test failed or the session was
interrupted; it is sent SIGTERM if pytest dies, and SIGTERM runs the function's ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from support.process import PYTHON_DIR

TESTS_DIR = Path(__file__).resolve().parents[1]
# What a failure message quotes of a run's output: its end, where a traceback is.
TAIL = 4000
READER_STDERR = "reader.stderr"


class BackgroundRun:
    """``run``, a function of a test module, started in a subprocess now; ``result()`` waits for what it
    returned, at most ``timeout`` seconds from now."""

    def __init__(self, run: Callable[[Path], dict[str, Any]], timeout: float = 600.0) -> None:
        self.name = f"{run.__module__}.{run.__name__}"
        self.timeout = timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"datago-{run.__name__}-"))
        self._out, self._err = self.workdir / "stdout", self.workdir / "stderr"
        module_file = sys.modules[run.__module__].__file__
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(TESTS_DIR), str(PYTHON_DIR), env.get("PYTHONPATH")])
        )
        # The files are the child's own once it has them: this process keeps no descriptor open.
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "support.background",
                    str(module_file),
                    run.__name__,
                    str(self.workdir),
                    str(os.getpid()),
                ],
                cwd=TESTS_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.started = time.monotonic()
        self._result: dict[str, Any] | None = None

    def output(self) -> str:
        """The end of the run's stdout and stderr, and of its reader's stderr, for a failure message."""
        parts = []
        for path in (self._out, self._err, self.workdir / READER_STDERR):
            if path.exists():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name} of {self.name}:\n{text[-TAIL:]}")
        return "\n".join(parts)

    def result(self) -> dict[str, Any]:
        """What the function returned; AssertionError, with the run's output, if it failed or outlived
        ``timeout`` seconds from its start."""
        if self._result is not None:
            return self._result
        left = self.timeout - (time.monotonic() - self.started)
        try:
            code = self.proc.wait(max(left, 0.1))
        except subprocess.TimeoutExpired:
            self._end()  # first: its output then says where it was
            raise AssertionError(
                f"{self.name} still running {self.timeout:.0f} s after its start\n{self.output()}"
            ) from None
        result_file = self.workdir / "result.json"
        if code != 0 or not result_file.exists():
            raise AssertionError(f"{self.name} exited with {code}\n{self.output()}")
        self._result = json.loads(result_file.read_text())
        return self._result

    def stop(self) -> None:
        """End the run (and everything it started) if it is still going, and remove its files."""
        self._end()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _end(self) -> None:
        if self.proc.poll() is None:
            # SIGTERM to the run alone: it prints where it was, and its finally blocks stop its servers.
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                self.proc.terminate()
                self.proc.wait(20)
        # Then the whole group: a server or reader the run did not stop (it was stuck, or killed).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def read_for(
    cfg: dict[str, Any], seconds: float, workdir: Path, timeout: float = 300.0, **env: str
) -> dict[str, Any]:
    """Read ``cfg`` slowly (20 ms a sample) for ``seconds`` in a fresh interpreter, with ``env`` set there
    (the Go SDKs read some variables, SSL_CERT_FILE among them, once per process). Returns its returncode
    and the end of its stderr, and when it succeeded the samples read (``n``), the ``skipped`` counts of
    its stats and its ``skips`` (as text)."""
    (workdir / "read-cfg.json").write_text(json.dumps(cfg))
    code = f"""
        import json, time
        import datago
        cfg = json.loads(open("read-cfg.json").read())
        n, deadline = 0, time.monotonic() + {seconds!r}
        with datago.Client(cfg) as c:
            for _ in c:
                n += 1
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            skips = [str(r) for r in c.skipped()]
            print(json.dumps({{"n": n, "skipped": c.stats()["skipped"], "skips": skips}}))
    """
    # The reader's stderr in a file, not a pipe: a failure message quotes it even when the run is stopped
    # half-way (BackgroundRun.output).
    with (workdir / READER_STDERR).open("w") as err:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
            cwd=workdir,
            env={**os.environ, **env},
            check=False,
        )
    got: dict[str, Any] = {
        "returncode": out.returncode,
        "stderr": (workdir / READER_STDERR).read_text(errors="replace")[-TAIL:],
    }
    if out.returncode == 0:
        got.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return got


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when pytest (``parent``) dies, however it dies."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        sys.exit(143)


def main() -> None:
    module_file, function, workdir, parent = sys.argv[1:]

    def terminated(signum: int, frame: FrameType | None) -> None:
        print(f"{function} stopped (signal {signum}) at:", file=sys.stderr)
        traceback.print_stack(frame, file=sys.stderr)
        sys.exit(128 + signum)  # SystemExit: the function's finally blocks stop its servers

    signal.signal(signal.SIGTERM, terminated)
    _die_with_parent(int(parent))
    sys.path.insert(0, str(Path(module_file).parent))
    module = importlib.import_module(Path(module_file).stem)
    try:
        result = getattr(module, function)(Path(workdir))
    except SystemExit:
        # Stopped by a signal, its finally blocks done: what they did not stop goes too (this process last).
        os.killpg(0, signal.SIGKILL)
        raise
    tmp = Path(workdir) / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    tmp.rename(Path(workdir) / "result.json")


if __name__ == "__main__":
    main()
