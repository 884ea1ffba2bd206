"""The resource limits of README's Limits table, per source: ``max_file_bytes`` (filesystem, dataroom,
WebDataset) and ``image_config.max_pixels``. Timeouts are covered by the fault tests of each source."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datago
from support.config import dataroom_config, filesystem_config, image_config, webdataset_config
from support.dataroom_server import DataroomServer
from support.drain import drain
from support.images import photo, save
from support.shards import image_bytes, standard_shard, write_shard

# -- max_file_bytes ----------------------------------------------------------------------------------


def test_filesystem_max_file_bytes_skips_larger_files_before_reading(tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(tmp_path / f"small{i}.png")
    noisy = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "big.png")
    limit = (tmp_path / "big.png").stat().st_size - 1
    # The library's defaults otherwise (no test builder): the limit alone decides.
    config = {
        "source_type": "filesystem",
        "source_config": {"root_path": str(tmp_path)},
        "max_file_bytes": limit,
    }
    got = drain(config)
    assert sorted(Path(i).name for i in got.ids) == ["small0.png", "small1.png", "small2.png"]
    assert got.stats["skipped"] == {"too_large": 1}
    with pytest.raises(datago.ConfigError) as info:
        datago.Client({**config, "max_file_bytes": 0})
    assert info.value.key == "max_file_bytes"


def test_dataroom_max_file_bytes_skips_larger_downloads() -> None:
    """A file over max_file_bytes is skipped as too_large without being kept; the rest arrives."""
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    big, small = io.BytesIO(), io.BytesIO()
    Image.fromarray(noisy).save(big, "PNG")  # ~120 KB
    Image.new("RGB", (20, 20), (10, 200, 30)).save(small, "PNG")  # < 1 KB
    with DataroomServer(seed=3) as srv:
        srv.add_image("big", 200, 200, data=big.getvalue(), ext="png")
        for i in range(3):
            srv.add_image(f"small{i}", 20, 20, data=small.getvalue(), ext="png")
        got = drain(dataroom_config(srv, max_file_bytes=50_000), keep_error=True)
    assert got.error is None
    assert sorted(s.id for s in got.samples) == ["small0", "small1", "small2"]
    assert got.stats["skipped"] == {"too_large": 1}


def test_webdataset_max_file_bytes_bounds_tar_members(tmp_path: Path) -> None:
    """A member over max_file_bytes loses its sample (counted), without reading it into memory."""
    big = image_bytes(300, 300, seed=5, fmt="PNG")
    samples = standard_shard(0, 4) + [("big", {"png": big})]
    shard = write_shard(tmp_path / "s.tar", samples)
    got = drain(webdataset_config(str(shard), max_file_bytes=len(big) - 1))
    assert len(got.ids) == 4 and not any(i.endswith("#big") for i in got.ids)
    assert sum(got.stats["skipped"].values()) == 1
    assert any(i.endswith("#big") for i in got.skipped_ids())


# -- max_pixels --------------------------------------------------------------------------------------


def test_max_pixels_skips_large_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "sizes"
    small = save(root / "small.png", photo(20, 20))
    large = save(root / "large.png", photo(200, 100))
    caplog.set_level(logging.WARNING, logger="datago")
    with datago.Client(filesystem_config(root, image=image_config(max_pixels=10_000))) as client:
        ids = [s.id for s in client]
        stats = client.stats()
    assert ids == [str(small)]
    assert stats["skipped_total"] == 1, stats
    assert str(large) in caplog.text
