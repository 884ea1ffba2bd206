"""Soak test: load many samples through datago and watch the process's memory (issue #7).

A datago.Client with crop_and_resize (buckets of --size) delivers NumPy arrays (``sample.array``) until
--samples have been read: by default one client with ``epochs`` 0 (passes over the folder forever), so a
single pipeline runs the whole time; with --recreate (or a library whose configuration has no
``epochs``), a new client makes each pass (``epochs`` 1). Every --every samples, the consumer pauses
--fill seconds (2), long enough for the ready queue to fill, and prints ``samples,elapsed_s,rss_mb``
(MB = 10^6 bytes): RSS follows the queue's fill, so every figure is taken at the same, highest fill.
At the end: peak RSS, RSS up to sample 100,000 (10% of the run when the run is not longer than that)
and at the end, each the median of 10 readings (a single reading varies by several MB with the free
memory malloc keeps), the growth between the two, and PASS when it is under 5% and the peak is within
the bound below (exit status 0), FAIL otherwise (exit status 1).

The memory bound it checks: peak RSS <= F + 1.5 x (samples_buffer_size + concurrency + 7) x S, where S is
the largest sample delivered (bytes of its array) and F the floor, the peak RSS of the same pipeline with
a ready queue of one sample (a child process runs it first for --floor-samples samples): the fixed
overhead (interpreter, NumPy, Pillow, Go runtime, libvips) plus what the fetchers and decoders hold in
flight. The queue holds samples_buffer_size samples, each blocked decoder one more, and the Python
client up to 7 it took from the queue in one call and has not yet returned; the factor 1.5
covers the free memory glibc keeps beside them in its per-thread arenas (buffers are allocated by the
worker threads, freed by Python's): 1.30-1.49x the queued bytes in 3,000-sample runs on the 2-core machine.

Without --root, a corpus of 200 photo-like JPEGs of about 500x375 (one in eight with an EXIF rotation)
is generated once into .cache/soak.

  make soak SOAK_ARGS="--samples 200000"
  PYTHONPATH=python python tests/scripts/soak.py --root /data/images --samples 1000000 --size 256
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the support package
from support.images import photo  # noqa: E402
from support.process import PYTHON_DIR, ROOT, rss_bytes  # noqa: E402

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))
import datago  # noqa: E402

CORPUS_SIZE = 200
TARGET_GROWTH_PCT = 5.0
REFERENCE_SAMPLE = 100_000
DEFAULT_BUFFER = 128  # the library's default samples_buffer_size
WINDOW = 10  # readings whose median is the RSS at the reference sample, and at the end
# Free memory glibc keeps in its arenas beside the queued buffers (they are allocated by the worker
# threads and freed by Python's): 1.30-1.49x the queued bytes in 3,000-sample runs on the 2-core machine.
ALLOCATOR_SLACK = 1.5
# Samples the Python client may hold taken from the queue but not yet returned (datago.client._TAKE_MANY - 1).
TAKEN_AHEAD = 7
MB = 1e6


def make_corpus(folder: Path, count: int = CORPUS_SIZE) -> Path:
    """count photo-like JPEGs of about 500x375 (landscape and portrait), made once: a folder that
    already holds count images is reused."""
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = int(rng.integers(460, 541)), int(rng.integers(340, 411))
        if i % 3 == 2:
            w, h = h, w
        exif = Image.Exif()
        if i % 8 == 7:
            exif[0x0112] = 6  # rotated 90 degrees by the camera
        Image.fromarray(photo(w, h, seed=i)).save(
            folder / f"soak{i:04d}.jpg", "JPEG", quality=int(rng.integers(85, 96)), exif=exif
        )
    return folder


def config(
    root: Path, size: int, concurrency: int, forever: bool, buffer: int = DEFAULT_BUFFER
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "source_type": "filesystem",
        "source_config": {"root_path": str(root)},
        "image_config": {"crop_and_resize": True, "default_image_size": size},
        "concurrency": concurrency,
        "samples_buffer_size": buffer,
    }
    if forever:
        cfg["epochs"] = 0
    return cfg


def supports_epochs(root: Path) -> bool:
    """Whether this library's configuration has ``epochs`` (a client is only validated, never started)."""
    try:
        datago.Client(config(root, 512, 1, forever=True)).close()
    except datago.ConfigError:
        return False
    return True


def reference_sample(samples: int) -> int:
    """The sample up to which RSS readings make the reference: 100,000, or 10% of a shorter run."""
    return REFERENCE_SAMPLE if samples > REFERENCE_SAMPLE else samples // 10


def soak(
    root: Path, args: argparse.Namespace, samples: int, buffer: int, forever: bool, quiet: bool = False
) -> dict[str, Any]:
    """Loads ``samples``: the RSS readings (sample, bytes), the peak RSS and the largest sample."""
    reference_at = reference_sample(samples)
    total = clients = 0
    skipped: dict[str, int] = {}
    checksum = largest = 0
    readings: list[tuple[int, int]] = []
    started = time.monotonic()
    while total < samples:
        clients += 1
        client_count = 0
        # One client to the end (forever), or one per pass. No limit: at the last sample the pipeline
        # still runs, so the last figure is taken with the queue full like the others.
        with datago.Client(config(root, args.size, args.concurrency, forever, buffer)) as client:
            for sample in client:
                arr = sample.array
                h, w = arr.shape[:2]
                if (w, h) != sample.size or arr.shape[2] != 3:
                    raise SystemExit(f"sample {sample.id}: array {arr.shape} but size {sample.size}")
                checksum += int(arr[h // 2, w // 2, 1])  # reads the pixels, so they are really there
                largest = max(largest, arr.nbytes)
                del arr, sample
                total += 1
                client_count += 1
                if total % args.every == 0 or total in (reference_at, samples):
                    # RSS follows how full the ready queue is (freed buffers go back to the system), and
                    # that depends on how busy the machine keeps the consumer: every figure is taken
                    # after a pause that fills the queue, at the pipeline's high-water mark, so that
                    # two figures differ by what the run kept, not by the queue's fill.
                    time.sleep(args.fill)
                    gc.collect()
                    rss = rss_bytes()
                    readings.append((total, rss))
                    if not quiet:
                        print(f"{total},{time.monotonic() - started:.1f},{rss / MB:.1f}", flush=True)
                if total == samples:
                    break
            stats = client.stats()
        for reason, n in stats["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
        if client_count == 0:
            raise SystemExit(f"{root}: a client delivered no sample (skipped: {stats['skipped']})")
    return {
        "total": total,
        "elapsed": time.monotonic() - started,
        "clients": clients,
        "skipped": skipped,
        "checksum": checksum,
        "largest": largest,
        "readings": readings,
        # ru_maxrss: KiB; the high-water mark of the whole process, between the readings too.
        "peak": max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024] + [r for _, r in readings]),
    }


def floor_rss(root: Path, args: argparse.Namespace) -> int:
    """The peak RSS of the same pipeline with a ready queue of one, in a fresh process."""
    cmd = [sys.executable, __file__, "--floor", "--root", str(root), "--samples", str(args.floor_samples)]
    cmd += ["--size", str(args.size), "--concurrency", str(args.concurrency)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("FLOOR ")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples to load (default 1000000)")
    parser.add_argument("--root", type=Path, help="folder of images (default: a generated corpus)")
    parser.add_argument("--every", type=int, default=10_000, help="print a line every N samples")
    parser.add_argument("--size", type=int, default=512, help="default_image_size of the buckets")
    parser.add_argument("--concurrency", type=int, default=0, help="worker count (0: the number of CPUs)")
    parser.add_argument(
        "--buffer", type=int, default=DEFAULT_BUFFER, help=f"samples_buffer_size (default {DEFAULT_BUFFER})"
    )
    parser.add_argument(
        "--floor-samples", type=int, default=5_000, help="samples of the floor run (ready queue of one)"
    )
    parser.add_argument(
        "--fill", type=float, default=2.0, help="pause before each RSS figure, to fill the queue (s)"
    )
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "soak", help="corpus folder")
    parser.add_argument("--recreate", action="store_true", help="a new client for each pass over the folder")
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)  # the child of floor_rss
    args = parser.parse_args(argv)
    if args.samples < 10:
        parser.error("--samples must be at least 10")
    root = args.root if args.root is not None else make_corpus(args.cache)
    forever = not args.recreate and supports_epochs(root)
    if args.floor:
        print(f"FLOOR {soak(root, args, args.samples, 1, forever, quiet=True)['peak']}")
        return 0
    floor = floor_rss(root, args)
    how = "one client, epochs 0" if forever else "a new client per pass over the folder"
    reference_at = reference_sample(args.samples)
    print(
        f"datago soak: {args.samples} samples from {root}, buckets of {args.size}, samples_buffer_size "
        f"{args.buffer}, RSS reference at sample {reference_at}, growth target < {TARGET_GROWTH_PCT:g}%; "
        f"{how}",
        flush=True,
    )
    print(f"floor (peak RSS with a ready queue of 1, {args.floor_samples} samples): {floor / MB:.1f} MB")
    print("samples,elapsed_s,rss_mb", flush=True)
    r = soak(root, args, args.samples, args.buffer, forever)
    # Medians of the WINDOW readings up to the reference sample and of the last WINDOW: a reading varies
    # by several MB with what malloc happens to keep, a leak moves them all.
    before = [rss for n, rss in r["readings"] if n <= reference_at][-WINDOW:]
    after = [rss for _, rss in r["readings"]][-len(before) :]
    rss_reference, rss_end = statistics.median(before), statistics.median(after)
    growth = 100.0 * (rss_end - rss_reference) / rss_reference
    workers = args.concurrency or os.cpu_count() or 1
    bound = floor + ALLOCATOR_SLACK * (args.buffer + workers + TAKEN_AHEAD) * r["largest"]
    print(
        f"samples: {r['total']} in {r['elapsed']:.1f} s ({r['total'] / r['elapsed']:.0f} img/s), "
        f"{r['clients']} client(s), skipped: {r['skipped'] or 'none'}, pixel checksum {r['checksum']}"
    )
    print(f"peak RSS: {r['peak'] / MB:.1f} MB")
    print(f"RSS up to sample {reference_at} (median of {len(before)}): {rss_reference / MB:.1f} MB")
    print(f"RSS at the end (median of the last {len(after)}): {rss_end / MB:.1f} MB")
    print(f"growth: {growth:+.2f}%")
    print(
        f"bound: floor {floor / MB:.1f} MB + {ALLOCATOR_SLACK:g} x ({args.buffer} + {workers} + "
        f"{TAKEN_AHEAD}) x largest "
        f"sample {r['largest'] / MB:.3f} MB = {bound / MB:.1f} MB"
    )
    ok_growth = growth < TARGET_GROWTH_PCT
    ok_bound = r["peak"] <= bound
    print(
        f"{'PASS' if ok_growth else 'FAIL'}: RSS growth {growth:+.2f}% (target < {TARGET_GROWTH_PCT:g}% from "
        f"sample {reference_at} to the end)"
    )
    print(f"{'PASS' if ok_bound else 'FAIL'}: peak RSS {r['peak'] / MB:.1f} MB (bound {bound / MB:.1f} MB)")
    return 0 if ok_growth and ok_bound else 1


if __name__ == "__main__":
    sys.exit(main())
