"""Configurations for the tests: one builder, small buffers and two workers unless a test says otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

# The keys of the configuration's top level; every other keyword of config() goes into source_config.
TOP_LEVEL_KEYS = frozenset(
    {
        "prefetch_buffer_size",
        "samples_buffer_size",
        "concurrency",
        "limit",
        "max_file_bytes",
        "epochs",
        "deterministic",
        "batch_size",
        "drop_last",
        "resume_state",
        "equal_steps",
    }
)

# Per source: the source_config the tests start from (small pages, few retries, short timeouts).
SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "filesystem": {"page_size": 64, "rank": 0, "world_size": 1},
    "db": {"page_size": 5, "max_retries": 3, "timeout_s": 2.0},
    "webdataset": {"concurrent_downloads": 2, "timeout_s": 10},
}


def config(source_type: str, image: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A datago configuration: keywords naming a top-level key (``TOP_LEVEL_KEYS``) go there, the others
    into ``source_config`` over the source's test defaults; ``image`` becomes ``image_config``."""
    canonical = {"file": "filesystem", "wds": "webdataset"}.get(source_type.lower(), source_type.lower())
    source = dict(SOURCE_DEFAULTS.get(canonical, {}))
    top: dict[str, Any] = {"prefetch_buffer_size": 16, "samples_buffer_size": 16, "concurrency": 2}
    for key, value in keys.items():
        (top if key in TOP_LEVEL_KEYS else source)[key] = value
    cfg: dict[str, Any] = {"source_type": source_type, "source_config": source, **top}
    if image is not None:
        cfg["image_config"] = image
    return cfg


def filesystem_config(root: Path | str, image: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """The filesystem source over the folder ``root`` (``source_type`` may name it "file")."""
    return config(keys.pop("source_type", "filesystem"), image, **{"root_path": str(root), **keys})


class _Dataroom(Protocol):
    base_url: str
    token: str


def dataroom_config(server: _Dataroom, image: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """The dataroom source ("db") against a test server (support.dataroom_server.DataroomServer); keys
    may override its URL and key."""
    return config("db", image, **{"api_url": server.base_url, "api_key": server.token, **keys})


def webdataset_config(url: Any, image: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """The WebDataset source over ``url``: a shard path or URL, a brace pattern, or a list of them."""
    return config("webdataset", image, url=url, **keys)


def image_config(size: int = 64, ratio: int = 16, **kw: Any) -> dict[str, Any]:
    """crop_and_resize to the buckets of ``size`` and ``ratio``, aspect ratios 0.5 to 2, raw pixels."""
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
