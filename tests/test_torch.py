"""datago.torch: the torch datasets over real files, with real DataLoader workers and torchrun ranks."""

from __future__ import annotations

import faulthandler
import gc
import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

import datago
from datago.torch import (
    DatagoIterableDataset,
    DatagoMapDataset,
    batch_to_torch,
    collate_samples,
    sample_to_torch,
)
from support.config import filesystem_config
from support.images import photo, save
from support.torchrun import run_torchrun

HERE = Path(__file__).resolve().parent
SIZE = 64  # bucket size of the tests' crop_and_resize
# (width, height) of the generated files: several clearly different aspect ratios, so several buckets.
SHAPES = [(64, 48), (48, 64), (60, 60), (96, 40), (40, 90)]
COUNT = 60


def image_cfg() -> dict[str, Any]:
    return {"crop_and_resize": True, "default_image_size": SIZE, "downsampling_ratio": 16}


def buckets() -> set[tuple[int, int]]:
    return set(datago.aspect_ratio_buckets(SIZE, 16, 0.5, 2.0))


def config(root: Path, **top: Any) -> dict[str, Any]:
    """A filesystem config over ``root`` that leaves rank and world_size out (the dataset finds them)."""
    cfg = filesystem_config(root, image_cfg(), **top)
    del cfg["source_config"]["rank"], cfg["source_config"]["world_size"]
    return cfg


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """COUNT small JPEGs and PNGs in two folders; (root, their paths as datago ids, sorted)."""
    root = tmp_path_factory.mktemp("torch") / "images"
    paths = []
    for i in range(COUNT):
        w, h = SHAPES[i % len(SHAPES)]
        fmt, ext = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
        paths.append(save(root / f"part{i % 3}" / f"img{i:03d}.{ext}", photo(w, h, seed=i), fmt))
    return root, sorted(str(p) for p in paths)


@pytest.fixture(autouse=True)
def _no_ambient_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rank comes from the environment when the config has none: pytest itself may run under a launcher.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


# With workers, a batch lost between processes fails the test after this many seconds instead of hanging.
WORKER_TIMEOUT_S = 120


def _report_stuck_worker(worker_id: int) -> None:
    """In each DataLoader worker: print its Python stack to stderr if it is still running shortly
    before the loader's timeout, so that a hung worker's report says where it waits."""
    faulthandler.dump_traceback_later(WORKER_TIMEOUT_S - 10, exit=False)


def ids_through(dataset: Any, **loader: Any) -> list[str]:
    out: list[str] = []
    if loader.get("num_workers"):
        loader.setdefault("timeout", WORKER_TIMEOUT_S)
        loader.setdefault("worker_init_fn", _report_stuck_worker)
    for item in DataLoader(dataset, batch_size=None, **loader):
        out.extend(item["ids"] if "ids" in item else [item["id"]])
    return out


# ------------------------------------------------------------------------------------- (a) torchrun


def torchrun(root: Path, out: Path, *args: str) -> list[dict[str, Any]]:
    worker = HERE / "scripts" / "torchrun_worker.py"
    done = run_torchrun(2, worker, f"--root={root}", f"--out={out}", *args, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def assert_split(reports: list[dict[str, Any]], workers: str, expected: list[str]) -> None:
    seen = [report["runs"][workers] for report in reports]
    for ids in seen:
        assert len(ids) == len(set(ids)), "a rank saw a sample twice"
        assert ids, "a rank saw nothing (both ranks believe they are the same one?)"
    assert not set(seen[0]) & set(seen[1]), "the ranks' samples overlap"
    assert sorted(seen[0] + seen[1]) == expected


def test_torchrun_ranks_from_process_group(folder: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, expected = folder
    reports = torchrun(root, tmp_path / "out", "--init", "--num-workers=0,2")
    assert [r["shard"] for r in reports] == [[0, 2], [1, 2]]
    assert reports[0]["all_shards"] == [[0, 2], [1, 2]]
    assert_split(reports, "0", expected)
    assert_split(reports, "2", expected)  # (rank, worker) pairs: 4 shares


def test_torchrun_ranks_from_environment(folder: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, expected = folder
    reports = torchrun(root, tmp_path / "out", "--num-workers=0,2")
    assert [r["shard"] for r in reports] == [[0, 2], [1, 2]]
    assert_split(reports, "0", expected)
    assert_split(reports, "2", expected)


# ------------------------------------------------------------------------------- (b) sharding, workers


def test_shard_sources(folder: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = folder
    assert DatagoIterableDataset(config(root)).shard() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert DatagoIterableDataset(config(root)).shard() == (2, 3)
    explicit = config(root)
    explicit["source_config"].update(rank=0, world_size=1)
    assert DatagoIterableDataset(explicit).shard() == (0, 1)  # the config wins over the environment
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK"):
        DatagoIterableDataset(config(root)).shard()


@pytest.mark.parametrize("workers", [0, 2])
def test_every_file_once(folder: tuple[Path, list[str]], workers: int) -> None:
    root, expected = folder
    ids = ids_through(DatagoIterableDataset(config(root)), num_workers=workers)
    assert sorted(ids) == expected


def test_spawned_workers(folder: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, expected = folder
    dataset = DatagoIterableDataset(config(root))
    assert sorted(ids_through(dataset, num_workers=2, multiprocessing_context="spawn")) == expected
    with pytest.raises(RuntimeError, match="num_workers=0"):  # the flag reached the spawned workers
        dataset.state_dict()
    # A spawned worker has no process group: the rank found in the parent travels with the dataset.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    copy = pickle.loads(pickle.dumps(DatagoIterableDataset(config(root))))
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert copy.shard() == (1, 2)
    assert copy.state_dict() == {}


def test_workers_split_an_explicit_rank(folder: tuple[Path, list[str]]) -> None:
    root, expected = folder
    seen = []
    for rank in range(2):
        cfg = config(root)
        cfg["source_config"].update(rank=rank, world_size=2)
        ids = ids_through(DatagoIterableDataset(cfg), num_workers=2)
        assert len(ids) == len(set(ids))
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert sorted(seen[0] | seen[1]) == expected


# ---------------------------------------------------------------------------------------- (c) tensors


@pytest.mark.parametrize("channels_first", [False, True])
def test_sample_tensors(folder: tuple[Path, list[str]], channels_first: bool) -> None:
    root, expected = folder
    items = list(DataLoader(DatagoIterableDataset(config(root), channels_first), batch_size=None))
    assert sorted(item["id"] for item in items) == expected
    for item in items:
        image = item["image"]
        assert image.dtype == torch.uint8
        if channels_first:
            assert image.shape[0] == 3 and not image.is_contiguous()  # a permuted view
            hwc = image.permute(1, 2, 0)
        else:
            assert image.shape[2] == 3 and image.is_contiguous()
            hwc = image
        assert (hwc.shape[1], hwc.shape[0]) in buckets()
        assert isinstance(item["metadata"], dict)
        w, h = SHAPES[int(Path(item["id"]).stem[3:]) % len(SHAPES)]
        assert tuple(item["original_size"]) == (w, h)
    # Same pixels as the client's arrays.
    with datago.Client(filesystem_config(root, image_cfg())) as client:
        arrays = {s.id: s.array.copy() for s in client}
    for item in items[:5]:
        hwc = item["image"].permute(1, 2, 0) if channels_first else item["image"]
        np.testing.assert_array_equal(hwc.numpy(), arrays[item["id"]])


def test_tensors_are_views_of_the_library_buffers(folder: tuple[Path, list[str]]) -> None:
    root, _ = folder
    with datago.Client(filesystem_config(root, image_cfg(), limit=3)) as client:
        sample = client.get_sample()
        assert sample is not None
        array = sample.array
        item = sample_to_torch(sample)
        chw = sample_to_torch(sample, channels_first=True)["image"]
        assert item["image"].data_ptr() == array.ctypes.data
        assert chw.data_ptr() == array.ctypes.data
        copy = array.copy()
    del sample, array, client
    gc.collect()
    # The tensor alone keeps the sample's buffer alive, after the client is closed.
    np.testing.assert_array_equal(item["image"].numpy(), copy)

    with datago.Client(filesystem_config(root, image_cfg(), batch_size=4)) as client:
        batch = next(iter(client))
        out = batch_to_torch(batch)
        assert out["images"].data_ptr() == batch.array.ctypes.data
        assert batch_to_torch(batch, channels_first=True)["images"].data_ptr() == batch.array.ctypes.data
        copy = batch.array.copy()
    del batch, client
    gc.collect()
    np.testing.assert_array_equal(out["images"].numpy(), copy)


# ---------------------------------------------------------------------------------------- (d) batches


def bucket_of(item: dict[str, Any]) -> tuple[int, int]:
    b, h, w, c = item["images"].shape
    return w, h


def test_batches_through_dataloader(folder: tuple[Path, list[str]]) -> None:
    root, expected = folder
    items = list(DataLoader(DatagoIterableDataset(config(root, batch_size=4)), batch_size=None))
    per_bucket: dict[tuple[int, int], list[str]] = {}
    for item in items:
        images = item["images"]
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[3] == 3
        assert 1 <= images.shape[0] <= 4
        assert len(item["ids"]) == len(item["original_sizes"]) == len(item["metadata"]) == images.shape[0]
        assert bucket_of(item) in buckets()
        per_bucket.setdefault(bucket_of(item), []).extend(item["ids"])
    assert sorted(i for ids in per_bucket.values() for i in ids) == expected
    assert len(per_bucket) >= 3
    # Every bucket has at most one partial batch.
    sizes = Counter(bucket_of(item) for item in items if item["images"].shape[0] < 4)
    assert max(sizes.values(), default=1) == 1

    dropped = list(DataLoader(DatagoIterableDataset(config(root, batch_size=4, drop_last=True)), None))
    kept: dict[tuple[int, int], list[str]] = {}
    for item in dropped:
        assert item["images"].shape[0] == 4
        kept.setdefault(bucket_of(item), []).extend(item["ids"])
    for bucket, ids in per_bucket.items():
        assert len(kept.get(bucket, [])) == len(ids) // 4 * 4
        assert set(kept.get(bucket, [])) <= set(ids)
    assert len({i for ids in kept.values() for i in ids}) == sum(len(ids) for ids in kept.values())

    first = next(iter(DataLoader(DatagoIterableDataset(config(root, batch_size=4), True), None)))
    b, c, h, w = first["images"].shape
    assert c == 3 and (w, h) in buckets()


def test_batches_two_epochs_with_workers(folder: tuple[Path, list[str]]) -> None:
    root, expected = folder
    cfg = config(root, batch_size=4, epochs=2)
    cfg["source_config"].update(random_sampling=True, seed=5)
    counts = Counter(ids_through(DatagoIterableDataset(cfg), num_workers=2))
    assert sorted(counts) == expected
    assert set(counts.values()) == {2}


# ----------------------------------------------------------------------------------------- (e) resume


def take(dataset: DatagoIterableDataset, n: int) -> list[str]:
    out: list[str] = []
    items = iter(DataLoader(dataset, batch_size=None))
    while len(out) < n:  # never fetch one more than asked: it would count as delivered
        item = next(items)
        out.extend(item["ids"] if "ids" in item else [item["id"]])
    return out


@pytest.mark.parametrize(
    ("batch_size", "deterministic", "stops"),
    [(0, True, [0, 1, 7, 31, COUNT]), (0, False, [1, 13, 40]), (4, False, [0, 1, 3, 6])],
)
def test_resume(
    folder: tuple[Path, list[str]], batch_size: int, deterministic: bool, stops: list[int]
) -> None:
    """Stop after k samples (or k batches: the pipeline then holds partial buckets), resume elsewhere."""
    root, expected = folder
    cfg = config(root, batch_size=batch_size, deterministic=deterministic)
    cfg["source_config"].update(random_sampling=True, seed=11)
    for k in stops:
        unit = batch_size or 1
        first_part = DatagoIterableDataset(cfg)
        before = take(first_part, k * unit)
        state = json.loads(json.dumps(first_part.state_dict()))  # JSON-serialisable
        resumed = DatagoIterableDataset(cfg)
        resumed.load_state_dict(state)
        after = ids_through(resumed)
        assert not set(before) & set(after), f"k={k}: delivered twice"
        assert sorted(before + after) == expected, f"k={k}: gap"
        # The state after a complete pass resumes to nothing.
        finished = DatagoIterableDataset(cfg, state=resumed.state_dict())
        assert ids_through(finished) == []


def test_state_with_workers_is_refused(folder: tuple[Path, list[str]]) -> None:
    root, _ = folder
    dataset = DatagoIterableDataset(config(root))
    assert dataset.state_dict() == {}
    ids_through(dataset, num_workers=2)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        dataset.state_dict()
    first = DatagoIterableDataset(config(root))
    take(first, 5)
    resumed = DatagoIterableDataset(config(root), state=first.state_dict())
    # One worker: after a worker's exception torch waits 5 s per worker to join it.
    with pytest.raises(RuntimeError, match="num_workers=0"):
        ids_through(resumed, num_workers=1)


# ------------------------------------------------------------------------------------ (f) map dataset


@pytest.mark.parametrize("workers", [0, 2])
def test_map_dataset_batch_sampler(
    folder: tuple[Path, list[str]], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, expected = folder
    calls: list[int] = []
    get_many = datago.MapDataset.get_many

    def spy(self: Any, indices: Any) -> Any:
        calls.append(len(indices))
        return get_many(self, indices)

    monkeypatch.setattr(datago.MapDataset, "get_many", spy)
    dataset = DatagoMapDataset(filesystem_config(root, image_cfg()))
    assert len(dataset) == COUNT and dataset.ids == expected
    sampler = BatchSampler(RandomSampler(dataset, generator=torch.Generator().manual_seed(3)), 8, False)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_samples,
        num_workers=workers,
        timeout=WORKER_TIMEOUT_S if workers else 0,
    )
    seen: list[int] = []
    for batch in loader:
        images = batch["images"]
        listed = list(images) if isinstance(images, list) else list(images.unbind(0))
        assert len(listed) == len(batch["indices"]) == len(batch["ids"])
        for index, sid, image in zip(batch["indices"], batch["ids"], listed, strict=True):
            assert sid == expected[index]
            assert image.dtype == torch.uint8 and image.shape[2] == 3
            assert (image.shape[1], image.shape[0]) in buckets()
        seen.extend(batch["indices"])
    assert sorted(seen) == list(range(COUNT))
    if workers == 0:  # whole batches went through get_many (the workers' calls happen elsewhere)
        assert sorted(calls) == [4] + [8] * 7
    single = dataset[5]
    assert single["id"] == expected[5] and single["index"] == 5
    dataset.close()


def test_map_dataset_leaves_out_undecodable(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for i in range(5):
        save(root / f"ok{i}.png", photo(40, 30, seed=i), "PNG")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = DatagoMapDataset(filesystem_config(root, image_cfg()), channels_first=True)
    items = dataset.__getitems__(range(len(dataset)))
    assert len(dataset) == 6 and len(items) == 5
    assert all(Path(item["id"]).name.startswith("ok") for item in items)
    batch = collate_samples(items)
    assert isinstance(batch["images"], torch.Tensor) and batch["images"].shape[:2] == (5, 3)
    dataset.close()
