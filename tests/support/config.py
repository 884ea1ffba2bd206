"""Configurations for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
