"""Training-loop throughput of datago's torch adapters against the plain PyTorch recipe.

On the "small" corpus of corpus.py (~500x375 JPEGs, 2000 by default), crop_and_resize to the 512 buckets,
page cache warm, each loader in its own process, ``--repeats`` runs each (order alternating), median
images/s:

  datago-iterable      DataLoader(DatagoIterableDataset(config with batch_size 32), batch_size=None,
                       num_workers=0): datago's own bucketed batches, one tensor each (no copy)
  datago-iterable-det  the same with ``deterministic: true`` (delivery order independent of thread timing)
  torch-pil            DataLoader(num_workers=--workers, batch_size=1) over a map-style dataset doing
                       Pillow decode, exif_transpose, RGB, the reference bucket + Lanczos resize + centre
                       crop (reference.py; bench.py's "torch" loader), the recipe the others are compared to
  datago-map           DataLoader(DatagoMapDataset(config), batch_sampler=BatchSampler(RandomSampler, 32),
                       collate_fn=collate_samples, num_workers=0): each batch of indices decoded in parallel
                       by MapDataset.get_many

datago runs with concurrency = number of CPUs. The timed span goes from creating the dataset to the last
batch in hand (startup included, interpreter and imports excluded); the consumer reads one pixel of every
image. Every run must deliver every image once (checked). Also measured for each run: how many cores other
processes kept busy meanwhile (bench.LoadMeter), to spot disturbed runs.

``--cluster``: instead, 4 ranks on this machine (4 processes at once, each a DatagoIterableDataset with
concurrency 1, batch_size 32, rank r of 4 in its config), in three modes: the plain per-rank split,
``equal_steps: "pad"`` and ``bucket_per_step``. Per mode: the slowest rank's images/s (against the plain
mode's: the target is >= 0.9x), the steps per rank, the fraction of samples left out, and the resume state's
size (JSON bytes per rank, mid-epoch).

Results: a Markdown table on stdout (ratios against torch-pil, and the cost of ``deterministic`` as the
ratio of the two datago-iterable medians); JSON in <cache>/bench_training.json.

  python tests/bench/bench_training.py                    # 2000 images, 3 repeats
  python tests/bench/bench_training.py --small 500 --repeats 3
  python tests/bench/bench_training.py --cluster              # 4 ranks: plain, equal steps, bucket per step
  python tests/bench/bench_training.py --cluster --kind tiny  # the same over images of 10 aspect ratios
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from reference import add_python_path, default_cache_dir, list_images  # noqa: E402

from bench import IMAGE_CONFIG, ImageFiles, LoadMeter, machine_info, md_table, probe, warm_page_cache  # noqa: E402

RESULT_MARKER = "BENCH_TRAINING_RESULT "
LOADERS = ("datago-iterable", "datago-iterable-det", "torch-pil", "datago-map")
BASELINE = "torch-pil"
DESCRIPTIONS = {
    "datago-iterable": "DatagoIterableDataset, batch_size 32, DataLoader(batch_size=None, num_workers=0)",
    "datago-iterable-det": "the same with deterministic: true",
    "torch-pil": "map dataset with Pillow + reference crop/resize, DataLoader(num_workers={w}, batch_size=1)",
    "datago-map": "DatagoMapDataset + BatchSampler(RandomSampler, 32) through get_many, num_workers=0",
}


# ------------------------------------------------------------------------------------ measured process


def _datago_config(spec: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "source_type": "filesystem",
        "source_config": {"root_path": spec["root"]},
        "image_config": dict(IMAGE_CONFIG),
        "concurrency": spec["concurrency"],
        **top,
    }


def run_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """Body of a measured subprocess: {"images", "seconds", "ids_ok", ...}."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    loader_name = spec["loader"]
    if loader_name == "cluster-rank":
        return run_rank(spec)
    seen: list[str] = []
    touched = 0
    started = time.perf_counter()
    loader: Any
    if loader_name.startswith("datago-iterable"):
        from datago.torch import DatagoIterableDataset

        config = _datago_config(
            spec, batch_size=spec["batch_size"], deterministic=loader_name.endswith("-det")
        )
        loader = DataLoader(DatagoIterableDataset(config), batch_size=None, num_workers=0)
        for batch in loader:
            images = batch["images"]
            for i in range(images.shape[0]):
                touched ^= int(images[i, -1, -1, 0])
            seen.extend(batch["ids"])
    elif loader_name == "datago-map":
        from datago.torch import DatagoMapDataset, collate_samples

        dataset = DatagoMapDataset(_datago_config(spec))
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(0))
        loader = DataLoader(
            dataset,
            batch_sampler=BatchSampler(sampler, spec["batch_size"], drop_last=False),
            collate_fn=collate_samples,
            num_workers=0,
        )
        for batch in loader:
            for image in batch["images"]:
                touched ^= int(image[-1, -1, 0])
            seen.extend(batch["ids"])
    elif loader_name == BASELINE:
        files = [str(p) for p in list_images(Path(spec["root"]))]
        buckets = [(int(w), int(h)) for w, h in spec["buckets"]]
        # ImageFiles is map-style by duck typing (__getitem__ and __len__), as DataLoader accepts.
        dataset_files = cast(Any, ImageFiles(files, buckets, draft=False))
        loader = DataLoader(dataset_files, batch_size=1, shuffle=False, num_workers=spec["workers"])
        for index, batch in enumerate(loader):
            touched ^= int(batch[0, -1, -1, 0])
            seen.append(files[index])  # shuffle=False: batches come in index order
    else:
        raise ValueError(f"unknown loader {loader_name!r}")
    seconds = time.perf_counter() - started
    del loader
    expected = sorted(str(p) for p in list_images(Path(spec["root"])))
    return {
        "loader": loader_name,
        "images": len(seen),
        "seconds": seconds,
        "ids_ok": sorted(seen) == expected,
        "torch": torch.__version__,
    }


CLUSTER_MODES = {
    "plain": {},
    "equal-steps": {"equal_steps": "pad"},
    "bucket-per-step": {"bucket_per_step": True},
}


def run_rank(spec: dict[str, Any]) -> dict[str, Any]:
    """One rank of the cluster bench: its images/s, steps, left-out fraction and state sizes."""
    from torch.utils.data import DataLoader

    from datago.torch import DatagoIterableDataset

    config = _datago_config(spec, batch_size=spec["batch_size"], **CLUSTER_MODES[spec["mode"]])
    config["source_config"].update(rank=spec["rank"], world_size=spec["world"], random_sampling=True, seed=1)
    started = time.perf_counter()
    dataset = DatagoIterableDataset(config)
    steps, images, state_bytes, shapes = 0, 0, 0, []
    for batch in DataLoader(dataset, batch_size=None, num_workers=0):
        steps += 1
        images += batch["images"].shape[0]
        shapes.append(list(batch["images"].shape))
        if steps == 10:
            state_bytes = len(json.dumps(dataset.state_dict()))
    seconds = time.perf_counter() - started
    stats = dataset.stats()
    return {
        "images": images,
        "seconds": seconds,
        "steps": steps,
        "shapes": shapes,
        "state_bytes_mid": state_bytes,
        "left_out": stats.get("left_out", 0.0),
        "excess": stats.get("excess", 0),
    }


def cluster_bench(base_spec: dict[str, Any], files: int, repeats: int, timeout: float) -> int:
    """--cluster: 4 ranks at once per mode; the slowest rank sets the pace of a synchronous job."""
    world = 4
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in CLUSTER_MODES}
    for repeat in range(repeats):
        for mode in list(CLUSTER_MODES) if repeat % 2 == 0 else list(CLUSTER_MODES)[::-1]:
            specs = [
                {**base_spec, "loader": "cluster-rank", "mode": mode, "rank": r, "world": world}
                for r in range(world)
            ]
            commands = [
                [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(s)] for s in specs
            ]
            procs = [
                subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for c in commands
            ]
            ranks = []
            for proc in procs:
                out, err = proc.communicate(timeout=timeout)
                lines = [x for x in out.splitlines() if x.startswith(RESULT_MARKER)]
                ranks.append(json.loads(lines[-1][len(RESULT_MARKER) :]) if lines else {"error": err[-500:]})
            if any("error" in r for r in ranks):
                print(f"  run {repeat + 1} {mode}: {[r.get('error') for r in ranks]}")
                return 1
            slowest = min(r["images"] / r["seconds"] for r in ranks)
            aligned = all(
                len({tuple(r["shapes"][k]) for r in ranks}) == 1 for k in range(len(ranks[0]["shapes"]))
            )
            row = {
                "slowest": slowest,
                "steps": [r["steps"] for r in ranks],
                "aligned": aligned and len({r["steps"] for r in ranks}) == 1,
                "left_out": sum(r["excess"] for r in ranks) / files,
                "state_bytes_mid": max(r["state_bytes_mid"] for r in ranks),
            }
            results[mode].append(row)
            print(
                f"  run {repeat + 1} {mode:16s} slowest rank {slowest:7.1f} img/s  steps {row['steps']}",
                flush=True,
            )
    plain = statistics.median(r["slowest"] for r in results["plain"])
    print()
    print(
        "| mode | slowest rank img/s | vs plain | steps per rank | same shape every step | left out "
        "| state bytes/rank |"
    )
    print("| --- | ---: | ---: | --- | --- | ---: | ---: |")
    for mode, rows in results.items():
        rate = statistics.median(r["slowest"] for r in rows)
        print(
            f"| {mode} | {rate:.1f} | {rate / plain:.2f}x | {rows[-1]['steps']} | {rows[-1]['aligned']} "
            f"| {100 * rows[-1]['left_out']:.2f}% | {rows[-1]['state_bytes_mid']} |"
        )
    return 0


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    payload = probe() if spec.get("mode") == "probe" else run_loader(spec)
    print(RESULT_MARKER + json.dumps(payload), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- parent


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run this file in a child on ``spec``; its payload, or {"error": ...}."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            payload: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            return payload
    tail = " | ".join((done.stderr.strip().splitlines() or ["(no output)"])[-4:])
    return {"error": f"exit {done.returncode}: {tail}"}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r and r["seconds"] > 0]
    rates = [r["images"] / r["seconds"] for r in good]
    return {
        "median": statistics.median(rates) if rates else None,
        "min": min(rates, default=None),
        "max": max(rates, default=None),
        "best": max(rates, default=None),
        "errors": [r["error"] for r in runs if "error" in r],
        "all_images_once": bool(good) and all(r["ids_ok"] for r in good),
        "external_load": [round(r.get("external_load", 0.0), 2) for r in runs],
    }


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def report(results: dict[str, Any], workers: int) -> list[str]:
    loaders = results["loaders"]
    base = loaders.get(BASELINE, {})
    rows = []
    for name in LOADERS:
        s = loaders.get(name)
        if s is None:
            continue
        spread = "" if s["median"] is None else f" ({s['min']:,.0f}–{s['max']:,.0f})"
        check = "yes" if s["all_images_once"] else "**NO**"
        rows.append(
            [
                name,
                DESCRIPTIONS[name].format(w=workers),
                fmt_rate(s["median"]) + spread,
                fmt_ratio(ratio(s["median"], base.get("median"))),
                fmt_ratio(ratio(s["best"], base.get("best"))),
                f"{max(s['external_load'], default=0.0):.2f}",
                check,
            ]
        )
    headers = [
        "loader",
        "what",
        "img/s median (min–max)",
        f"vs {BASELINE}",
        "best vs best",
        "other load (max cores)",
        "all once",
    ]
    lines = md_table(headers, rows)
    fast, det = loaders.get("datago-iterable", {}), loaders.get("datago-iterable-det", {})
    cost = ratio(det.get("median"), fast.get("median"))
    results["deterministic_ratio"] = cost
    if cost is not None:
        lines.append("")
        lines.append(
            f"deterministic: {fmt_rate(det['median'])} img/s against {fmt_rate(fast['median'])} without: "
            f"ratio {cost:.3f} (best runs {fmt_ratio(ratio(det['best'], fast['best']))}), "
            f"a cost of {100 * (1 - cost):.1f}%"
        )
    for name, s in loaders.items():
        for error in s["errors"]:
            lines.append(f"- {name}: {error}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=2000, help="images in the small corpus (default 2000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    cpus = len(os.sched_getaffinity(0))
    parser.add_argument("--workers", type=int, default=cpus, help="torch-pil DataLoader workers (CPUs)")
    parser.add_argument("--concurrency", type=int, default=cpus, help="datago concurrency (CPUs)")
    parser.add_argument("--loaders", default=",".join(LOADERS), help="comma-separated subset")
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default .cache/bench)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per measured run")
    parser.add_argument("--cluster", action="store_true", help="the 4-rank bench (see above)")
    parser.add_argument("--kind", default="small", help="corpus kind (corpus.py; tiny: many aspect ratios)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.loaders.split(",")) - set(LOADERS)
    if unknown:
        parser.error(f"unknown loaders {sorted(unknown)} (known: {', '.join(LOADERS)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    add_python_path()
    if args.child:
        return child_main(args.child)
    cache = (args.cache or default_cache_dir()).resolve()
    probed = spawn({"mode": "probe"}, timeout=120)
    if probed.get("error") or probed.get("problem"):
        print(f"bench_training: datago unavailable: {probed.get('error') or probed.get('problem')}")
        return 1
    params = corpus.Params(kind=args.kind, count=args.small)
    directory = corpus.ensure_corpus(params, corpus.corpus_dir(params, cache))
    root = directory / "images"
    files = list_images(root)
    size, seconds = warm_page_cache(files)
    print(f"corpus {root}: {len(files)} files, {size / 1e6:.1f} MB read in {seconds:.2f} s (page cache warm)")
    loaders = [name for name in LOADERS if name in args.loaders.split(",")]
    if args.cluster:
        spec = {"root": str(root), "batch_size": args.batch_size, "concurrency": 1}
        return cluster_bench(spec, len(files), args.repeats, args.timeout)
    base_spec = {
        "root": str(root),
        "buckets": probed["buckets"],
        "batch_size": args.batch_size,
        "workers": args.workers,
        "concurrency": args.concurrency,
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in loaders}
    for repeat in range(args.repeats):
        for name in loaders if repeat % 2 == 0 else loaders[::-1]:
            with LoadMeter() as meter:
                result = spawn({**base_spec, "loader": name}, args.timeout)
            result["external_load"] = meter.external
            runs[name].append(result)
            rate = result["images"] / result["seconds"] if "error" not in result else None
            print(
                f"  run {repeat + 1} {name:20s} {fmt_rate(rate):>9s} img/s"
                f"  (other processes: {meter.external:.2f} cores)",
                flush=True,
            )
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "datago": {k: probed.get(k) for k in ("version", "library_version", "buckets_source")},
        "corpus": {"path": str(root), "count": len(files), "megabytes": round(size / 1e6, 1)},
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "cache")},
        "loaders": {name: summarise(r) for name, r in runs.items()},
        "runs": runs,
    }
    lines = report(results, args.workers)
    print()
    print("\n".join(lines))
    out = cache / "bench_training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nJSON: {out}")
    failed = any(s["errors"] or not s["all_images_once"] for s in results["loaders"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
