"""WebDataset shards for the tests: tar files of samples ``<key>.<suffix>``, written with tarfile."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from PIL import Image

from .images import photo

Members = dict[str, bytes]

_IMAGES: dict[tuple[int, int, int, str], bytes] = {}


def image_bytes(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    key = (width, height, seed % 4, fmt)  # a few distinct images, reused (generating them is the slow part)
    if key not in _IMAGES:
        buf = io.BytesIO()
        Image.fromarray(photo(width, height, seed=seed % 4)).save(buf, format=fmt)
        _IMAGES[key] = buf.getvalue()
    return _IMAGES[key]


def sample_members(shard: int, i: int) -> tuple[str, Members]:
    key = f"s{shard:02d}_{i:03d}"
    w, h = 20 + (i % 5) * 4, 16 + (i % 3) * 4
    return key, {
        "jpg": image_bytes(w, h, i),
        "txt": f"caption of {key} ü".encode(),
        "cls": str(i % 7).encode(),
        "json": json.dumps({"i": i, "shard": shard, "size": [w, h]}).encode(),
    }


def write_shard(path: Path, samples: list[tuple[str, Members]], compress: bool = False) -> Path:
    """A WebDataset shard written with tarfile: members ``<key>.<suffix>`` in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if compress else "w") as tf:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mtime = len(data), 1_700_000_000
                tf.addfile(info, io.BytesIO(data))
    return path


def shard_bytes(samples: list[tuple[str, Members]], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tf:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def standard_shard(shard: int, n: int) -> list[tuple[str, Members]]:
    return [sample_members(shard, i) for i in range(n)]
