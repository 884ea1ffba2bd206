"""Object-storage benchmark: datago reading the case-A corpus (2-12 MP JPEGs, crop_and_resize to the 512
buckets) from S3 (moto in server mode on 127.0.0.1, tests/support/s3_server.py's setup) against the same data
on local disk, as WebDataset shards and as an image prefix; then the time to the first sample from a prefix
of --objects objects, and the listing rate.

Loaders, each in its own process, concurrency = --workers:
  s3-shards / local-shards   source_type webdataset over s3://bench/shards/ (a prefix: its .tar objects) /
                             the same shard files on disk; concurrent_downloads 4
  s3-prefix / local-prefix   source_type filesystem over s3://bench/images / the corpus folder
  wds-s3fs                   the webdataset package over the same s3:// shards through fsspec/s3fs (its
                             default file options), Pillow decode + exif_transpose + the reference crop
                             (bench_webdataset.py's per-sample work), in torch DataLoader(num_workers=2,
                             batch_size=None): shards split between the workers. In the venv of its own
                             that `make bench` builds (.cache/bench/venv-s3fs: s3fs pins a botocore older
                             than moto's); the table gives datago's s3-shards rate over it, same run
  listing                    source_type filesystem over s3://list/many (--objects copies of a 64x48 JPEG):
                             the time to the first sample, then the client stops; then a MapDataset over
                             the same prefix, whose construction lists it whole: objects/s is the rate

  s3-*-gofakes3              s3-shards and s3-prefix against a second S3 store, gofakes3 (a Go server in a
                             process of its own, objects in memory, requests not authenticated), installed
                             by make bench into .cache/bin

moto holds the objects in memory and answers with its Python server, sharing the 2 cores with the loader:
an upper bound on what the storage layer costs, not a measurement of S3 itself. Each run's row gives the
store's CPU seconds during the run (moto's threads run in this process; gofakes3's from /proc), so the
part of a gap that is the store's is visible; gofakes3 takes a fraction of moto's CPU per request.

  PYTHONPATH=python .venv/bin/python tests/bench/bench_storage.py            # 128 images, 3 repeats
  PYTHONPATH=python .venv/bin/python tests/bench/bench_storage.py --quick    # 12 images, 1 repeat
  ... --s3fs-python PATH     # the interpreter of the wds-s3fs loader (default .cache/bench/venv-s3fs)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))
import corpus  # noqa: E402
from bench_webdataset import IMAGE_CONFIG, ensure_shards, read_datago, spawn_child  # noqa: E402
from launcher import cpu_seconds  # noqa: E402
from reference import REPO_ROOT, add_python_path, default_cache_dir, get_buckets  # noqa: E402

MARKER = "STORAGE_BENCH_RESULT "
LOADERS = (
    "s3-shards",
    "local-shards",
    "s3-prefix",
    "local-prefix",
    "wds-s3fs",
    "s3-shards-gofakes3",
    "s3-prefix-gofakes3",
)
GOFAKES3 = REPO_ROOT / ".cache" / "bin" / "gofakes3"  # make bench installs it
S3FS_PYTHON = REPO_ROOT / ".cache" / "bench" / "venv-s3fs" / "bin" / "python"
DATALOADER_WORKERS = 2


def run_wds_s3fs(spec: dict[str, Any]) -> dict[str, Any]:
    """The webdataset package reading s3:// shards through fsspec/s3fs, in a torch DataLoader."""
    import importlib

    import bench_webdataset
    import fsspec

    options = {
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"endpoint_url": spec["endpoint"], "region_name": "us-east-1"},
    }

    def gopen_s3fs(url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> Any:
        return fsspec.open(url, mode, **options).open()

    # webdataset 1.x has no s3:// handler of its own; this one is what its docs suggest for fsspec.
    # (webdataset.gopen, the attribute, is the function: the module is reached through importlib.)
    importlib.import_module("webdataset.gopen").gopen_schemes["s3"] = gopen_s3fs
    fs = fsspec.filesystem("s3", **options)
    urls = sorted("s3://" + p for p in fs.glob(spec["url"].removeprefix("s3://") + "*.tar"))
    started = time.perf_counter()
    r = bench_webdataset.run_child(
        {"loader": "wds-dataloader", "urls": urls, "workers": DATALOADER_WORKERS, "buckets": spec["buckets"]}
    )
    # The span starts before the listing, as datago's does.
    r.update(loader="wds-s3fs", seconds=time.perf_counter() - started)
    return r


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    loader, workers = spec["loader"], spec["workers"]
    if loader == "wds-s3fs":
        return run_wds_s3fs(spec)  # in a venv without datago
    import datago

    started = time.perf_counter()
    if loader == "listing":
        cfg = {"source_type": "filesystem", "source_config": {"root_path": spec["url"]}, "concurrency": 1}
        with datago.Client(cfg) as client:
            next(iter(client))
            first = time.perf_counter() - started
        t0 = time.perf_counter()
        with datago.MapDataset(cfg) as ds:
            n = len(ds)
        return {"loader": loader, "first_s": first, "listed": n, "list_s": time.perf_counter() - t0}
    if "-shards" in loader:
        source = {
            "source_type": "webdataset",
            "source_config": {"url": spec["url"], "concurrent_downloads": 4},
        }
    else:
        source = {"source_type": "filesystem", "source_config": {"root_path": spec["url"]}}
    config = {**source, "image_config": IMAGE_CONFIG, "concurrency": workers}
    count, seconds, first, stats = read_datago(config, started)
    return {"loader": loader, "images": count, "seconds": seconds, "first_s": first, "stats": stats}


def spawn(
    spec: dict[str, Any], env: dict[str, str], timeout: float, python: str = sys.executable
) -> dict[str, Any]:
    return spawn_child(__file__, MARKER, spec, timeout, env=env, python=python)


def fill_bench_bucket(boto3: Any, endpoint: str, images: Path, shards: list[Path]) -> None:
    """The corpus's images and shards, uploaded to bucket "bench" of the store at ``endpoint``."""
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    )
    s3.create_bucket(Bucket="bench")
    for p in sorted(images.glob("*.jpg")):
        s3.put_object(Bucket="bench", Key=f"images/{p.name}", Body=p.read_bytes())
    for p in shards:
        s3.put_object(Bucket="bench", Key=f"shards/{p.name}", Body=p.read_bytes())


def fill_listing_bucket(count: int) -> None:
    """``count`` copies of a small JPEG put straight into moto's in-process backend (uploading them one
    request at a time would take longer than the benchmark): the listing still goes through moto's S3 API."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket("list", "us-east-1")
    from support.shards import image_bytes

    body = image_bytes(64, 48)
    for i in range(count):
        backend.put_object("list", f"many/d{i % 100:02d}/img{i:07d}.jpg", body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=128, help="images of the highres corpus")
    parser.add_argument("--per-shard", type=int, default=16, help="8 shards for the default 128 images")
    parser.add_argument("--objects", type=int, default=200_000, help="objects of the listing prefix")
    parser.add_argument("--repeats", type=int, default=0, help="runs per loader (default 3, 1 with --quick)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="12 images, 20,000 listed objects, 1 repeat")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--s3fs-python", default=str(S3FS_PYTHON), help="interpreter of the wds-s3fs loader")
    parser.add_argument(
        "--gofakes3", default=str(GOFAKES3), help="the gofakes3 binary of the s3-*-gofakes3 runs"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    add_python_path()
    if args.child:
        print(MARKER + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0
    if args.quick:
        args.count, args.per_shard, args.objects = 12, 4, 20_000
    repeats = args.repeats or (1 if args.quick else 3)

    import boto3
    from moto.server import ThreadedMotoServer

    from support.servers import free_port, stop_process, wait_until_up

    cache = default_cache_dir()
    params = corpus.Params(kind="highres", count=args.count)
    directory = corpus.ensure_corpus(params, corpus.corpus_dir(params, cache))
    images = directory / "images"
    shard_dir = cache / "wds" / f"highres-n{args.count}-p{args.per_shard}"
    shards = ensure_shards(images, shard_dir, args.per_shard)

    port = free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in LOADERS}
    fake: subprocess.Popen[bytes] | None = None
    fake_env: dict[str, str] = {}
    try:
        fill_bench_bucket(boto3, endpoint, images, shards)
        if Path(args.gofakes3).exists():
            fake_port = free_port()
            fake = subprocess.Popen(
                [args.gofakes3, "-backend", "memory", "-host", f"127.0.0.1:{fake_port}", "-quiet"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            fake_endpoint = f"http://127.0.0.1:{fake_port}"
            wait_until_up(
                fake,
                lambda: socket.create_connection(("127.0.0.1", fake_port), timeout=0.5).close(),
                "gofakes3",
                timeout=10,
                poll=0.05,
            )
            fill_bench_bucket(boto3, fake_endpoint, images, shards)
            fake_env = {**env, "AWS_ENDPOINT_URL_S3": fake_endpoint}
        megabytes = sum(p.stat().st_size for p in shards) / 1e6
        print(
            f"bench_storage: {args.count} highres images ({megabytes:.0f} MB) in {len(shards)} shards and "
            f"as a prefix, moto at {endpoint}; workers {args.workers}; load {os.getloadavg()[0]:.2f}"
        )
        buckets, _ = get_buckets(512, 16, 0.5, 2.0)
        urls = {
            "wds-s3fs": "s3://bench/shards/",
            "s3-shards": "s3://bench/shards/",
            "local-shards": [str(p) for p in shards],
            "s3-prefix": "s3://bench/images",
            "local-prefix": str(images),
            "s3-shards-gofakes3": "s3://bench/shards/",
            "s3-prefix-gofakes3": "s3://bench/images",
        }
        for repeat in range(repeats):
            for name in LOADERS if repeat % 2 == 0 else LOADERS[::-1]:
                spec = {"loader": name, "url": urls[name], "workers": args.workers}
                on_fake = name.endswith("-gofakes3")
                if on_fake and fake is None:
                    results[name].append({"loader": name, "error": f"{args.gofakes3} missing (make bench)"})
                    print(f"  run {repeat + 1}/{repeats} {name:18s} skipped: no {args.gofakes3}")
                    continue
                moto_before = time.process_time()  # moto's threads: the main one only waits
                fake_before = cpu_seconds(fake.pid) if on_fake and fake else 0.0
                if name == "wds-s3fs":
                    if not Path(args.s3fs_python).exists():
                        results[name].append(
                            {"loader": name, "error": f"{args.s3fs_python} missing (make bench)"}
                        )
                        print(f"  run {repeat + 1}/{repeats} {name:13s} skipped: no {args.s3fs_python}")
                        continue
                    spec.update(endpoint=endpoint, buckets=buckets)
                    # Its own venv: without this checkout's python/ on the path (bench_webdataset only).
                    s3fs_env = {**env, "PYTHONPATH": str(BENCH_DIR)}
                    r = spawn(spec, s3fs_env, args.timeout, args.s3fs_python)
                else:
                    r = spawn(spec, fake_env if on_fake else env, args.timeout)
                if "error" not in r and r["images"] != args.count:
                    r["error"] = f"delivered {r['images']} of {args.count} images"
                if on_fake and fake:
                    r["store"], r["store_cpu_s"] = "gofakes3", cpu_seconds(fake.pid) - fake_before
                else:
                    r["store"], r["store_cpu_s"] = "moto", time.process_time() - moto_before
                results[name].append(r)
                status = r.get("error") or (
                    f"{r['images']} images in {r['seconds']:.2f} s = {r['images'] / r['seconds']:.1f} img/s, "
                    f"first after {r['first_s'] * 1000:.0f} ms, {r['store']} {r['store_cpu_s']:.2f} s of CPU"
                )
                print(f"  run {repeat + 1}/{repeats} {name:18s} {status}", flush=True)

        t0 = time.perf_counter()
        fill_listing_bucket(args.objects)
        print(f"  put {args.objects} objects into moto in {time.perf_counter() - t0:.0f} s", flush=True)
        listing = spawn({"loader": "listing", "url": "s3://list/many", "workers": 1}, env, args.timeout)
    finally:
        server.stop()
        if fake is not None:
            stop_process(fake)

    rates = {
        name: [r["images"] / r["seconds"] for r in rs if "error" not in r] for name, rs in results.items()
    }
    print(
        "\n| loader | images | median img/s (min–max) | vs the same data on local disk "
        "| store's CPU s, median |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    failed = False
    for name, rs in rates.items():
        if not rs:
            failed = True
            print(
                f"| {name} | – | failed: {results[name][0].get('error') if results[name] else '-'} | – | – |"
            )
            continue
        median = statistics.median(rs)
        local = rates.get(name.removesuffix("-gofakes3").replace("s3-", "local-"), [])
        ratio = f"**{median / statistics.median(local):.2f}×**" if name.startswith("s3-") and local else "–"
        good = [r for r in results[name] if "error" not in r]
        store = f"{statistics.median(r['store_cpu_s'] for r in good):.2f} ({good[0]['store']})"
        print(f"| {name} | {args.count} | {median:.1f} ({min(rs):.1f}–{max(rs):.1f}) | {ratio} | {store} |")
    if rates["s3-shards"] and rates["wds-s3fs"]:
        ratio = statistics.median(rates["s3-shards"]) / statistics.median(rates["wds-s3fs"])
        print(
            f"\ndatago s3-shards vs webdataset + s3fs in DataLoader(num_workers={DATALOADER_WORKERS}), "
            f"same server, same run: **{ratio:.2f}×** (target >= 3×)"
        )
    if "error" in listing:
        failed = True
        print(f"\nlisting: failed: {listing['error']}")
    else:
        print(
            f"\nprefix of {args.objects} objects: first sample after {listing['first_s'] * 1000:.0f} ms; "
            f"listed whole ({listing['listed']} objects) in {listing['list_s']:.1f} s = "
            f"{listing['listed'] / listing['list_s']:.0f} objects/s"
        )
        failed = failed or listing["listed"] != args.objects
    out = cache / "bench_storage.json"
    out.write_text(json.dumps({"args": vars(args), "results": results, "listing": listing}, indent=1) + "\n")
    print(f"\nresults: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
