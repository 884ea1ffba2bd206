"""Helpers shared by the datago tests: generated images, configurations, subprocess scripts."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIR = ROOT / "python"
LIBRARY = PYTHON_DIR / "datago" / "libdatago.so"


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like RGB image (gradients plus blurred noise) as an HxWx3 uint8 array."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    channels = []
    for c in range(3):
        f1, f2, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * math.pi)
        base = 128 + 50 * np.sin(2 * math.pi * f1 * u + phase) + 40 * np.cos(2 * math.pi * f2 * v + c)
        base += 30 * (u - v)
        channels.append(base)
    img = np.stack(channels, axis=-1)
    small = rng.uniform(-40, 40, size=(max(height // 8, 2), max(width // 8, 2), 3))
    noise = Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.BICUBIC
    )
    noise = noise.filter(ImageFilter.GaussianBlur(radius=2))
    img += np.asarray(noise, dtype=np.float64) - 128
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def asymmetric(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like image whose quadrants differ strongly, so any flip or rotation shows."""
    img = photo(width, height, seed).astype(np.int32) // 2
    img[: height // 2, : width // 2, 0] += 120  # top-left reddish
    img[: height // 2, width // 2 :, 1] += 120  # top-right greenish
    img[height // 2 :, : width // 2, 2] += 120  # bottom-left bluish
    img[height // 3 : height // 2, width // 5 : width // 3] = 250  # an off-centre white patch
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, fmt: str | None = None, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **params)
    return path


def make_config(
    root: Path | str,
    image: dict[str, Any] | None = None,
    source_type: str = "filesystem",
    rank: int = 0,
    world_size: int = 1,
    **top: Any,
) -> dict[str, Any]:
    """A datago configuration for the filesystem source at ``root``."""
    cfg: dict[str, Any] = {
        "source_type": source_type,
        "source_config": {"root_path": str(root), "page_size": 64, "rank": rank, "world_size": world_size},
        "prefetch_buffer_size": 16,
        "samples_buffer_size": 16,
        "concurrency": 2,
        "limit": 0,
    }
    if image is not None:
        cfg["image_config"] = image
    cfg.update(top)
    return cfg


def image_config(size: int = 64, ratio: int = 16, **kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "crop_and_resize": True,
        "default_image_size": size,
        "downsampling_ratio": ratio,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
        "pre_encode_images": False,
    }
    cfg.update(kw)
    return cfg


def load_all(config: dict[str, Any]) -> list[Any]:
    import datago

    with datago.Client(config) as client:
        return list(client)


def ids_of(samples: Iterable[Any]) -> list[str]:
    return [s.id for s in samples]


def expected_geometry(
    w: int, h: int, bucket: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The resize size and crop box the Go side uses for an oriented (w, h) image and a bucket."""
    bw, bh = bucket
    s = max(bw / w, bh / h)
    sw, sh = max(bw, round(w * s)), max(bh, round(h * s))  # half to even, as the Go side
    left, top = (sw - bw) // 2, (sh - bh) // 2
    return (sw, sh), (left, top, left + bw, top + bh)


def closest_distance(w: int, h: int, buckets: Iterable[tuple[int, int]]) -> float:
    return min(abs(math.log(bw / bh) - math.log(w / h)) for bw, bh in buckets)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def write_flat_png(path: Path, width: int, height: int, slow: bool = False) -> Path:
    """A large but tiny-on-disk PNG (horizontal bands), written with zlib directly (fast).

    With ``slow``, the PNG is 16-bit RGBA with the Paeth filter on every row: several times slower to
    decode per pixel than 8-bit RGB without filter.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(6)
    parts = []
    for y in range(height):
        value = (y * 255) // max(height - 1, 1)
        if slow:
            # Paeth-filtered: the first pixel carries the value, the rest repeats its left neighbour.
            row = bytes((value, 0, 255 - value, 0, 128, 0, 255, 255)) + bytes(8 * (width - 1))
            parts.append(comp.compress(b"\x04" + row))
        else:
            parts.append(comp.compress(b"\x00" + bytes((value, 255 - value, 128)) * width))
    parts.append(comp.flush())
    header = struct.pack(">IIBBBBB", width, height, 16 if slow else 8, 6 if slow else 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    data += chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run_python(
    code: str, timeout: float, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter importing datago from python/; kill it after ``timeout``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYTHON_DIR), full_env.get("PYTHONPATH")]))
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=full_env,
        check=False,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_count() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no Threads line in /proc/self/status")
