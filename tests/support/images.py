"""Generated images: photo-like arrays (smooth, so resampling errors stay small) and files made from them."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter


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


def smooth_alpha(width: int, height: int) -> np.ndarray:
    """An alpha that varies smoothly from 40 to 255 (never 0, so colours stay comparable)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (40 + 215 * (xx + yy) / (width + height - 2)).round().astype(np.uint8)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG of an HxW (grey), HxWx2, HxWx3 or HxWx4 uint16 array (Pillow writes only grey)."""
    h, w = array.shape[:2]
    bands = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[bands]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
