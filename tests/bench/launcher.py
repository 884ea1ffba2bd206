"""The launcher of every measured process of bench.py (run as ``python -S launcher.py MARKER CMD...``).

It posix_spawns CMD, samples the memory of CMD's process tree from outside while it runs, reaps it,
and prints MARKER followed by a JSON line: wall time, exit status, ru_maxrss and CPU time (wait4),
and the peaks of the tree's summed VmRSS (every 20 ms) and summed PSS (every second).

Why a launcher: Linux keeps the largest RSS a process had before exec() in its ru_maxrss, and a child
forked from the ~100 MB bench parent would start from that; this minimal interpreter keeps it at a
few MB. Why sampling from here: a sampling thread inside the measured process competes with the
loader for the GIL (about 4% of case B's throughput), and the Go CLI has no such thread; sampled
from outside, every loader, CLI included, pays the same.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

RSS_INTERVAL = 0.02
PSS_EVERY = 50  # RSS samples per PSS sample (reading smaps_rollup costs ~7 ms for a torch process)


def status_kb(pid: int, key: str) -> int:
    """The kB value of ``key`` (e.g. "VmRSS:") in /proc/PID/status, 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU seconds a running process has used so far (utime + stime, /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pss_kb(pid: int) -> int:
    """Proportional set size: pages shared by n processes count 1/n in each (forked workers share a lot)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and its descendants."""
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    stack.extend(int(x) for x in f.read().split())
            except OSError:
                continue
    return out


def main() -> int:
    marker, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawn(command[0], command, os.environ)
    peaks = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample() -> None:
        count = 0
        while True:
            pids = _tree(pid)
            peaks["rss"] = max(peaks["rss"], sum(status_kb(p, "VmRSS:") for p in pids))
            # PSS after 20 ms (the process has exec'd), after 0.2 s (forked workers have started),
            # then every second.
            if count in (1, 10) or count % PSS_EVERY == 0:
                peaks["pss"] = max(peaks["pss"], sum(_pss_kb(p) for p in pids))
            count += 1
            if done.wait(RSS_INTERVAL):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    done.set()
    sampler.join()
    report = {
        "wall_s": time.perf_counter() - started,
        "exit": os.waitstatus_to_exitcode(status),
        "maxrss_kb": usage.ru_maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_tree_peak_kb": peaks["rss"],
        "pss_tree_peak_kb": peaks["pss"],
    }
    print(marker + json.dumps(report), flush=True)
    return report["exit"] if report["exit"] >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
