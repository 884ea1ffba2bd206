"""Object storage, Google Cloud Storage: gs://bucket/key against fake-gcs-server (on 127.0.0.1, started here)
through STORAGE_EMULATOR_HOST and through storage.endpoint_url; the same data on local disk as the
reference; a missing bucket; an object deleted after the listing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import datago
from support.config import filesystem_config, image_config, webdataset_config
from support.drain import drain
from support.gcs_server import FakeGCS
from support.shards import image_bytes, shard_bytes, standard_shard

N_IMAGES = 40


def files() -> dict[str, bytes]:
    out = {
        f"imgs/p{i % 3}/img{i:03d}.jpg": image_bytes(24 + i % 5 * 4, 20 + i % 3 * 4, i)
        for i in range(N_IMAGES)
    }
    out["imgs/notes.txt"] = b"not an image"
    for s in range(4):
        out[f"shards/train-{s:03d}.tar"] = shard_bytes(standard_shard(s, 6))
    return out


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGCS, Path]]:
    root = tmp_path_factory.mktemp("gcs")
    for k, v in files().items():
        (root / "data" / k).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / k).write_bytes(v)
    srv = FakeGCS(root)
    yield srv, root / "data"
    srv.stop()


@pytest.fixture
def gcs_env(gcs: tuple[FakeGCS, Path], monkeypatch: pytest.MonkeyPatch) -> FakeGCS:
    srv, _ = gcs
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return srv


def image_urls() -> list[str]:
    return sorted(f"gs://data/{k}" for k in files() if k.endswith(".jpg"))


def test_prefix_once_each_ranks_and_pixels(gcs_env: FakeGCS, gcs: tuple[FakeGCS, Path]) -> None:
    _, local = gcs
    img = image_config(size=32, ratio=8)
    got = drain(datago.Client(filesystem_config("gs://data/imgs", img))).by_id()
    assert sorted(got) == image_urls()
    for path, sample in drain(datago.Client(filesystem_config(local / "imgs", img))).by_id().items():
        assert np.array_equal(
            sample.array, got["gs://data/" + Path(path).relative_to(local).as_posix()].array
        )
    union: Counter[str] = Counter()
    for rank in range(2):
        remote = drain(datago.Client(filesystem_config("gs://data/imgs/", rank=rank, world_size=2)))
        disk = drain(datago.Client(filesystem_config(local / "imgs", rank=rank, world_size=2)))
        rel = sorted(i.removeprefix("gs://data/imgs/") for i in remote.ids)
        assert rel == sorted(Path(i).relative_to(local / "imgs").as_posix() for i in disk.ids)
        union.update(remote.ids)
    assert sorted(union) == image_urls() and set(union.values()) == {1}


def test_shards_map_dataset_resume_and_endpoint_key(
    gcs_env: FakeGCS, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = sorted(f"gs://data/shards/train-{s:03d}.tar#s{s:02d}_{i:03d}" for s in range(4) for i in range(6))
    for url in ("gs://data/shards/", "gs://data/shards/train-{000..003}.tar"):
        d = drain(datago.Client(webdataset_config(url)))
        assert d.error is None and not d.skips and sorted(d.ids) == want
    cfg = filesystem_config("gs://data/imgs", random_sampling=True, seed=2, concurrency=1)
    with datago.Client(cfg) as first:
        before = [next(first).id for _ in range(11)]
        state = first.state_dict()
    with datago.Client(cfg, state=state) as second:
        after = [s.id for s in second]
    assert before + after == drain(datago.Client(cfg)).ids
    # Without the emulator variable: the endpoint key, anonymous (no credential lookup).
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    storage = {"endpoint_url": gcs_env.endpoint, "anonymous": True}
    with datago.MapDataset(filesystem_config("gs://data/imgs", storage=storage)) as ds:
        assert ds.ids == image_urls() and ds[4].id == image_urls()[4]


def test_missing_bucket_empty_prefix_and_deleted_object(gcs_env: FakeGCS) -> None:
    for url, msg in (("gs://nobucket/imgs", "nobucket"), ("gs://data/nothing", "no object under")):
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(filesystem_config(url))
        assert msg in str(info.value) and info.value.key == "source_config.root_path", str(info.value)
    with datago.MapDataset(filesystem_config("gs://data/imgs")) as ds:
        name = image_urls()[2].removeprefix("gs://data/")
        gcs_env.delete("data", name)
        try:
            got = ds.get_many([1, 2, 3])
        finally:
            gcs_env.put("data", name, files()[name])
        assert got[0] is not None and got[1] is None and got[2] is not None
        assert [(r.id, r.reason) for r in ds.skipped()] == [(image_urls()[2], "not_found")]


def test_faults_every_sample_once(gcs_env: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.s3_server import FaultProxy

    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    proxy = FaultProxy(
        gcs_env.endpoint, plan=["ok", "cut", "ok", "slowdown", "reset", "ok", "throttle", "cut"]
    )
    storage = {"endpoint_url": proxy.endpoint, "anonymous": True}
    try:
        images = drain(
            datago.Client(filesystem_config("gs://data/imgs", storage=storage, concurrency=3)), timeout=120
        )
        shards = drain(
            datago.Client(webdataset_config("gs://data/shards/", storage=storage, max_retries=8)), timeout=120
        )
    finally:
        proxy.stop()
    assert sorted(images.ids) == image_urls() and not images.skips
    assert len(shards.ids) == len(set(shards.ids)) == 24 and not shards.skips
    assert proxy.counts.get("cut", 0) >= 4 and proxy.counts.get("reset", 0) >= 2, proxy.counts
