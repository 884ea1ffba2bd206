"""Benchmark of the dataroom HTTP source: datago over the loopback test server vs datago over the files.

The same JPEG corpus (tests/bench/corpus.py, kind "small" by default: ~500x375 photos) is loaded twice
with crop_and_resize to 512 buckets: by the filesystem source from its folder, and by the "db" source
from tests/support/dataroom_server.py serving that folder on 127.0.0.1 (in a process of its own, as a real
server would be; its CPU time is measured and reported, since on a small machine it competes with the
loader for the same cores). Runs alternate between the two sources, each in a fresh process.

If Photoroom's datago (the Rust loader from PyPI) is installed in .cache/bench/venv-rust (bench.py
creates it), it runs against the same server too (its own "db" source, DATAROOM_API_URL/KEY).

  PYTHONPATH=python .venv/bin/python tests/bench/bench_db.py                 # 2000 images, 3 runs each
  PYTHONPATH=python .venv/bin/python tests/bench/bench_db.py --count 500 --runs 2 --no-rust
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import corpus  # noqa: E402
from reference import IMAGE_CONFIG  # noqa: E402

# ------------------------------------------------------------------------------- child processes


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Load every image once with the loader of ``spec``; returns images, seconds and stats."""
    if spec["loader"] == "rust":
        return child_rust(spec)
    import datago

    if spec["loader"] == "fs":
        source: dict[str, Any] = {"source_type": "filesystem", "source_config": {"root_path": spec["root"]}}
    else:
        source = {
            "source_type": "db",
            "source_config": {"api_url": spec["url"], "api_key": spec["key"], "page_size": 512},
        }
    config = {
        **source,
        "image_config": IMAGE_CONFIG,
        "concurrency": spec["concurrency"],
        "limit": spec["limit"],
    }
    images, touched = 0, 0
    started = time.perf_counter()
    with datago.Client(config) as client:
        for sample in client:
            touched ^= int(sample.array[-1, -1, 0])
            images += 1
        seconds = time.perf_counter() - started
        stats = client.stats()
    return {"images": images, "seconds": seconds, "skipped": stats.get("skipped_total", 0)}


def child_rust(spec: dict[str, Any]) -> dict[str, Any]:
    import datago  # Photoroom's, from its own venv

    config = {
        "source_type": "db",
        "source_config": {
            "page_size": 512,
            "rank": 0,
            "world_size": 1,
            "require_images": True,
            "random_sampling": False,
            "sources": "",  # required by its serde struct
        },
        "image_config": {**IMAGE_CONFIG, "pre_encode_images": False},
        "limit": spec["limit"],
        "samples_buffer_size": 32,
    }
    client = datago.DatagoClient(json.dumps(config))
    images, touched = 0, 0
    started = time.perf_counter()
    client.start()
    try:
        while (sample := client.get_sample()) is not None:
            touched ^= int(sample.image.to_numpy_array()[-1, -1, 0])
            images += 1
            if images >= spec["limit"]:
                break
        seconds = time.perf_counter() - started
    finally:
        client.stop()
    return {"images": images, "seconds": seconds, "skipped": None}


def spawn(
    spec: dict[str, Any], python: str = sys.executable, env: dict[str, str] | None = None
) -> dict[str, Any]:
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{spec['loader']} run failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------ the server


class ServerProcess:
    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "support" / "dataroom_server.py"),
                "--serve-dir",
                str(directory),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        values = {}
        assert self.proc.stdout is not None
        for _ in range(2):
            key, _, value = self.proc.stdout.readline().strip().partition("=")
            values[key] = value
        self.url, self.key = values["DATAROOM_API_URL"], values["DATAROOM_API_KEY"]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# -------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="small", choices=corpus.KINDS)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=0, help="datago workers (0: number of CPUs)")
    ap.add_argument("--no-rust", action="store_true", help="skip Photoroom's datago even if installed")
    ap.add_argument(
        "--rust-max-tasks", type=int, default=0, help="DATAGO_MAX_TASKS for Photoroom's datago (0: unset)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "bench_db.json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    params = corpus.Params(kind=args.kind, count=args.count)
    directory = corpus.ensure_corpus(params, corpus.corpus_dir(params))
    images_dir = directory / "images"
    files = sorted(p for p in images_dir.iterdir() if p.is_file())
    total = sum(len(p.read_bytes()) for p in files)  # also warms the page cache
    print(f"corpus: {len(files)} {args.kind} images, {total / 1e6:.0f} MB in {images_dir}", flush=True)

    server = ServerProcess(images_dir)
    rust_python = ROOT / ".cache" / "bench" / "venv-rust" / "bin" / "python"
    results: dict[str, list[dict[str, Any]]] = {"fs": [], "db": [], "rust": []}
    server_cpu: list[float] = []
    try:
        base = {
            "root": str(images_dir),
            "url": server.url,
            "key": server.key,
            "concurrency": args.concurrency,
        }
        # Warm-up (first process start, server caches): not measured.
        spawn({**base, "loader": "db", "limit": 64})
        spawn({**base, "loader": "fs", "limit": 64})
        for run in range(args.runs):
            for loader in ("fs", "db"):
                cpu0 = server.cpu_seconds()
                r = spawn({**base, "loader": loader, "limit": 0})
                if loader == "db":
                    server_cpu.append(server.cpu_seconds() - cpu0)
                    r["server_cpu_s"] = server_cpu[-1]
                results[loader].append(r)
                print(f"run {run + 1} {loader:>4}: {r['images'] / r['seconds']:7.1f} img/s ({r})", flush=True)
        rust_note = ""
        if args.no_rust:
            rust_note = "skipped (--no-rust)"
        elif not rust_python.exists():
            rust_note = f"skipped: {rust_python} does not exist (make bench creates it)"
        else:
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
            env.update(DATAROOM_API_URL=server.url, DATAROOM_API_KEY=server.key)
            try:
                for run in range(args.runs):
                    r = spawn(
                        {**base, "loader": "rust", "limit": len(files)}, python=str(rust_python), env=env
                    )
                    results["rust"].append(r)
                    print(f"run {run + 1} rust: {r['images'] / r['seconds']:7.1f} img/s ({r})", flush=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rust_note = f"failed: {str(exc)[-500:]}"
    finally:
        server.stop()

    def median_rate(runs: list[dict[str, Any]]) -> float | None:
        return statistics.median(r["images"] / r["seconds"] for r in runs) if runs else None

    fs, db, rust = (median_rate(results[k]) for k in ("fs", "db", "rust"))
    summary = {
        "corpus": {"kind": args.kind, "count": len(files), "bytes": total},
        "cpus": os.cpu_count(),
        "image_config": IMAGE_CONFIG,
        "median_img_s": {"filesystem": fs, "db": db, "rust_db": rust},
        "db_vs_filesystem": db / fs if fs and db else None,
        "rust_db_vs_db": rust / db if rust and db else None,
        "server_cpu_s_per_run": server_cpu,
        "runs": results,
        "rust_note": rust_note,
        "rust_max_tasks": args.rust_max_tasks or "unset",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print()
    print("| loader | median img/s | vs datago filesystem |")
    print("| --- | ---: | ---: |")
    print(f"| datago, filesystem source | {fs:.1f} | 1.00 |")
    assert fs and db
    print(f"| datago, db source (loopback HTTP) | {db:.1f} | {db / fs:.2f} |")
    if rust:
        tasks = args.rust_max_tasks or "unset"
        print(
            f"| Photoroom datago (Rust), db source, DATAGO_MAX_TASKS={tasks} | {rust:.1f} | {rust / fs:.2f} |"
        )
    elif rust_note:
        print(f"Photoroom datago: {rust_note}")
    mean_cpu = statistics.mean(server_cpu)
    mean_s = statistics.mean(r["seconds"] for r in results["db"])
    print(f"test server CPU per db run: {mean_cpu:.1f} s ({mean_cpu / mean_s:.0%} of one core)")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
