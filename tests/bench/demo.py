"""datago demo: load a small folder of photo-like images with crop_and_resize and draw a contact sheet.

The images are generated locally by corpus.py (kind "tiny": ~48 variants of the scikit-image sample
photographs with aspect ratios from 0.5 to 2, no download). They go through datago with
crop_and_resize; the demo prints the throughput and the client's stats, checks every sample's size
against the bucket the geometry rule picks, and saves a contact sheet of the delivered samples, each
labelled with its bucket (WxH) and file name.

  PYTHONPATH=python python tests/bench/demo.py                    # make demo
  python tests/bench/demo.py --size 512 --count 24 --out /tmp/sheet.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from reference import add_python_path, default_cache_dir, pick_bucket  # noqa: E402

THUMB = 176  # longest side of a thumbnail on the sheet
LABEL_HEIGHT = 30
PAD = 10


def default_demo_dir() -> Path:
    """``.cache/demo`` next to the bench cache (``$DATAGO_BENCH_CACHE/../demo`` when that is set)."""
    return default_cache_dir().parent / "demo"


def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def contact_sheet(
    tiles: list[tuple[Image.Image, str, str]], columns: int, title: str, footer: str
) -> Image.Image:
    """A grid of thumbnails (image, first label line, second label line) under a title."""
    font, small, heading = load_font(12), load_font(11), load_font(15)
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    cell_w, cell_h = THUMB + PAD, THUMB + LABEL_HEIGHT + PAD
    header, bottom = 34, 24
    sheet = Image.new("RGB", (PAD + columns * cell_w, header + rows * cell_h + bottom), (246, 246, 246))
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 9), title, fill=(20, 20, 20), font=heading)
    for index, (image, line1, line2) in enumerate(tiles):
        x0 = PAD + (index % columns) * cell_w
        y0 = header + (index // columns) * cell_h
        thumb = image.copy()
        thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        # Thumbnails keep the bucket's aspect ratio, centred in their cell.
        x = x0 + (THUMB - thumb.width) // 2
        y = y0 + (THUMB - thumb.height) // 2
        draw.rectangle((x0, y0, x0 + THUMB - 1, y0 + THUMB - 1), fill=(226, 226, 226))
        sheet.paste(thumb, (x, y))
        draw.rectangle((x - 1, y - 1, x + thumb.width, y + thumb.height), outline=(90, 90, 90))
        draw.text((x0, y0 + THUMB + 3), line1, fill=(0, 0, 0), font=font)
        draw.text((x0, y0 + THUMB + 17), line2, fill=(80, 80, 80), font=small)
    draw.text((PAD, sheet.height - bottom + 5), footer, fill=(90, 90, 90), font=small)
    return sheet


def ellipsize(text: str, limit: int = 27) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=48, help="number of images (default 48)")
    parser.add_argument("--size", type=int, default=256, help="default_image_size (default 256)")
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--images", type=Path, help="use this folder of images instead of generating one")
    parser.add_argument("--out", type=Path, help="contact sheet PNG (default .cache/demo/contact_sheet.png)")
    args = parser.parse_args(argv)
    demo_dir = default_demo_dir()
    out = (args.out or demo_dir / "contact_sheet.png").resolve()

    # Generate first: corpus.py forks, and the process must not fork once datago's Go runtime is loaded.
    if args.images:
        root = args.images.resolve()
    else:
        params = corpus.Params(kind="tiny", count=args.count)
        root = corpus.ensure_corpus(params, corpus.corpus_dir(params, demo_dir)) / "images"

    add_python_path()
    import datago

    config: dict[str, Any] = {
        "source_type": "filesystem",
        "source_config": {"root_path": str(root)},
        "image_config": {
            "crop_and_resize": True,
            "default_image_size": args.size,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
        },
        "concurrency": args.concurrency,
        "limit": 0,
    }
    print(f"demo: datago {datago.__version__} (library {datago.library_version()}), images from {root}")
    print("demo: config " + json.dumps(config))
    buckets = datago.aspect_ratio_buckets(args.size, 16, 0.5, 2.0)

    samples: list[Any] = []
    started = time.perf_counter()
    client = datago.Client(config)
    with client:
        for sample in client:
            _ = sample.array  # the zero-copy NumPy view: what a training loop would take
            samples.append(sample)
        elapsed = time.perf_counter() - started
        stats = client.stats()
    rate = len(samples) / elapsed if elapsed > 0 else 0.0
    print(
        f"demo: {len(samples)} images in {elapsed:.3f} s = {rate:,.1f} images/s "
        f"(concurrency {args.concurrency})"
    )
    print("demo: stats " + json.dumps(stats, sort_keys=True))

    tiles: list[tuple[Image.Image, str, str]] = []
    mismatches = []
    used: dict[tuple[int, int], int] = {}
    for sample in sorted(samples, key=lambda s: str(s.id)):
        height, width = sample.array.shape[:2]
        ow, oh = sample.original_size
        expected = pick_bucket(ow, oh, buckets)
        if (width, height) != tuple(expected):
            mismatches.append(f"{sample.id}: {width}x{height}, expected bucket {expected[0]}x{expected[1]}")
        used[(width, height)] = used.get((width, height), 0) + 1
        image = Image.fromarray(sample.array)  # a copy, in RGB
        tiles.append((image, f"{width}x{height}  (from {ow}x{oh})", ellipsize(Path(str(sample.id)).name)))
    print(
        f"demo: {len(used)} distinct buckets used out of {len(buckets)}; "
        + ("every sample has the bucket the geometry rule picks" if not mismatches else "MISMATCHES:")
    )
    for line in mismatches:
        print(f"  {line}")

    title = (
        f"datago crop_and_resize, default_image_size {args.size}: {len(samples)} samples, "
        f"{rate:,.0f} images/s on {os.cpu_count()} CPUs"
    )
    footer = (
        "label: bucket WxH (original WxH after EXIF orientation), file name; "
        "thumbnails keep the bucket's shape"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, args.columns, title, footer).save(out)
    print(f"demo: contact sheet: {out}")
    return 1 if mismatches or not samples else 0


if __name__ == "__main__":
    sys.exit(main())
