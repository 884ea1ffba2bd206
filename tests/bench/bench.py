"""Throughput benchmark: datago (Go + libvips) against a plain-Python Pillow + multiprocessing baseline.

Cases (corpora from corpus.py, generated once into the cache):
  A  highres (2-12 MP, aspect ratios 0.5-2) with crop_and_resize to the 512 buckets
  B  small (500x375 / 375x500) without processing
  C  small with crop_and_resize to the 512 buckets

Loaders, each run in a separate process (page cache warmed first by reading every file once):
  datago  datago.Client, concurrency = number of CPUs, the consumer takes ``sample.array`` (NumPy, zero-copy)
  pil     multiprocessing.Pool(number of CPUs) of workers that decode with Pillow, ImageOps.exif_transpose,
          convert("RGB"), pick the same bucket and Lanczos resize + centre crop when the case processes,
          and return np.asarray(...) to the parent

The timed span of a run goes from creating the client/pool to the last array received in the consumer
process, so it includes the startup of either loader but not the interpreter and import time.
Peak RSS comes from resource.getrusage in the measured process: RUSAGE_SELF, plus RUSAGE_CHILDREN for the
pool (its largest worker, once the pool is joined); a sampled peak of the summed RSS of the whole process
tree (/proc, every 20 ms) is reported as well, since the pool's workers run side by side.

Results: a text table and a Markdown table (to paste into README.md) on stdout, JSON in
<cache>/results.json, a bar chart in <cache>/bench.png (when matplotlib is installed).

  PYTHONPATH=python python tests/bench/bench.py            # full run (make bench)
  PYTHONPATH=python python tests/bench/bench.py --quick    # smoke test: small corpora, 1 repeat
  python tests/bench/bench.py --cases A --repeats 5 --loaders datago
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from reference import (  # noqa: E402
    Bucket,
    add_python_path,
    datago_problem,
    default_cache_dir,
    fallback_buckets,
    get_buckets,
    list_images,
    reference_array,
)

RESULT_MARKER = "BENCH_RESULT "
LOADERS = ("datago", "pil")
BUCKET_ARGS: dict[str, Any] = {
    "default_image_size": 512,
    "downsampling_ratio": 16,
    "min_aspect_ratio": 0.5,
    "max_aspect_ratio": 2.0,
}
IMAGE_CONFIG = {
    "crop_and_resize": True,
    "default_image_size": 512,
    "downsampling_ratio": 16,
    "min_aspect_ratio": 0.5,
    "max_aspect_ratio": 2.0,
}


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    kind: str
    process: bool


CASES = {
    "A": Case("A", "highres, crop_and_resize 512", "highres", True),
    "B": Case("B", "small, no processing", "small", False),
    "C": Case("C", "small, crop_and_resize 512", "small", True),
}
# Corpus sizes: full run (make bench: ~10 minutes on 2 cores including generation) and --quick.
FULL_COUNTS = {"highres": 128, "small": 2000}
QUICK_COUNTS = {"highres": 12, "small": 200}


@dataclass
class RunResult:
    loader: str
    images: int = 0
    seconds: float = 0.0
    first_sample_s: float = 0.0
    rss_self_mb: float = 0.0
    rss_children_mb: float = 0.0
    rss_tree_peak_mb: float = 0.0
    vm_hwm_mb: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------------------------ measured process


def _status_kb(pid: int | str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


class TreeRssSampler:
    """Peak of the summed VmRSS of this process and its descendants, sampled in a daemon thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        pid = os.getpid()
        total = sum(_status_kb(p, "VmRSS:") for p in [pid, *_descendants(pid)])
        self.peak_kb = max(self.peak_kb, total)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeRssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _datago_config(root: str, process: bool, concurrency: int, limit: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = {
        "source_type": "filesystem",
        "source_config": {"root_path": root},
        "concurrency": concurrency,
        "limit": limit,
    }
    if process:
        config["image_config"] = dict(IMAGE_CONFIG)
    return config


def _run_datago(spec: dict[str, Any], result: RunResult) -> None:
    import datago

    config = _datago_config(spec["root"], spec["process"], spec["workers"])
    touched = 0
    started = time.perf_counter()
    client = datago.Client(config)
    with client:
        for sample in client:
            array = sample.array
            touched ^= int(array[-1, -1, 0])
            result.images += 1
            if result.images == 1:
                result.first_sample_s = time.perf_counter() - started
            del sample, array
        result.seconds = time.perf_counter() - started
        # Inside the block: leaving it closes the client, and stats() on a closed client raises.
        result.stats = dict(client.stats())


_WORKER_BUCKETS: list[Bucket] | None = None


def _pil_init(buckets: list[Bucket] | None) -> None:
    global _WORKER_BUCKETS
    _WORKER_BUCKETS = buckets


def _pil_load(path: str) -> Any:
    return reference_array(path, _WORKER_BUCKETS)


def _run_pil(spec: dict[str, Any], result: RunResult) -> None:
    import multiprocessing

    files = [str(p) for p in list_images(Path(spec["root"]))]
    buckets = [tuple(b) for b in spec["buckets"]] if spec["process"] else None
    workers = spec["workers"]
    chunksize = max(1, min(8, len(files) // (workers * 16)))
    touched = 0
    started = time.perf_counter()
    pool = multiprocessing.Pool(workers, initializer=_pil_init, initargs=(buckets,))
    try:
        for array in pool.imap_unordered(_pil_load, files, chunksize=chunksize):
            touched ^= int(array[-1, -1, 0])
            result.images += 1
            if result.images == 1:
                result.first_sample_s = time.perf_counter() - started
            del array
        result.seconds = time.perf_counter() - started
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()  # the workers must be reaped for RUSAGE_CHILDREN to count them


def run_one(spec: dict[str, Any]) -> RunResult:
    """Body of a measured subprocess."""
    result = RunResult(loader=spec["loader"])
    with TreeRssSampler() as sampler:
        if spec["loader"] == "datago":
            _run_datago(spec, result)
        else:
            _run_pil(spec, result)
    result.rss_self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.rss_children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result.rss_tree_peak_mb = sampler.peak_kb / 1024
    result.vm_hwm_mb = _status_kb(os.getpid(), "VmHWM:") / 1024
    return result


def parity_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Compare what datago delivers for a few images with the Pillow reference (not timed)."""
    import numpy as np

    import datago

    root = Path(spec["root"])
    by_name = {p.name: p for p in list_images(root)}
    by_stem = {p.stem: p for p in by_name.values()}
    buckets = [tuple(b) for b in spec["buckets"]] if spec["process"] else None
    config = _datago_config(spec["root"], spec["process"], spec["workers"], limit=spec["limit"])
    rows: list[dict[str, Any]] = []
    with datago.Client(config) as client:
        for sample in client:
            sid = str(sample.id)
            path = root / sid
            if not path.is_file():
                found = by_name.get(Path(sid).name) or by_stem.get(Path(sid).stem)
                if found is None:
                    rows.append({"id": sid, "error": "id does not name a file of the corpus"})
                    continue
                path = found
            got = np.asarray(sample.array)
            ref = reference_array(path, buckets)
            from PIL import Image

            with Image.open(path) as im:
                from PIL import ImageOps

                oriented_size = ImageOps.exif_transpose(im).size
            row: dict[str, Any] = {
                "id": sid,
                "shape": list(got.shape),
                "ref_shape": list(ref.shape),
                "original_size": list(sample.original_size),
                "ref_original_size": list(oriented_size),
                "dtype": str(got.dtype),
            }
            if got.shape == ref.shape:
                diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
                row["mean_abs_diff"] = round(float(diff.mean()), 3)
                row["max_abs_diff"] = int(diff.max())
            rows.append(row)
    return {"rows": rows}


def probe() -> dict[str, Any]:
    """Whether datago loads, its versions and buckets (run in a child: the parent never loads the Go runtime,
    so that it can fork freely, e.g. to generate corpora)."""
    problem = datago_problem()
    buckets, source = get_buckets(**BUCKET_ARGS)
    payload: dict[str, Any] = {"problem": problem, "buckets": buckets, "buckets_source": source}
    if problem is None:
        import datago

        payload["version"] = datago.__version__
        payload["library_version"] = datago.library_version()
    return payload


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec.get("mode") == "probe":
        payload: dict[str, Any] = probe()
    elif spec.get("mode") == "parity":
        payload = parity_one(spec)
    else:
        payload = asdict(run_one(spec))
    print(RESULT_MARKER + json.dumps(payload), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- parent


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    versions: dict[str, str] = {"python": platform.python_version()}
    for module in ("PIL", "numpy", "skimage"):
        with contextlib.suppress(Exception):
            versions[module] = str(__import__(module).__version__)
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "versions": versions,
    }


def warm_page_cache(files: list[Path]) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    for path in files:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total, time.perf_counter() - started


# Linux keeps the largest RSS a process had before exec() in its ru_maxrss, and a child forked (or
# vforked) from this parent would start from the parent's ~100 MB. So measured processes are started
# through a minimal interpreter that posix_spawns them: their ru_maxrss starts from its few MB.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)\n"
    "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
)


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run this file in a child process on ``spec``; its JSON payload, or {"error": ...}."""
    child = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    command = [sys.executable, "-S", "-c", _LAUNCHER, *child]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own session: it and the measured process
        proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            payload: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            return payload
    tail = (stderr.strip().splitlines() or ["(no output)"])[-6:]
    return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}


def summarise(runs: list[RunResult], expected: int) -> dict[str, Any]:
    good = [r for r in runs if r.error is None]
    rates = [r.rate for r in good]
    summary: dict[str, Any] = {
        "runs": len(runs),
        "failed": len(runs) - len(good),
        "errors": sorted({r.error for r in runs if r.error}),
        "images": sorted({r.images for r in good}),
        "expected_images": expected,
    }
    if rates:
        summary.update(
            min=min(rates),
            median=statistics.median(rates),
            max=max(rates),
            first_sample_s=statistics.median(r.first_sample_s for r in good),
            rss_getrusage_mb=max(r.rss_self_mb + r.rss_children_mb for r in good),
            rss_tree_peak_mb=max(r.rss_tree_peak_mb for r in good),
        )
    return summary


def fmt(value: Any, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for case in results["cases"]:
        summaries = case["loaders"]
        base = summaries.get("pil", {}).get("median")
        for loader, s in summaries.items():
            ratio = "-"
            if loader != "pil" and base and s.get("median"):
                ratio = f"{s['median'] / base:.2f}x"
            images = ",".join(str(n) for n in s["images"]) or "-"
            if s["images"] and s["images"] != [s["expected_images"]]:
                images += f" (expected {s['expected_images']})"
            rows.append(
                [
                    f"{case['key']}: {case['title']}",
                    loader,
                    images,
                    f"{s['runs'] - s['failed']}/{s['runs']}",
                    fmt(s.get("min")),
                    fmt(s.get("median")),
                    fmt(s.get("max")),
                    ratio,
                    fmt(s.get("rss_getrusage_mb"), 0),
                    fmt(s.get("rss_tree_peak_mb"), 0),
                ]
            )
    return rows


HEADERS = [
    "case",
    "loader",
    "images",
    "runs ok",
    "min img/s",
    "median img/s",
    "max img/s",
    "vs pil (median)",
    "peak RSS MB (getrusage)",
    "peak RSS MB (tree, sampled)",
]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def markdown(results: dict[str, Any], rows: list[list[str]]) -> str:
    m = results["machine"]
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "| " + " | ".join(["---", "---"] + ["---:"] * (len(HEADERS) - 2)) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    corpora = "; ".join(
        f"{kind}: {c['count']} images, {c['megapixels_per_image']:.2f} MP/image, "
        f"{c['bits_per_pixel']} bits/pixel"
        for kind, c in results["corpora"].items()
    )
    lines += [
        "",
        f"Machine: {m['cpu_model']}, nproc {m['nproc']}, {m['memory_gb']} GB RAM, {m['os']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". Load average before the run: {results['loadavg_before'][0]:.2f}.",
        f"Corpora ({results['corpus_sources'].split(':')[0]}): {corpora}. "
        f"datago concurrency {results['workers']}, Pool({results['workers']}) for pil, "
        f"{results['repeats']} run(s) per loader and case, each in its own process, page cache warm.",
        f"Command: `{results['command']}`",
    ]
    parity = [
        f"{c['key']}: {c['parity']['compared'] - len(c['parity']['shape_mismatches'])}/"
        f"{c['parity']['compared']} same shape, worst mean |diff| {c['parity']['mean_abs_diff_max']}"
        for c in results["cases"]
        if "compared" in c.get("parity", {})
    ]
    if parity:
        lines.append("Parity of datago's arrays with the Pillow reference: " + "; ".join(parity) + ".")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install -r tests/bench/requirements.txt)"
    cases = results["cases"]
    colours = {"datago": "#2a7ab9", "pil": "#c8782a"}
    # One panel per case, each with its own scale: the cases differ by an order of magnitude.
    fig, axes = plt.subplots(1, len(cases), figsize=(1.2 + 3.2 * len(cases), 4.0), dpi=110, squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        names = [name for name in LOADERS if case["loaders"].get(name, {}).get("median")]
        stats = [case["loaders"][name] for name in names]
        meds = [st["median"] for st in stats]
        errors = [[st["median"] - st["min"] for st in stats], [st["max"] - st["median"] for st in stats]]
        bars = ax.bar(names, meds, yerr=errors, capsize=4, color=[colours[n] for n in names], width=0.6)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in meds], padding=3, fontsize=9)
        title = f"{case['key']}: {case['title']}"
        if len(names) == 2:
            title += f"\ndatago = {meds[0] / meds[1]:.2f}x pil"
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.18)
        ax.tick_params(axis="y", labelsize=8)
    axes[0][0].set_ylabel("images/s (median; bars: min-max)")
    m = results["machine"]
    fig.suptitle(
        f"datago vs Pillow + multiprocessing.Pool — {m['cpu_model']}, {m['nproc']} CPUs, "
        f"{results['repeats']} run(s) each",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"


def check_parity(case: Case, root: Path, buckets: list[Bucket], workers: int, limit: int) -> dict[str, Any]:
    spec = {
        "mode": "parity",
        "root": str(root),
        "process": case.process,
        "buckets": buckets,
        "workers": workers,
        "limit": limit,
    }
    payload = spawn(spec, timeout=300)
    if "error" in payload:
        return {"error": payload["error"]}
    rows = payload["rows"]
    bad_shape = [r["id"] for r in rows if "error" in r or r["shape"] != r["ref_shape"]]
    bad_size = [r["id"] for r in rows if "error" not in r and r["original_size"] != r["ref_original_size"]]
    diffs = [r["mean_abs_diff"] for r in rows if "mean_abs_diff" in r]
    return {
        "compared": len(rows),
        "shape_mismatches": bad_shape,
        "original_size_mismatches": bad_size,
        "mean_abs_diff_max": max(diffs) if diffs else None,
        "max_abs_diff": max((r["max_abs_diff"] for r in rows if "max_abs_diff" in r), default=None),
        "rows": rows,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: small corpora and 1 repeat")
    parser.add_argument(
        "--repeats", type=int, help="measured runs per loader and case (default 3, --quick 1)"
    )
    parser.add_argument("--cases", default="A,B,C", help="comma-separated subset of A,B,C (default all)")
    parser.add_argument("--loaders", default="datago,pil", help="comma-separated subset of datago,pil")
    parser.add_argument("--highres", type=int, help="highres corpus size (default 128, --quick 12)")
    parser.add_argument("--small", type=int, help="small corpus size (default 2000, --quick 200)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="datago concurrency / pool size"
    )
    parser.add_argument("--cache", type=Path, default=None, help="cache directory (default .cache/bench)")
    parser.add_argument(
        "--parity", type=int, default=8, help="images compared with the reference per case (0: off)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per measured run")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    counts = QUICK_COUNTS if args.quick else FULL_COUNTS
    args.counts = {"highres": args.highres or counts["highres"], "small": args.small or counts["small"]}
    args.case_list = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    args.loader_list = [x.strip().lower() for x in args.loaders.split(",") if x.strip()]
    if bad := [c for c in args.case_list if c not in CASES]:
        parser.error(f"unknown case(s) {bad}; choose from {','.join(CASES)}")
    if bad := [x for x in args.loader_list if x not in LOADERS]:
        parser.error(f"unknown loader(s) {bad}; choose from {','.join(LOADERS)}")
    if args.repeats < 1 or args.workers < 1:
        parser.error("--repeats and --workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user_pythonpath = os.environ.get("PYTHONPATH", "")
    add_python_path()
    if args.child is not None:
        return child_main(args.child)
    cache = (args.cache or default_cache_dir()).resolve()
    info = spawn({"mode": "probe"}, timeout=120)
    problem = info.get("problem") or info.get("error")
    if "datago" in args.loader_list and problem:
        print(f"bench: {problem}\nbench: run with --loaders pil for the baseline alone", file=sys.stderr)
        return 2
    started = time.perf_counter()
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    command = (f"PYTHONPATH={shlex.quote(user_pythonpath)} " if user_pythonpath else "") + shlex.join(
        ["python", script, *(argv if argv is not None else sys.argv[1:])]
    )
    buckets: list[Bucket] = [(int(w), int(h)) for w, h in info.get("buckets") or []]
    bucket_source = info.get("buckets_source", "fallback")
    if not buckets:
        buckets, bucket_source = fallback_buckets(**BUCKET_ARGS), "fallback"
    results: dict[str, Any] = {
        "command": command,
        "cwd": str(Path.cwd()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "loadavg_before": list(os.getloadavg()),
        "workers": args.workers,
        "repeats": args.repeats,
        "buckets": {"source": bucket_source, "count": len(buckets), "list": buckets},
        "corpora": {},
        "cases": [],
    }
    if not problem:
        results["machine"]["versions"]["datago"] = f"{info['version']} (library {info['library_version']})"
    print(f"bench: {command}")
    m = results["machine"]
    print(f"bench: {m['cpu_model']}, nproc {m['nproc']}, load average {results['loadavg_before'][0]:.2f}")
    for key in args.case_list:
        case = CASES[key]
        params = corpus.Params(kind=case.kind, count=args.counts[case.kind])
        directory = corpus.ensure_corpus(params, corpus.corpus_dir(params, cache))
        manifest = corpus.read_manifest(directory) or {}
        results["corpus_sources"] = manifest.get("key", {}).get("sources", "?")
        results["corpora"][case.kind] = {
            "path": str(directory),
            "count": params.count,
            "megabytes": round(manifest.get("total_bytes", 0) / 1e6, 1),
            "megapixels_per_image": manifest.get("total_megapixels", 0) / max(1, params.count),
            "bits_per_pixel": manifest.get("bits_per_pixel"),
        }
        root = directory / "images"
        files = list_images(root)
        size, seconds = warm_page_cache(files)
        print(
            f"\n[{key}] {case.title}: {len(files)} files, "
            f"{size / 1e6:.1f} MB read in {seconds:.2f} s (page cache warm)"
        )
        spec_base = {"root": str(root), "process": case.process, "buckets": buckets, "workers": args.workers}
        runs: dict[str, list[RunResult]] = {name: [] for name in args.loader_list}
        for repeat in range(args.repeats):
            order = args.loader_list if repeat % 2 == 0 else args.loader_list[::-1]
            for loader in order:
                payload = spawn({**spec_base, "loader": loader}, args.timeout)
                if "loader" in payload:
                    result = RunResult(**payload)
                    if result.images != len(files):
                        result.error = f"delivered {result.images} of {len(files)} images"
                else:
                    result = RunResult(loader=loader, error=payload["error"])
                runs[loader].append(result)
                status = result.error or (
                    f"{result.images} images in {result.seconds:.2f} s = {result.rate:,.1f} img/s, "
                    f"first after {result.first_sample_s * 1000:.0f} ms, "
                    f"RSS {result.rss_self_mb:.0f}+{result.rss_children_mb:.0f} MB "
                    f"(tree {result.rss_tree_peak_mb:.0f})"
                )
                print(f"  run {repeat + 1}/{args.repeats} {loader:6s} {status}", flush=True)
        case_result: dict[str, Any] = {
            "key": key,
            "title": case.title,
            "kind": case.kind,
            "process": case.process,
            "loaders": {name: summarise(r, len(files)) for name, r in runs.items()},
            "runs": {name: [asdict(x) for x in r] for name, r in runs.items()},
        }
        if "datago" in args.loader_list and args.parity > 0:
            parity = check_parity(case, root, buckets, args.workers, args.parity)
            case_result["parity"] = parity
            if "error" in parity:
                print(f"  parity: FAILED: {parity['error']}")
            else:
                print(
                    f"  parity vs Pillow reference on {parity['compared']} images: "
                    f"shape mismatches {len(parity['shape_mismatches'])}, "
                    f"original_size mismatches {len(parity['original_size_mismatches'])}, "
                    f"worst mean |diff| {parity['mean_abs_diff_max']}, max |diff| {parity['max_abs_diff']}"
                )
                for row in parity["rows"]:
                    if (
                        row.get("error")
                        or row["shape"] != row["ref_shape"]
                        or row["original_size"] != row["ref_original_size"]
                    ):
                        print(f"    {row}")
        results["cases"].append(case_result)
    results["loadavg_after"] = list(os.getloadavg())
    results["seconds"] = round(time.perf_counter() - started, 1)
    rows = table_rows(results)
    md = markdown(results, rows)
    results["markdown"] = md
    print("\n" + text_table(rows))
    print(f"\nMarkdown (for README.md):\n\n{md}\n")
    cache.mkdir(parents=True, exist_ok=True)
    json_path = cache / "results.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {json_path}")
    if not args.no_plot:
        print(plot(results, cache / "bench.png"))
    print(f"bench: done in {results['seconds']} s (load average now {results['loadavg_after'][0]:.2f})")
    failed = any(s["failed"] for c in results["cases"] for s in c["loaders"].values()) or any(
        "error" in c.get("parity", {}) or c["parity"]["shape_mismatches"]
        for c in results["cases"]
        if "parity" in c
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
