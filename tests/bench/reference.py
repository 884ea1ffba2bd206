"""Shared helpers for the datago benchmark and demo.

- Paths (repository root, the default cache directory) and making ``import datago`` work when the scripts
  are run straight from a checkout (``python tests/bench/bench.py``).
- A plain-Python (Pillow) reference of datago's crop_and_resize geometry, used by the baseline loader and
  by the parity check: bucket = the one whose |log(bw/bh) - log(w/h)| is smallest; s = max(W/w, H/h);
  resize to (max(W, round(w*s)), max(H, round(h*s))) with Lanczos; centre crop W x H.
- The same with Pillow's JPEG DCT scaling (``Image.draft``): decode at the smallest 1/2, 1/4 or 1/8 scale
  that still covers the resized size, then the same Lanczos resize and crop (the "torch-draft" baseline).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent.parent
PYTHON_DIR = REPO_ROOT / "python"
LIBRARY_PATH = PYTHON_DIR / "datago" / "libdatago.so"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# The benches' buckets (the 512 ones) and the image_config every datago loader of the benches uses.
BUCKET_ARGS: dict[str, Any] = {
    "default_image_size": 512,
    "downsampling_ratio": 16,
    "min_aspect_ratio": 0.5,
    "max_aspect_ratio": 2.0,
}
IMAGE_CONFIG: dict[str, Any] = {"crop_and_resize": True, **BUCKET_ARGS}

Bucket = tuple[int, int]


def default_cache_dir() -> Path:
    """``$DATAGO_BENCH_CACHE`` when set, else ``<repo>/.cache/bench``."""
    env = os.environ.get("DATAGO_BENCH_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "bench"


def add_python_path() -> None:
    """Unless ``datago`` is importable already (PYTHONPATH=python, an installed wheel), put the in-tree
    ``python/`` directory first on sys.path; exported through PYTHONPATH to subprocesses too."""
    path = str(PYTHON_DIR)
    if importlib.util.find_spec("datago") is None and path not in sys.path:
        sys.path.insert(0, path)
    if path not in sys.path:
        return
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])


def datago_problem() -> str | None:
    """None when ``import datago`` works, else a one-line explanation."""
    add_python_path()
    try:
        import datago

        datago.library_version()  # importing does not load libdatago.so: this does
    except Exception as exc:  # ImportError, datago.LibraryLoadError, cffi errors, ...
        hint = "" if LIBRARY_PATH.exists() else f" ({LIBRARY_PATH} does not exist: run `python3 build.py`)"
        return f"cannot import datago: {type(exc).__name__}: {exc}{hint}"
    return None


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def fallback_buckets(
    default_image_size: int, downsampling_ratio: int, min_aspect_ratio: float, max_aspect_ratio: float
) -> list[Bucket]:
    """Aspect-ratio buckets of about default_image_size**2 pixels, sides multiple of downsampling_ratio.

    Only used when datago cannot be imported (for example ``bench.py --loaders pil``); otherwise the
    buckets come from ``datago.aspect_ratio_buckets`` so that both loaders do exactly the same work.
    """
    step = downsampling_ratio
    area = default_image_size * default_image_size
    buckets: list[Bucket] = []
    width = step
    while width <= default_image_size * 4:
        height = max(step, round(area / width / step) * step)
        if min_aspect_ratio <= width / height <= max_aspect_ratio and (width, height) not in buckets:
            buckets.append((width, height))
        width += step
    return buckets


def get_buckets(
    default_image_size: int, downsampling_ratio: int, min_aspect_ratio: float, max_aspect_ratio: float
) -> tuple[list[Bucket], str]:
    """Buckets and where they came from ("datago" or "fallback")."""
    if datago_problem() is None:
        import datago

        raw = datago.aspect_ratio_buckets(
            default_image_size, downsampling_ratio, min_aspect_ratio, max_aspect_ratio
        )
        return [(int(w), int(h)) for w, h in raw], "datago"
    return fallback_buckets(
        default_image_size, downsampling_ratio, min_aspect_ratio, max_aspect_ratio
    ), "fallback"


def go_round(x: float) -> int:
    """Round half away from zero, like Go's math.Round (Python's round() rounds half to even)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def pick_bucket(width: int, height: int, buckets: Sequence[Bucket]) -> Bucket:
    """The bucket whose log aspect ratio is closest to the image's (first one wins on ties)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - target))


def resize_geometry(
    width: int, height: int, bucket: Bucket
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(resized size, centre-crop box) for an image of width x height going to ``bucket``."""
    bw, bh = bucket
    scale = max(bw / width, bh / height)
    rw, rh = max(bw, go_round(width * scale)), max(bh, go_round(height * scale))
    left, top = (rw - bw) // 2, (rh - bh) // 2
    return (rw, rh), (left, top, left + bw, top + bh)


def load_rgb(path: str | Path, exif: bool = True) -> Image.Image:
    """Decode, apply the EXIF orientation (unless ``exif`` is false), convert to RGB: what datago does
    before processing."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        # exif_transpose returns a new image (a copy when there is nothing to do); without it, copy: a
        # closed image cannot be used.
        oriented = ImageOps.exif_transpose(im) if exif else im
        if oriented.mode != "RGB":
            return oriented.convert("RGB")
        return oriented if exif else oriented.copy()


def crop_and_resize(im: Image.Image, buckets: Sequence[Bucket]) -> Image.Image:
    """Pillow reference of datago's crop_and_resize (Lanczos resize, then centre crop)."""
    from PIL import Image

    bucket = pick_bucket(im.width, im.height, buckets)
    size, box = resize_geometry(im.width, im.height, bucket)
    resized = im.resize(size, Image.Resampling.LANCZOS) if size != im.size else im
    return resized.crop(box) if box != (0, 0, *size) else resized


def reference_array(
    path: str | Path, buckets: Sequence[Bucket] | None, exif: bool = True
) -> npt.NDArray[np.uint8]:
    """The HxWx3 uint8 array datago should deliver for ``path`` (no processing when buckets is None).

    ``exif=False``: the same without applying the EXIF orientation (what a loader that ignores it gives).
    """
    import numpy as np

    im = load_rgb(path, exif=exif)
    if buckets:
        im = crop_and_resize(im, buckets)
    return np.asarray(im)


EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def draft_array(path: str | Path, buckets: Sequence[Bucket] | None) -> npt.NDArray[np.uint8]:
    """Like ``reference_array``, with Pillow's JPEG DCT scaling before the resize.

    The bucket and the resized size come from the full (oriented) size, as in the reference;
    ``Image.draft("RGB", size)`` then lets libjpeg decode at the smallest scale (1/1, 1/2, 1/4, 1/8) whose
    result still covers that size (in stored orientation), and the Lanczos resize starts from it.
    No-op for non-JPEG files and without processing.
    """
    import numpy as np
    from PIL import Image, ImageOps

    if not buckets:
        return reference_array(path, None)
    with Image.open(path) as im:
        orientation = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
        transposed = orientation in TRANSPOSING_ORIENTATIONS
        width, height = (im.height, im.width) if transposed else im.size
        bucket = pick_bucket(width, height, buckets)
        size, box = resize_geometry(width, height, bucket)
        im.draft("RGB", (size[1], size[0]) if transposed else size)
        im.load()
        oriented = ImageOps.exif_transpose(im)
        rgb = oriented.convert("RGB") if oriented.mode != "RGB" else oriented
        resized = rgb.resize(size, Image.Resampling.LANCZOS) if rgb.size != size else rgb
        return np.asarray(resized.crop(box) if box != (0, 0, *size) else resized)
