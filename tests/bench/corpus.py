"""Reproducible, offline, photo-like JPEG corpora for the datago benchmark and demo.

Sources are the real photographs bundled inside the scikit-image wheel (``skimage.data.astronaut()``,
``coffee()``, ``chelsea()``, ...; only those that load without network, checked at run time). Without
scikit-image, a fallback of Pillow-synthesised "landscapes" is used (the manifest records which).
Each image is a variant of a source: random crop to the target aspect ratio, random flip, rescale to the
target size, mild Gaussian noise, JPEG quality 85-95, and for a fraction of the images an EXIF
orientation tag (the pixels are stored rotated so that the displayed image keeps the target size).
Everything is drawn from a numpy RNG seeded by (seed, kind, index): the same arguments give the same
files (with the same Pillow/libjpeg), independently of the count and of the parallelism.

Kinds:
  highres  2-12 megapixels, aspect ratios log-uniform in [0.5, 2]
  small    500x375 or 375x500
  tiny     ~0.15-0.5 megapixels, aspect ratios spread over [0.5, 2] (the demo)
  thumb    32x32 PNGs (no EXIF): the per-sample handoff cost of a loader

ensure_tree() makes a different kind of corpus: a large directory tree of hard links to one small JPEG,
for the time to first sample of a loader over many files (only the listing is expensive there).

A corpus is a directory ``<out>/images/*.jpg`` plus ``<out>/manifest.json``; it is reused when the
manifest matches the requested parameters. Images are kept in ``images/`` so that the loader's root
path holds nothing but images.

  python tests/bench/corpus.py --kind highres --count 64              # into .cache/bench/corpus/...
  python tests/bench/corpus.py --out /tmp/c --kind small --count 1000
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import default_cache_dir  # noqa: E402

CORPUS_VERSION = 1
# Append only: the index of a kind seeds its RNG, so reordering would change existing corpora.
KINDS = ("highres", "small", "tiny", "thumb")
# scikit-image sample photographs that ship inside the wheel (colour ones first; grey ones become RGB).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
    "camera",
    "coins",
)
EXIF_ORIENTATION = 0x0112
# Orientation tag -> transpose that turns the displayed image into the stored pixels (the inverse of the
# transpose ImageOps.exif_transpose applies).
STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}

Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Params:
    kind: str
    count: int
    seed: int = 0
    quality: tuple[int, int] = (85, 95)
    noise_sigma: tuple[float, float] = (1.5, 4.0)
    exif_fraction: float = 0.125

    def manifest_key(self, source_set: str) -> dict[str, Any]:
        return {
            "version": CORPUS_VERSION,
            "kind": self.kind,
            "count": self.count,
            "seed": self.seed,
            "quality": list(self.quality),
            "noise_sigma": list(self.noise_sigma),
            "exif_fraction": self.exif_fraction,
            "sources": source_set,
        }


# --------------------------------------------------------------------------------------------- sources


def _skimage_sources() -> dict[str, Array]:
    """The bundled scikit-image photographs that load offline, as HxWx3 uint8."""
    try:
        import skimage.data as skdata
    except Exception:
        return {}
    out: dict[str, Array] = {}
    for name in SKIMAGE_PHOTOS:
        loader: Callable[[], Any] | None = getattr(skdata, name, None)
        if loader is None:
            continue
        try:
            data = loader()
        except Exception:  # a file that would need the network (pooch) or is missing
            continue
        arr = np.asarray(data[0] if isinstance(data, tuple) else data)
        if arr.dtype != np.uint8 or min(arr.shape[:2]) < 256:
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] < 3:
            continue
        out[name] = np.ascontiguousarray(arr[:, :, :3])
    return out


def _synthetic_sources(count: int = 8, seed: int = 1234) -> dict[str, Array]:
    """Pillow-drawn photo-like scenes (sky gradient, hills, sun, trees): the no-scikit-image fallback."""
    out: dict[str, Array] = {}
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        w, h = 1024, 768
        top = rng.integers(60, 200, size=3)
        bottom = rng.integers(150, 256, size=3)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        sky = (top * (1 - t) + bottom * t).astype(np.uint8)
        im = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).copy())
        draw = ImageDraw.Draw(im)
        sx, sy, sr = int(rng.integers(100, w - 100)), int(rng.integers(60, h // 3)), int(rng.integers(25, 70))
        draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, int(rng.integers(200, 256)), 160))
        for layer in range(4):
            base = h * (0.45 + 0.13 * layer)
            xs = np.linspace(0, w, 24)
            ys = base + np.cumsum(rng.normal(0, 18, size=xs.size))
            colour = tuple(int(c) for c in rng.integers(20, 150, size=3))
            draw.polygon([(0, h), *zip(xs.tolist(), ys.tolist(), strict=True), (w, h)], fill=colour)
        for _ in range(int(rng.integers(10, 40))):
            x, y = int(rng.integers(0, w)), int(rng.integers(h // 2, h))
            s = int(rng.integers(8, 40))
            green = (int(rng.integers(10, 60)), int(rng.integers(60, 160)), int(rng.integers(10, 60)))
            draw.polygon([(x, y - 3 * s), (x - s, y), (x + s, y)], fill=green)
        im = im.filter(ImageFilter.GaussianBlur(1.2))
        out[f"synthetic{index}"] = np.asarray(im)
    return out


_SOURCES: dict[str, Array] = {}
_SOURCE_SET = ""


def load_sources(force_synthetic: bool = False) -> tuple[dict[str, Array], str]:
    """Source photographs and their provenance ("skimage-<version>" or "synthetic")."""
    global _SOURCE_SET
    if not _SOURCES:
        found = {} if force_synthetic else _skimage_sources()
        if len(found) >= 3:
            _SOURCE_SET = f"skimage-{importlib.metadata.version('scikit-image')}:" + ",".join(found)
        else:
            found = _synthetic_sources()
            _SOURCE_SET = "synthetic"
        _SOURCES.update(found)
    return _SOURCES, _SOURCE_SET


# -------------------------------------------------------------------------------------------- variants


def _target_size(kind: str, rng: np.random.Generator, index: int) -> tuple[int, int]:
    if kind == "highres":
        megapixels = rng.uniform(2.0, 12.0)
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    elif kind == "small":
        return (500, 375) if rng.random() < 0.5 else (375, 500)
    elif kind == "thumb":
        return 32, 32
    elif kind == "tiny":
        # Cycle through the whole aspect range so that a small demo shows many buckets.
        aspects = (0.5, 0.6, 0.75, 0.9, 1.0, 1.2, 1.33, 1.5, 1.78, 2.0)
        aspect = aspects[index % len(aspects)] * math.exp(rng.uniform(-0.03, 0.03))
        megapixels = rng.uniform(0.15, 0.5)
    else:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    width = round(math.sqrt(megapixels * 1e6 * aspect))
    height = round(megapixels * 1e6 / width)
    return width, height


def _random_crop(src: Array, aspect: float, rng: np.random.Generator) -> Array:
    """A random crop of ``src`` with the given aspect ratio covering 55-100% of the largest such crop."""
    sh, sw = src.shape[:2]
    if sw / sh > aspect:
        ch, cw = sh, sh * aspect
    else:
        cw, ch = sw, sw / aspect
    frac = math.sqrt(rng.uniform(0.55, 1.0))
    cw, ch = max(16, round(cw * frac)), max(16, round(ch * frac))
    x = int(rng.integers(0, sw - cw + 1))
    y = int(rng.integers(0, sh - ch + 1))
    return src[y : y + ch, x : x + cw]


def _add_noise(arr: Array, sigma: float, rng: np.random.Generator) -> Array:
    noisy = rng.standard_normal(size=arr.shape, dtype=np.float32)
    noisy *= sigma
    noisy += arr
    np.clip(noisy, 0, 255, out=noisy)
    return noisy.astype(np.uint8)


def make_image(params: Params, index: int) -> tuple[str, bytes, dict[str, Any]]:
    """File name, JPEG bytes and manifest entry of image ``index`` of the corpus."""
    sources, _ = load_sources()
    names = sorted(sources)
    kind_id = KINDS.index(params.kind)
    rng = np.random.default_rng([params.seed, kind_id, index])
    source = names[int(rng.integers(0, len(names)))]
    width, height = _target_size(params.kind, rng, index)
    crop = _random_crop(sources[source], width / height, rng)
    im = Image.fromarray(crop)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = im.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    sigma = float(rng.uniform(*params.noise_sigma))
    im = Image.fromarray(_add_noise(np.asarray(im), sigma, rng))
    if params.kind == "thumb":  # lossless PNG, no EXIF
        buf = io.BytesIO()
        im.save(buf, "PNG")
        name = f"{index:05d}_{source}.png"
        entry = {
            "file": name,
            "source": source,
            "width": width,
            "height": height,
            "orientation": 1,
            "noise_sigma": round(sigma, 3),
            "bytes": buf.tell(),
        }
        return name, buf.getvalue(), entry
    quality = int(rng.integers(params.quality[0], params.quality[1] + 1))
    orientation = 1
    if rng.random() < params.exif_fraction:
        orientation = int(rng.choice([6, 8, 3]))
        im = im.transpose(STORE_TRANSPOSE[orientation])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    name = f"{index:05d}_{source}.jpg"
    entry = {
        "file": name,
        "source": source,
        "width": width,  # displayed size (after EXIF orientation)
        "height": height,
        "orientation": orientation,
        "quality": quality,
        "noise_sigma": round(sigma, 3),
        "bytes": buf.tell(),
    }
    return name, buf.getvalue(), entry


def _write_one(job: tuple[Params, int, str]) -> dict[str, Any]:
    params, index, directory = job
    name, data, entry = make_image(params, index)
    Path(directory, name).write_bytes(data)
    return entry


def corpus_dir(params: Params, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "corpus" / f"{params.kind}-n{params.count}-s{params.seed}"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def ensure_corpus(
    params: Params,
    out: Path | None = None,
    *,
    workers: int | None = None,
    force: bool = False,
    synthetic: bool = False,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Generate the corpus into ``out`` (default: the cache) unless an identical one is there; its path."""
    directory = (out or corpus_dir(params)).resolve()
    sources, source_set = load_sources(force_synthetic=synthetic)
    key = params.manifest_key(source_set)
    manifest = read_manifest(directory)
    images = directory / "images"
    if (
        not force
        and manifest is not None
        and manifest.get("key") == key
        and images.is_dir()
        and len(list(images.iterdir())) == params.count
    ):
        return directory
    started = time.perf_counter()
    if log:
        log(
            f"corpus: generating {params.count} {params.kind} images into {directory} "
            f"({source_set.split(':')[0]})"
        )
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    jobs = [(params, i, str(tmp / "images")) for i in range(params.count)]
    nproc = workers or os.cpu_count() or 1
    if nproc > 1 and params.count > 4:
        # fork: the workers inherit the decoded sources.
        with multiprocessing.get_context("fork").Pool(nproc) as pool:
            entries = pool.map(_write_one, jobs, chunksize=max(1, params.count // (nproc * 8)))
    else:
        entries = [_write_one(job) for job in jobs]
    total_bytes = sum(e["bytes"] for e in entries)
    total_pixels = sum(e["width"] * e["height"] for e in entries)
    new_manifest = {
        "key": key,
        "generated_by": "tests/bench/corpus.py",
        "seconds": round(time.perf_counter() - started, 2),
        "total_bytes": total_bytes,
        "total_megapixels": round(total_pixels / 1e6, 2),
        "bits_per_pixel": round(8 * total_bytes / max(1, total_pixels), 3),
        "images": entries,
    }
    (tmp / "manifest.json").write_text(json.dumps(new_manifest, indent=1) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(directory)
    if log:
        log(
            f"corpus: {params.count} images, {total_bytes / 1e6:.1f} MB, "
            f"{total_pixels / 1e6 / max(1, params.count):.2f} MP/image on average, "
            f"{new_manifest['seconds']} s"
        )
    return directory


TREE_VERSION = 1
LINKS_PER_INODE = 50_000


def tree_dir(count: int, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "corpus" / f"tree-n{count}"


def ensure_tree(
    count: int, out: Path | None = None, *, per_dir: int = 1000, log: Callable[[str], None] | None = print
) -> Path:
    """``count`` hard links to a 64x48 JPEG in ``<out>/images/dNNNN/NNNNNNN.jpg`` (``per_dir`` a folder).

    For the time to first sample from a large tree: the files are tiny and share a few inodes (one per
    ``LINKS_PER_INODE`` files: ext4 allows 65,000 links to a file), so the tree costs a few MB of
    metadata and is generated in seconds; the listing is what a loader pays for.
    """
    directory = (out or tree_dir(count)).resolve()
    key = {"version": TREE_VERSION, "kind": "tree", "count": count, "per_dir": per_dir}
    manifest = read_manifest(directory)
    if manifest is not None and manifest.get("key") == key:
        return directory
    started = time.perf_counter()
    if log:
        log(f"corpus: generating a tree of {count:,} hard links ({per_dir} per folder) into {directory}")
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    images = tmp / "images"
    images.mkdir(parents=True)
    sources, _ = load_sources()
    photo = Image.fromarray(sources[sorted(sources)[0]]).resize((64, 48), Image.Resampling.BICUBIC)
    data = io.BytesIO()
    photo.save(data, "JPEG", quality=90)
    original = tmp / "original-0.jpg"
    for index in range(count):
        if index % LINKS_PER_INODE == 0:
            original = tmp / f"original-{index // LINKS_PER_INODE}.jpg"  # outside images/: not listed
            original.write_bytes(data.getvalue())
        folder = images / f"d{index // per_dir:04d}"
        if index % per_dir == 0:
            folder.mkdir()
        os.link(original, folder / f"{index:07d}.jpg")
    new_manifest = {
        "key": key,
        "generated_by": "tests/bench/corpus.py",
        "seconds": round(time.perf_counter() - started, 2),
        "file_bytes": original.stat().st_size,
        "folders": (count + per_dir - 1) // per_dir,
    }
    (tmp / "manifest.json").write_text(json.dumps(new_manifest, indent=1) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(directory)
    if log:
        log(f"corpus: tree of {count:,} files in {new_manifest['seconds']} s")
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--out", type=Path, help="corpus directory (default: <cache>/corpus/<kind>-n<count>-s<seed>)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exif-fraction", type=float, default=Params.exif_fraction)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: number of CPUs)")
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical corpus exists")
    parser.add_argument("--synthetic", action="store_true", help="use the Pillow-synthesised sources only")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")
    params = Params(kind=args.kind, count=args.count, seed=args.seed, exif_fraction=args.exif_fraction)
    directory = ensure_corpus(
        params, args.out, workers=args.workers, force=args.force, synthetic=args.synthetic
    )
    manifest = read_manifest(directory) or {}
    print(
        f"{directory / 'images'}: {len(manifest.get('images', []))} images, "
        f"{manifest.get('total_bytes', 0) / 1e6:.1f} MB, {manifest.get('bits_per_pixel')} bits/pixel, "
        f"sources {manifest.get('key', {}).get('sources', '?')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
