"""The ``datago`` command (also ``python -m datago``): tune a loader without a Go toolchain.

  datago run CONFIG.json [--limit N] [--seconds S] [--json]    stream samples: rate, stage table, verdict
  datago sheet CONFIG.json -o sheet.png [--count N]           contact sheet of the first samples
  datago buckets [--size 512 --ratio 16 --min-aspect 0.5 --max-aspect 2]   the bucket table

CONFIG.json is a datago configuration (README "Configuration"); ``-`` reads it from stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .client import Client
from .errors import ConfigError, DatagoError

__all__ = ["main", "suggestion"]

_PROGRESS_EVERY = 0.25  # seconds between two progress lines
_STAGES = ("list", "fetch", "decode", "collect", "ready", "consumer")


def _read_config(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a JSON object")
    return config


def _item_bytes(item: Any) -> int:
    """The delivered bytes of a Sample or Batch (pixels or encoded bytes), read without copying."""
    owner = item._owner
    if hasattr(owner, "images"):
        return int(owner.images.len)
    n = int(owner.image.len)
    for k in range(int(owner.n_items)):
        n += int(owner.items[k].buf.len)
    return n


def _count(item: Any) -> int:
    return len(item) if hasattr(item, "ids") else 1


def suggestion(stats: Mapping[str, Any], config: Mapping[str, Any], cpus: int | None = None) -> str:
    """What to change, from the verdict of ``stats`` (README "Stage timings")."""
    cpus = cpus or os.cpu_count() or 1
    stages: Mapping[str, Any] = stats.get("stages") or {}
    verdict = stats.get("bottleneck") or ""
    concurrency = int(config.get("concurrency", stages.get("decode", {}).get("workers", 0)) or 0)

    def pct(stage: str, key: str) -> str:
        return f"{100 * float(stages.get(stage, {}).get(key, 0.0)):.0f}%"

    if verdict == "consumer":
        return (
            f"consumer-bound: the ready queue stays {pct('ready', 'recent_queue_fill')} full and the "
            f"decoders wait for room; the time is in the code that takes the samples (the training step, "
            f"or converting each sample): speed it up, or give the loader fewer CPUs"
        )
    if verdict == "decode":
        busy = pct("decode", "recent_utilization")
        if concurrency < cpus:
            return (
                f"decode-bound: raise concurrency ({concurrency} of {cpus} CPUs used, decoders {busy} busy)"
            )
        return (
            f"decode-bound: every CPU decodes ({concurrency} workers on {cpus} CPUs, {busy} busy); smaller "
            "source images (pre-resized data) or more machines are what is left"
        )
    if verdict == "source":
        fetch = stages.get("fetch", {})
        listing = stages.get("list", {})
        if float(listing.get("recent_utilization", 0)) > float(fetch.get("recent_utilization", 0)):
            return (
                f"source-bound: listing is the slow part (lister {pct('list', 'recent_utilization')} busy, "
                f"its queue {pct('list', 'recent_queue_fill')} full): a larger page_size, or a faster index"
            )
        return (
            f"source-bound: the {fetch.get('workers', '?')} fetchers are "
            f"{pct('fetch', 'recent_utilization')} busy reading and the decoders wait for bytes; raise "
            "concurrency for more reads in flight (4 fetchers per unit), or check the disk or network"
        )
    if verdict == "balanced":
        return "balanced: no stage stands out; the loader and its consumer keep pace"
    return "too early to tell: run for longer (--seconds)"


def stage_table(stats: Mapping[str, Any]) -> str:
    """The stage table of ``stats()["stages"]`` as text."""
    stages: Mapping[str, Any] = stats.get("stages") or {}
    header = ("stage", "workers", "items", "busy s", "busy", "recent", "items/s", "queue", "fill", "recent")
    rows = [header]
    for name in _STAGES:
        s = stages.get(name)
        if s is None:
            continue
        queue = f"{s['queue']}({s['queue_capacity']})" if s.get("queue") else "-"
        timed = name != "ready"
        rows.append(
            (
                name,
                str(s.get("workers", 0)) if timed else "-",
                f"{s.get('items', 0):,}",
                f"{s.get('busy_s', 0.0):.2f}" if timed else "-",
                f"{100 * s.get('utilization', 0.0):.0f}%" if timed else "-",
                f"{100 * s.get('recent_utilization', 0.0):.0f}%" if timed else "-",
                f"{s.get('recent_items_per_s', 0.0):,.0f}" if timed else "-",
                queue,
                f"{100 * s.get('queue_fill', 0.0):.0f}%" if s.get("queue") else "-",
                f"{100 * s.get('recent_queue_fill', 0.0):.0f}%" if s.get("queue") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _bar(done: float, width: int = 20) -> str:
    filled = int(round(width * min(max(done, 0.0), 1.0)))
    return "[" + "#" * filled + "." * (width - filled) + "] "


def _progress_line(
    n: int, nbytes: int, elapsed: float, stats: Mapping[str, Any], args: argparse.Namespace
) -> str:
    done = [n / args.limit] if args.limit else []
    if args.seconds:
        done.append(elapsed / args.seconds)
    bar = _bar(max(done)) if done else ""
    rate = n / elapsed if elapsed > 0 else 0.0
    mbps = nbytes / 1e6 / elapsed if elapsed > 0 else 0.0
    skipped = stats.get("skipped") or {}
    skips = ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items())) or "none"
    ready = (stats.get("stages") or {}).get("ready", {})
    fill = f"{100 * ready.get('recent_queue_fill', 0.0):.0f}%" if ready else "-"
    return f"{bar}{n:,} samples  {rate:,.0f}/s  {mbps:,.1f} MB/s  skipped: {skips}  ready queue {fill}"


def _run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    config = _read_config(args.config)
    if args.limit and not 0 < int(config.get("limit", 0) or 0) <= args.limit:
        config["limit"] = args.limit  # the loader stops there: nothing made that is not taken
    # The progress line rewrites itself: only on a terminal.
    progress = not args.json and not args.quiet and err.isatty()
    n = nbytes = 0
    started = time.perf_counter()
    deadline = None if args.seconds is None else started + args.seconds
    last = started
    with Client(config) as client:
        for item in client:
            n += _count(item)
            nbytes += _item_bytes(item)
            del item
            now = time.perf_counter()
            if progress and now - last >= _PROGRESS_EVERY:
                last = now
                line = _progress_line(n, nbytes, now - started, client.stats(), args)
                print("\r" + line + "\x1b[K", end="", file=err, flush=True)
            if (args.limit and n >= args.limit) or (deadline is not None and now >= deadline):
                break
        elapsed = time.perf_counter() - started
        stats = client.stats()  # before leaving the block: the recent window is still the run's
    verdict = stats.get("bottleneck") or ""
    advice = suggestion(stats, config)
    if args.json:
        json.dump(
            {
                "samples": n,
                "seconds": elapsed,
                "samples_per_s": n / elapsed if elapsed > 0 else 0.0,
                "mb_per_s": nbytes / 1e6 / elapsed if elapsed > 0 else 0.0,
                "bottleneck": verdict,
                "suggestion": advice,
                "stats": stats,
            },
            out,
        )
        out.write("\n")
        return 0
    if progress:
        print("\r" + _progress_line(n, nbytes, elapsed, stats, args) + "\x1b[K", file=err)
    print(f"{n:,} samples in {elapsed:.2f} s: {n / max(elapsed, 1e-9):,.1f} samples/s", file=out)
    print(stage_table(stats), file=out)
    print(f"bottleneck: {verdict or 'unknown'}", file=out)
    print(advice, file=out)
    return 0


def _sheet(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from PIL import Image, ImageDraw, ImageFont

    config = _read_config(args.config)
    if config.get("batch_size"):
        raise ConfigError("batch_size: the contact sheet takes samples; remove batch_size")
    tiles: list[tuple[Image.Image, str, str]] = []
    with Client(config) as client:
        for sample in client:
            if not sample.has_image:
                continue
            image = sample.image
            if isinstance(image, bytes):  # pre_encode_images: decode the delivered bytes
                import io

                image = Image.open(io.BytesIO(image)).convert("RGB")
            width, height = image.size
            tiles.append((image.copy(), f"{width}x{height}", Path(sample.id).name or sample.id))
            if len(tiles) >= args.count:
                break
    if not tiles:
        print("datago sheet: no sample with an image was delivered", file=err)
        return 1
    thumb, pad, label = args.thumb, 8, 30
    columns = max(1, min(args.columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (pad + columns * (thumb + pad), pad + rows * (thumb + label + pad)), (246,) * 3)
    draw = ImageDraw.Draw(sheet)
    try:
        font: Any = ImageFont.load_default(size=11)
    except (TypeError, OSError):  # Pillow without FreeType
        font = ImageFont.load_default()
    for index, (image, bucket, name) in enumerate(tiles):
        x0 = pad + (index % columns) * (thumb + pad)
        y0 = pad + (index // columns) * (thumb + label + pad)
        image.thumbnail((thumb, thumb))
        sheet.paste(image, (x0 + (thumb - image.width) // 2, y0 + (thumb - image.height) // 2))
        draw.text((x0, y0 + thumb + 2), bucket, fill=(20, 20, 20), font=font)
        draw.text((x0, y0 + thumb + 15), name[:28], fill=(90, 90, 90), font=font)
    sheet.save(args.output)
    print(f"{args.output}: {len(tiles)} samples, labelled with their buckets (width x height)", file=out)
    return 0


def _buckets(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from . import aspect_ratio_buckets

    pairs = aspect_ratio_buckets(args.size, args.ratio, args.min_aspect, args.max_aspect)
    if args.json:
        json.dump([list(p) for p in pairs], out)
        out.write("\n")
        return 0
    print(
        f"{len(pairs)} buckets (default_image_size {args.size}, downsampling_ratio {args.ratio}, "
        f"aspect ratios {args.min_aspect}-{args.max_aspect})",
        file=out,
    )
    print(f"{'width':>6} {'height':>6} {'aspect':>7} {'pixels':>9}", file=out)
    for w, h in pairs:
        print(f"{w:>6} {h:>6} {w / h:>7.3f} {w * h:>9,}", file=out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datago", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="stream samples; print the rate, the stage table and the verdict")
    run.add_argument("config", help="a JSON configuration file (- for stdin)")
    run.add_argument("--limit", type=int, default=0, help="stop after N samples")
    run.add_argument("--seconds", type=float, help="stop after S seconds")
    run.add_argument("--json", action="store_true", help="print one JSON object (for machines)")
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.set_defaults(fn=_run)
    sheet = commands.add_parser("sheet", help="a contact sheet of the first samples, labelled with buckets")
    sheet.add_argument("config", help="a JSON configuration file (- for stdin)")
    sheet.add_argument("-o", "--output", required=True, help="the image file to write (PNG, JPEG, ...)")
    sheet.add_argument("--count", type=int, default=24, help="samples on the sheet (default 24)")
    sheet.add_argument("--columns", type=int, default=6)
    sheet.add_argument("--thumb", type=int, default=176, help="thumbnail side in pixels")
    sheet.set_defaults(fn=_sheet)
    buckets = commands.add_parser("buckets", help="the aspect-ratio buckets of crop_and_resize")
    buckets.add_argument("--size", type=int, default=512, help="default_image_size (default 512)")
    buckets.add_argument("--ratio", type=int, default=16, help="downsampling_ratio (default 16)")
    buckets.add_argument("--min-aspect", type=float, default=0.5, help="min_aspect_ratio (default 0.5)")
    buckets.add_argument("--max-aspect", type=float, default=2.0, help="max_aspect_ratio (default 2.0)")
    buckets.add_argument("--json", action="store_true", help="a JSON array of [width, height]")
    buckets.set_defaults(fn=_buckets)
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """The ``datago`` command; returns its exit status (2: usage or configuration error, 1: failure)."""
    args = _parser().parse_args(argv)
    out, err = out or sys.stdout, err or sys.stderr
    try:
        status: int = args.fn(args, out, err)
        return status
    except ConfigError as exc:
        print(f"datago {args.command}: configuration error: {exc}", file=err)
        return 2
    except BrokenPipeError:  # `datago buckets | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes it at exit
        return 0
    except (DatagoError, OSError, ValueError) as exc:
        print(f"datago {args.command}: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
