"""CPU per sample of the Python consumer alone (issue 17): the pipeline fills a ready queue that holds
every sample, then the main thread drains it with nothing left to wait for, and its CPU time
(time.thread_time) over the drain is the handoff's cost per sample: the client call, Sample,
sample.array and the free. On 2 cores this is CPU the Go pipeline does not get, so Python ÷ CLI is
at most go / (go + consumer) where go is the CLI's CPU per sample.

  PYTHONPATH=python python tests/bench/consumer_cost.py .cache/bench/corpus/thumb-n20000-s0/images
  PYTHONPATH=python python tests/bench/consumer_cost.py DIR --count 2000 --profile   # + cProfile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import datago


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", help="a folder of images (a bench corpus)")
    parser.add_argument("--count", type=int, default=20000, help="samples to drain")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the last drain")
    args = parser.parse_args()
    results = []
    for r in range(args.repeats):
        config = {
            "source_type": "filesystem",
            "source_config": {"root_path": args.root},
            "limit": args.count,
            "samples_buffer_size": args.count,
        }
        with datago.Client(config) as client:
            client.start()
            while client.stats()["stages"]["decode"]["items"] < args.count:
                time.sleep(0.1)
            time.sleep(0.2)  # the last decoded samples reach the queue
            profile = cProfile.Profile() if args.profile and r == args.repeats - 1 else None
            if profile:
                profile.enable()
            cpu, wall, n = time.thread_time(), time.perf_counter(), 0
            for sample in client:
                array = sample.array
                _ = array[-1, -1]
                del array, sample
                n += 1
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            if profile:
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        results.append(cpu / n * 1e6)
        print(
            f"drain {r + 1}: {n} samples, main-thread CPU {cpu / n * 1e6:.2f} us/sample, "
            f"wall {wall / n * 1e6:.2f}"
        )
    print(f"best {min(results):.2f} us/sample of main-thread CPU")


if __name__ == "__main__":
    main()
