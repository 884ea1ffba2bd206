"""CPU per sample of the Python handoff against the Go CLI, on a corpus of the bench (issue 17).

On a shared machine throughput ratios move with the neighbours' load; CPU per sample (all threads of
the process, from getrusage of the child) moves much less, and when the cores are the limit the
throughput ratio of Python to the CLI is the inverse ratio of their CPU per sample. The runs are
interleaved (CLI, this checkout, the baseline), and the Python figures have the start-up's CPU
(interpreter, imports, library and Go runtime, measured with a one-sample run) taken out.

  python tests/bench/handoff_cpu.py --corpus .cache/bench/corpus/thumb-n20000-s0            # case H
  python tests/bench/handoff_cpu.py --corpus .cache/bench/corpus/small-n2000-s0 --crop      # case C
  python tests/bench/handoff_cpu.py --corpus ... --baseline /tmp/main/python    # vs another checkout

The corpora and the CLI binary (<cache>/datago-cli) come from a run of bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONSUMER = """
import json, sys
import datago
n = 0
with datago.Client(json.load(open(sys.argv[1]))) as client:
    for sample in client:
        array = sample.array
        _ = array[-1, -1, 0]
        del array, sample
        n += 1
print(n)
"""


def child_cpu(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(CPU seconds of the child, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus folder of bench.py")
    parser.add_argument("--crop", action="store_true", help="crop_and_resize to the 512 buckets (cases A, C)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", type=Path, default=ROOT / ".cache" / "bench" / "datago-cli")
    parser.add_argument("--baseline", type=Path, help="the python/ folder of another checkout (built)")
    args = parser.parse_args()
    root = args.corpus / "images" if (args.corpus / "images").is_dir() else args.corpus
    config: dict[str, object] = {"source_type": "filesystem", "source_config": {"root_path": str(root)}}
    config["concurrency"] = os.cpu_count() or 1
    if args.crop:
        config["image_config"] = {
            "crop_and_resize": True,
            "default_image_size": 512,
            "downsampling_ratio": 16,
        }
    with tempfile.TemporaryDirectory() as tmp:
        full, one = Path(tmp) / "full.json", Path(tmp) / "one.json"
        full.write_text(json.dumps(config))
        one.write_text(json.dumps({**config, "limit": 1}))
        pythons = {"this checkout": ROOT / "python"}
        if args.baseline:
            pythons["baseline"] = args.baseline
        envs = {}
        for name, path in pythons.items():
            env = dict(os.environ, PYTHONPATH=str(path))
            env.pop("DATAGO_LIBRARY", None)
            envs[name] = env
        startup = {
            name: statistics.median(
                child_cpu([sys.executable, "-c", CONSUMER, str(one)], env)[0] for _ in range(3)
            )
            for name, env in envs.items()
        }
        per_sample: dict[str, list[float]] = {"cli": [], **{name: [] for name in envs}}
        for _ in range(args.repeats):
            cpu, out = child_cpu([str(args.cli), "-config", str(full), "-quiet"], dict(os.environ))
            n = int(next(line for line in out.splitlines() if line.startswith("samples")).split()[1])
            per_sample["cli"].append(cpu / n * 1e6)
            for name, env in envs.items():
                cpu, out = child_cpu([sys.executable, "-c", CONSUMER, str(full)], env)
                per_sample[name].append((cpu - startup[name]) / int(out.split()[-1]) * 1e6)
    print(
        f"{root}: {config.get('image_config') and 'crop_and_resize 512' or 'no processing'}, "
        f"concurrency {config['concurrency']}, load average {os.getloadavg()[0]:.2f}"
    )
    print("start-up CPU taken out: " + ", ".join(f"{k} {v:.3f} s" for k, v in startup.items()))
    cli = statistics.median(per_sample["cli"])
    for name, values in per_sample.items():
        median = statistics.median(values)
        ratio = "" if name == "cli" else f"  CLI / Python = {cli / median:.3f}"
        print(
            f"{name:14s} {median:8.1f} us CPU per sample (runs "
            f"{', '.join(f'{v:.1f}' for v in values)}){ratio}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
