"""Where the CPU goes, per sample: process cores used and main-thread (consumer) CPU, by concurrency.

Run after ``python tests/bench/bench.py`` has generated the corpora, e.g.
``python tests/bench/cpu_per_sample.py --case highres-n128-s0 --crop`` (case A) or
``--case thumb-n20000-s0`` (case H). Alternates concurrency 1 and 2, twice.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import datago


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", default="highres-n128-s0", help="corpus folder under .cache/bench/corpus")
    parser.add_argument("--crop", action="store_true", help="crop_and_resize to the 512 buckets")
    args = parser.parse_args()
    root = Path(".cache/bench/corpus") / args.case / "images"
    for concurrency in (1, 2, 1, 2):
        config = {
            "source_type": "filesystem",
            "source_config": {"root_path": str(root)},
            "concurrency": concurrency,
        }
        if args.crop:
            config["image_config"] = {"crop_and_resize": True}
        t0, p0, m0 = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_THREAD)
        n = 0
        with datago.Client(config) as client:
            for sample in client:
                _ = sample.array
                n += 1
        wall = time.perf_counter() - t0
        process, main_thread = cpu(resource.RUSAGE_SELF) - p0, cpu(resource.RUSAGE_THREAD) - m0
        print(
            f"concurrency {concurrency}: {n / wall:8.1f} samples/s, {process / wall:4.2f} cores, "
            f"{process / n * 1e6:8.1f} us CPU/sample, consumer thread {main_thread / n * 1e6:6.1f} us/sample"
        )


if __name__ == "__main__":
    main()
