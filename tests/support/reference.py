"""What datago must deliver, computed independently of it: bucket geometry and picture quality."""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

import numpy as np


def expected_geometry(
    w: int, h: int, bucket: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The resize size and crop box the Go side uses for an oriented (w, h) image and a bucket."""
    bw, bh = bucket
    s = max(bw / w, bh / h)
    sw, sh = max(bw, round(w * s)), max(bh, round(h * s))  # half to even, as the Go side
    left, top = (sw - bw) // 2, (sh - bh) // 2
    return (sw, sh), (left, top, left + bw, top + bh)


def mask_box_placement(
    width: int, height: int, box: tuple[int, int, int, int], bucket: tuple[int, int], mask: np.ndarray
) -> tuple[tuple[float, float, float, float], tuple[int, int, int, int], tuple[int, int]]:
    """Where the crop to ``bucket`` puts rectangle ``box`` of a (width, height) original (``want``,
    unclamped), where ``mask`` has it (``got``, exclusive ends) and the resize size: one copy for the
    mask-alignment checks of test_dataroom.py and test_mask_alignment.py."""
    (sw, sh), (left, top, _, _) = expected_geometry(width, height, bucket)
    x0, y0, x1, y1 = box
    want = (
        x0 * sw / width - left,
        y0 * sh / height - top,
        x1 * sw / width - left,
        y1 * sh / height - top,
    )
    ys, xs = np.nonzero(mask)
    got = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return want, got, (sw, sh)


def closest_bucket(w: int, h: int, buckets: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The bucket of a (w, h) image: the smallest plain difference of width/height ratios, the smaller
    ratio on an exact tie (the rule of the original datago and of Photoroom's Rust loader), computed
    with exact fractions."""
    best: tuple[int, int] | None = None
    best_key: tuple[Fraction, Fraction] | None = None
    for bw, bh in buckets:
        ratio = Fraction(bw, bh)
        key = (abs(ratio - Fraction(w, h)), ratio)
        if best_key is None or key < best_key:
            best, best_key = (bw, bh), key
    assert best is not None, "no buckets"
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
