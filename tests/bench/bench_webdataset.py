"""WebDataset benchmark: datago's webdataset source against the ``webdataset`` Python package, both reading
the same tar shards of the bench corpus from a loopback HTTP server.

The corpus is the "highres" one of corpus.py (2-12 MP JPEGs, aspect ratios 0.5-2), packed into tar shards
(``<key>.jpg`` + ``<key>.txt`` + ``<key>.cls`` per sample, ``--per-shard`` samples a shard) in the cache. The
shards are served by tests/support/wds_server.py running in its own process (Range support, keep-alive, no
faults).
Every loader runs in its own process and decodes, applies the EXIF orientation and crop_and_resizes to the
512 buckets, delivering HxWx3 uint8 arrays:

  datago            datago.Client, source_type webdataset over HTTP, concurrency = --workers,
                    concurrent_downloads 4; the consumer takes ``sample.array``
  datago-local      the same reading the shard files from disk (no HTTP)
  wds-dataloader    webdataset.WebDataset(urls, shardshuffle=False) (its HTTP goes through ``curl``), mapped
                    with Pillow decode + exif_transpose + RGB + the reference bucket/Lanczos/centre crop
                    (reference.py), in a torch DataLoader(num_workers=--workers, batch_size=None): the
                    shards are split between the workers
  wds-pool          the same per-sample work in a multiprocessing.Pool(--workers), one shard per task
                    (imap_unordered); for machines without torch

The timed span goes from creating the loader to the last array received; images/s = samples / span.

  PYTHONPATH=python .venv/bin/python tests/bench/bench_webdataset.py             # 128 images, 3 repeats
  PYTHONPATH=python .venv/bin/python tests/bench/bench_webdataset.py --quick     # 12 images, 1 repeat
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import corpus  # noqa: E402
from reference import IMAGE_CONFIG, add_python_path, crop_and_resize, default_cache_dir, get_buckets  # noqa: E402

MARKER = "WDS_BENCH_RESULT "
LOADERS = ("datago", "datago-local", "wds-dataloader", "wds-pool")
SHARD_VERSION = 1


# ------------------------------------------------------------------------------------------- shards


def ensure_shards(images: Path, out: Path, per_shard: int) -> list[Path]:
    """Pack the corpus images into tar shards (reused when the manifest matches)."""
    files = sorted(images.glob("*.jpg"))
    key = {"version": SHARD_VERSION, "images": str(images), "count": len(files), "per_shard": per_shard}
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("key") == key:
        return sorted(out.glob("shard-*.tar"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.tar"):
        old.unlink()
    shards = []
    for s in range(0, len(files), per_shard):
        path = out / f"shard-{s // per_shard:04d}.tar"
        with tarfile.open(path, "w") as tf:
            for index, image in enumerate(files[s : s + per_shard], start=s):
                stem = image.stem
                for suffix, data in (
                    ("jpg", image.read_bytes()),
                    ("txt", f"a photograph, variant {index}".encode()),
                    ("cls", str(index % 10).encode()),
                ):
                    info = tarfile.TarInfo(f"{stem}.{suffix}")
                    info.size, info.mtime = len(data), 1_700_000_000
                    tf.addfile(info, io.BytesIO(data))
        shards.append(path)
    manifest.write_text(json.dumps({"key": key, "shards": len(shards)}) + "\n")
    return shards


# ---------------------------------------------------------------------------------- measured loaders

_BUCKETS: list[tuple[int, int]] = []


def _decode(sample: dict[str, Any]) -> Any:
    """The per-sample work of the webdataset baselines: Pillow decode, EXIF orientation, RGB, the same
    bucket + Lanczos resize + centre crop as datago (reference.py)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(sample["jpg"])) as im:
        im.load()
        oriented = ImageOps.exif_transpose(im)
    rgb = oriented.convert("RGB") if oriented.mode != "RGB" else oriented
    return np.asarray(crop_and_resize(rgb, _BUCKETS))


def _wds_dataset(urls: list[str]) -> Any:
    import webdataset as wds

    return wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(_decode)


def _pool_init(buckets: list[tuple[int, int]]) -> None:
    _BUCKETS[:] = buckets


def _pool_shard(url: str) -> list[Any]:
    return list(_wds_dataset([url]))


def read_datago(config: dict[str, Any], started: float) -> tuple[int, float, float, dict[str, Any]]:
    """A datago client read to its end, each array touched: (images, seconds and first-sample seconds since
    ``started``, final stats); the consumer of every datago loader here and in bench_storage.py, written
    once so that they measure alike."""
    import datago

    count, touched, first = 0, 0, 0.0
    with datago.Client(config) as client:
        for sample in client:
            array = sample.array
            touched ^= int(array[-1, -1, 0])
            count += 1
            if count == 1:
                first = time.perf_counter() - started
            del array, sample
        seconds = time.perf_counter() - started
        stats = client.stats()
    return count, seconds, first, stats


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    loader, urls, workers = spec["loader"], spec["urls"], spec["workers"]
    _BUCKETS[:] = [tuple(b) for b in spec["buckets"]]
    count, touched = 0, 0
    first = 0.0
    stats: dict[str, Any] = {}
    started = time.perf_counter()
    if loader in ("datago", "datago-local"):
        config = {
            "source_type": "webdataset",
            "source_config": {"url": urls, "concurrent_downloads": 4},
            "image_config": IMAGE_CONFIG,
            "concurrency": workers,
        }
        count, seconds, first, stats = read_datago(config, started)
    elif loader == "wds-dataloader":
        from torch.utils.data import DataLoader

        loader_ = DataLoader(_wds_dataset(urls), batch_size=None, num_workers=workers)
        for tensor in loader_:
            array = tensor.numpy()
            touched ^= int(array[-1, -1, 0])
            count += 1
            if count == 1:
                first = time.perf_counter() - started
            del tensor, array
        seconds = time.perf_counter() - started
        del loader_
    elif loader == "wds-pool":
        import multiprocessing

        with multiprocessing.Pool(workers, initializer=_pool_init, initargs=(_BUCKETS,)) as pool:
            for arrays in pool.imap_unordered(_pool_shard, urls):
                for array in arrays:
                    touched ^= int(array[-1, -1, 0])
                    count += 1
                    if count == 1:
                        first = time.perf_counter() - started
            seconds = time.perf_counter() - started
    else:
        raise ValueError(loader)
    return {
        "loader": loader,
        "images": count,
        "seconds": seconds,
        "first_s": first,
        "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "stats": stats,
    }


# ----------------------------------------------------------------------------------------------- parent


def spawn_child(
    script: str,
    marker: str,
    spec: dict[str, Any],
    timeout: float,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
) -> dict[str, Any]:
    """``script --child spec`` in a process of its own: the JSON it prints after ``marker``, or the last line
    of its stderr as an error (one copy for this bench and bench_storage.py)."""
    proc = subprocess.run(
        [python, script, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            result: dict[str, Any] = json.loads(line[len(marker) :])
            return result
    return {"loader": spec["loader"], "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    return spawn_child(__file__, MARKER, spec, timeout)


def start_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, str(BENCH_DIR.parent / "support" / "wds_server.py"), str(root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    base = server.stdout.readline().strip().rstrip("/")
    if not base.startswith("http://"):
        server.kill()
        raise RuntimeError("the shard server did not start")
    return server, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=128, help="images of the highres corpus")
    parser.add_argument("--per-shard", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=0, help="runs per loader (default 3, 1 with --quick)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--loaders", default=",".join(LOADERS))
    parser.add_argument("--quick", action="store_true", help="12 images, 1 repeat")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    add_python_path()
    if args.child:
        print(MARKER + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    if args.quick:
        args.count, args.per_shard = 12, 4
    repeats = args.repeats or (1 if args.quick else 3)
    loaders = [x for x in args.loaders.split(",") if x]
    cache = default_cache_dir()
    params = corpus.Params(kind="highres", count=args.count)
    directory = corpus.ensure_corpus(params, corpus.corpus_dir(params, cache))
    shard_dir = cache / "wds" / f"highres-n{args.count}-p{args.per_shard}"
    shards = ensure_shards(directory / "images", shard_dir, args.per_shard)
    buckets, _ = get_buckets(512, 16, 0.5, 2.0)
    for shard in shards:  # warm the page cache
        shard.read_bytes()
    megabytes = sum(s.stat().st_size for s in shards) / 1e6
    server, base = start_server(shard_dir)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in loaders}
    try:
        urls = [f"{base}/{s.name}" for s in shards]
        print(
            f"bench_webdataset: {args.count} highres images in {len(shards)} shards ({megabytes:.0f} MB) "
            f"served from {base}; workers {args.workers}; load average {os.getloadavg()[0]:.2f}"
        )
        for repeat in range(repeats):
            for name in loaders if repeat % 2 == 0 else loaders[::-1]:
                spec = {
                    "loader": name,
                    "urls": [str(s) for s in shards] if name == "datago-local" else urls,
                    "workers": args.workers,
                    "buckets": buckets,
                }
                r = spawn(spec, args.timeout)
                if "error" not in r and r["images"] != args.count:
                    r["error"] = f"delivered {r['images']} of {args.count} images"
                results[name].append(r)
                status = r.get("error") or (
                    f"{r['images']} images in {r['seconds']:.2f} s = {r['images'] / r['seconds']:.1f} img/s, "
                    f"first after {r['first_s'] * 1000:.0f} ms, RSS {r['rss_self_mb']:.0f}"
                    f"+{r['rss_children_mb']:.0f} MB"
                )
                print(f"  run {repeat + 1}/{repeats} {name:15s} {status}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rates = {
        name: [r["images"] / r["seconds"] for r in rs if "error" not in r] for name, rs in results.items()
    }
    base_rate = statistics.median(rates["wds-dataloader"]) if rates.get("wds-dataloader") else None
    print("\n| loader | images | median img/s (min–max) | vs webdataset DataLoader |")
    print("| --- | ---: | ---: | ---: |")
    for name, rs in rates.items():
        if not rs:
            print(f"| {name} | – | failed: {results[name][0].get('error') if results[name] else '-'} | – |")
            continue
        median = statistics.median(rs)
        ratio = f"**{median / base_rate:.2f}×**" if base_rate and name != "wds-dataloader" else "–"
        print(f"| {name} | {args.count} | {median:.1f} ({min(rs):.1f}–{max(rs):.1f}) | {ratio} |")
    out = cache / "bench_webdataset.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str) + "\n")
    print(f"\nresults: {out}")
    failed = any("error" in r for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
