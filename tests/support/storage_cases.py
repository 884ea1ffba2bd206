"""What the Azure and GCS storage tests load into their emulators and the checks they run alike against
them (one copy: the two backends differ only in their URL scheme, credentials and request shapes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import datago
from support.config import filesystem_config, image_config, webdataset_config
from support.drain import drain
from support.s3_server import FaultProxy
from support.shards import image_bytes, shard_bytes, standard_shard

N_IMAGES = 40


def store_files() -> dict[str, bytes]:
    """The objects of "data" in each store: N_IMAGES images in three folders, a non-image, 4 shards of 6."""
    out = {
        f"imgs/p{i % 3}/img{i:03d}.jpg": image_bytes(24 + i % 5 * 4, 20 + i % 3 * 4, i)
        for i in range(N_IMAGES)
    }
    out["imgs/notes.txt"] = b"not an image"
    for s in range(4):
        out[f"shards/train-{s:03d}.tar"] = shard_bytes(standard_shard(s, 6))
    return out


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` under ``root`` (their keys are paths relative to it): a store's data on local disk."""
    for k, v in files.items():
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        (root / k).write_bytes(v)


def image_urls(base: str) -> list[str]:
    """The image objects' URLs under ``base`` (``az://data``, ``gs://data``), sorted."""
    return sorted(f"{base}/{k}" for k in store_files() if k.endswith(".jpg"))


def check_prefix_once_each_ranks_and_pixels(base: str, local: Path) -> None:
    """The image prefix under ``base`` against the same files in ``local``: every object once, the same
    pixels, and ranks that split it as they split the local folder (shared so both backends assert alike)."""
    img = image_config(size=32, ratio=8)
    got = drain(datago.Client(filesystem_config(f"{base}/imgs", img))).by_id()
    assert sorted(got) == image_urls(base)
    for path, sample in drain(datago.Client(filesystem_config(local / "imgs", img))).by_id().items():
        assert np.array_equal(sample.array, got[f"{base}/" + Path(path).relative_to(local).as_posix()].array)
    union: Counter[str] = Counter()
    for rank in range(2):
        remote = drain(datago.Client(filesystem_config(f"{base}/imgs/", rank=rank, world_size=2)))
        disk = drain(datago.Client(filesystem_config(local / "imgs", rank=rank, world_size=2)))
        rel = sorted(i.removeprefix(f"{base}/imgs/") for i in remote.ids)
        assert rel == sorted(Path(i).relative_to(local / "imgs").as_posix() for i in disk.ids)
        union.update(remote.ids)
    assert sorted(union) == image_urls(base) and set(union.values()) == {1}


def check_shards_and_resume(base: str) -> None:
    """The shards under ``base``, as a prefix and as a brace range: every sample once; a shuffled read of the
    image prefix resumed from a state after 11 samples goes on as the uninterrupted read (shared so both
    backends assert alike)."""
    want = sorted(f"{base}/shards/train-{s:03d}.tar#s{s:02d}_{i:03d}" for s in range(4) for i in range(6))
    for url in (f"{base}/shards/", f"{base}/shards/train-{{000..003}}.tar"):
        d = drain(datago.Client(webdataset_config(url)))
        assert d.error is None and not d.skips and sorted(d.ids) == want
    cfg = filesystem_config(f"{base}/imgs", random_sampling=True, seed=2, concurrency=1)
    with datago.Client(cfg) as first:
        before = [next(first).id for _ in range(11)]
        state = first.state_dict()
    with datago.Client(cfg, state=state) as second:
        after = [s.id for s in second]
    assert before + after == drain(datago.Client(cfg)).ids


def check_faults_every_sample_once(base: str, proxy: FaultProxy, storage: dict[str, Any]) -> None:
    """Images and shards under ``base`` read through ``proxy`` (a fault plan of cuts and resets): every
    sample once, nothing skipped; stops the proxy (shared so both backends assert alike)."""
    try:
        images = drain(
            datago.Client(filesystem_config(f"{base}/imgs", storage=storage, concurrency=3)), timeout=120
        )
        shards = drain(
            datago.Client(webdataset_config(f"{base}/shards/", storage=storage, max_retries=8)), timeout=120
        )
    finally:
        proxy.stop()
    assert sorted(images.ids) == image_urls(base) and not images.skips
    assert len(shards.ids) == len(set(shards.ids)) == 24 and not shards.skips
    assert proxy.counts.get("cut", 0) >= 4 and proxy.counts.get("reset", 0) >= 2, proxy.counts


def check_retry_after(
    base: str, proxy: FaultProxy, storage: dict[str, Any], object_marker: str, listing_marker: str
) -> None:
    """The shards under ``base`` read through ``proxy`` (503 with Retry-After: 2 once per target): the 2 s
    are waited, nothing lost or doubled; ``object_marker`` and ``listing_marker`` pick out the backend's
    object reads and listing pages among the targets; stops the proxy (shared so both assert alike)."""
    try:
        d = drain(
            datago.Client(webdataset_config(f"{base}/shards/", storage=storage, concurrent_downloads=4)),
            timeout=120,
        )
    finally:
        proxy.stop()
    assert d.error is None and not d.skips and len(d.ids) == len(set(d.ids)) == 24
    gaps = proxy.retry_gaps()
    assert len([t for t in gaps if object_marker in t]) == 4, gaps  # every shard refused once, then read
    assert any(listing_marker in t for t in gaps), gaps  # the listing too
    assert min(gaps.values()) >= 1.9 and max(gaps.values()) < 10, gaps
