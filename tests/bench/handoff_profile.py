"""Where case H's handoff time goes (issue 17): the Go CLI and Python on the same config, interleaved,
with the process's cores busy and CPU per sample (getrusage of the child, start-up included), and for
Python its consumer thread's CPU per sample and the GOMAXPROCS the library runs with.

  python tests/bench/handoff_profile.py .cache/bench/corpus/thumb-n20000-s0/images --epochs 3

With --beside WORK/IDLE (microseconds, e.g. 7/50), each repeat also runs the CLI beside another
process that spins WORK and sleeps IDLE in a loop: a thread outside Go taking about what Python's
consumer takes per sample, to tell the cost of any consumer thread on the same cores from the cost
of the handoff itself. Its CPU share is printed with the CLI's rate.

The CLI binary comes from a run of bench.py (<cache>/datago-cli).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launcher import cpu_seconds  # the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[2]

CONSUMER = """
import json, sys, time
import datago
datago.library_version()
n, wall, cpu = 0, time.perf_counter(), time.thread_time()
with datago.Client(json.load(open(sys.argv[1]))) as client:
    for sample in client:
        array = sample.array
        _ = array[-1, -1]
        del array, sample
        n += 1
print(json.dumps({"n": n, "wall": time.perf_counter() - wall, "thread_cpu": time.thread_time() - cpu}))
"""


# The process beside the CLI (--beside): spins WORK µs, sleeps IDLE µs, until killed.
BESIDE = """
import sys, time
work, idle = float(sys.argv[1]) * 1e-6, float(sys.argv[2]) * 1e-6
clock = time.perf_counter
while True:
    t = clock()
    while clock() - t < work:
        pass
    time.sleep(idle)
"""


def beside(spec: str) -> subprocess.Popen[bytes]:
    work, _, idle = spec.partition("/")
    proc = subprocess.Popen([sys.executable, "-c", BESIDE, work, idle])
    time.sleep(0.3)  # interpreter start-up done before the CLI starts
    return proc


def child(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """(stdout, wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return done.stdout, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", help="a folder of images (the H corpus)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gomaxprocs", default="default,cores", help="Python variants: default and/or cores")
    parser.add_argument("--beside", metavar="WORK/IDLE", help="also run the CLI beside a spinning process")
    parser.add_argument("--cli", default=str(ROOT / ".cache" / "bench" / "datago-cli"))
    args = parser.parse_args()
    config = {
        "source_type": "filesystem",
        "source_config": {"root_path": args.root},
        "concurrency": os.cpu_count(),
    }
    config["epochs"] = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
        for r in range(args.repeats):
            out, wall, cpu = child([args.cli, "-config", str(path), "-quiet"], env)
            n = int(next(line.split()[1] for line in out.splitlines() if line.startswith("samples ")))
            print(
                f"{r + 1} cli:            {n / wall:9,.0f} samples/s  cores {cpu / wall:.2f}  "
                f"CPU {cpu / n * 1e6:6.1f} us/sample (process start included)"
            )
            if args.beside:
                other = beside(args.beside)
                before = cpu_seconds(other.pid)
                out, wall, cpu = child([args.cli, "-config", str(path), "-quiet"], env)
                share = (cpu_seconds(other.pid) - before) / wall
                other.kill()
                other.wait()
                n = int(next(line.split()[1] for line in out.splitlines() if line.startswith("samples ")))
                print(
                    f"{r + 1} cli beside {args.beside}: {n / wall:9,.0f} samples/s  cores {cpu / wall:.2f}  "
                    f"CPU {cpu / n * 1e6:6.1f} us/sample; the other process used {share:.2f} cores"
                )
            for variant in args.gomaxprocs.split(","):
                run_env = dict(env)
                if variant == "cores":
                    run_env["GOMAXPROCS"] = str(os.cpu_count())
                out, wall, cpu = child([sys.executable, "-c", CONSUMER, str(path)], run_env)
                got = json.loads(out.strip().splitlines()[-1])
                n = got["n"]
                print(
                    f"{r + 1} python {variant:8s}: {n / got['wall']:9,.0f} samples/s  "
                    f"cores {cpu / wall:.2f}  "
                    f"CPU {cpu / n * 1e6:6.1f} us/sample (interpreter start included), "
                    f"consumer thread {got['thread_cpu'] / n * 1e6:.1f} us/sample"
                )


if __name__ == "__main__":
    main()
