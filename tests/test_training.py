"""Training integration through the Python API: batches, seeded order, exact resume, map access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago

SIZES = [(64, 32), (32, 64), (48, 48)]


def make_folder(root: Path, n: int) -> list[str]:
    """n PNGs of three aspect ratios (three buckets at 64 px); a distinct grey level per file."""
    paths = []
    for i in range(n):
        p = root / f"{i % 3}" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", SIZES[i % 3], (i, 255 - i, i // 2)).save(p)
        paths.append(str(p))
    return sorted(paths)


def config(root: Path, **top: Any) -> dict[str, Any]:
    source = {"root_path": str(root), **top.pop("source", {})}
    return {
        "source_type": "filesystem",
        "source_config": source,
        "image_config": {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16},
        "concurrency": 2,
        **top,
    }


def test_batches_stack_one_bucket_without_copies(tmp_path: Path) -> None:
    files = make_folder(tmp_path, 31)
    seen: list[str] = []
    with datago.Client(config(tmp_path, batch_size=4)) as client:
        for batch in client:
            assert isinstance(batch, datago.Batch)
            array = batch.array
            assert array.dtype == np.uint8 and array.shape[0] == len(batch) <= 4 and array.shape[3] == 3
            assert array.flags["C_CONTIGUOUS"] and not array.flags["OWNDATA"]
            for k, (path, size) in enumerate(zip(batch.ids, batch.original_sizes, strict=True)):
                assert size == SIZES[int(Path(path).parent.name)]
                # Each image of the stack is its own file's (a uniform colour survives the resize).
                i = int(Path(path).stem[3:])
                assert np.abs(array[k].astype(int) - [i, 255 - i, i // 2]).max() <= 1
            seen += batch.ids
        assert client.stats()["batches"] == 9  # 11, 10 and 10 per bucket: 3 + 3 + 3 batches
    assert sorted(seen) == files


def test_drop_last_and_sample_api_errors(tmp_path: Path) -> None:
    make_folder(tmp_path, 31)
    with datago.Client(config(tmp_path, batch_size=4, drop_last=True)) as client:
        assert sum(len(b) for b in client) == 24  # 2 full batches per bucket
        assert client.stats()["dropped_last"] == 7
        with pytest.raises(datago.DatagoError, match="batch_size is set"):
            client.get_sample()
    with pytest.raises(datago.ConfigError, match="batch_size"):
        datago.Client({**config(tmp_path, batch_size=4), "image_config": {}})


def ids_in_order(cfg: dict[str, Any], state: dict[str, Any] | None = None, n: int | None = None) -> list[str]:
    out: list[str] = []
    with datago.Client(cfg, state=state) as client:
        for sample in client:
            out.append(sample.id)
            if n is not None and len(out) == n:
                break
    return out


def test_seeded_deterministic_order(tmp_path: Path) -> None:
    files = make_folder(tmp_path, 30)
    cfg = config(
        tmp_path, concurrency=3, deterministic=True, epochs=2, source={"random_sampling": True, "seed": 5}
    )
    a, b = ids_in_order(cfg), ids_in_order(cfg)
    other = ids_in_order({**cfg, "source_config": {**cfg["source_config"], "seed": 6}})
    assert a == b and a != other and len(a) == 60
    assert sorted(a[:30]) == files and sorted(a[30:]) == files and a[:30] != a[30:]


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("batch_size", [0, 4])
def test_exact_resume(tmp_path: Path, world: int, batch_size: int) -> None:
    files = make_folder(tmp_path, 30)
    for k in (0, 3, 7, 14):  # with batches of 4, 3, 7 and 14 stop mid-batch
        union: list[str] = []
        for rank in range(world):
            cfg = config(
                tmp_path,
                batch_size=batch_size,
                source={"rank": rank, "world_size": world, "random_sampling": True, "seed": 1},
            )
            with datago.Client(cfg) as first:
                before: list[str] = []
                for item in first:
                    before += item.ids if batch_size else [item.id]
                    if len(before) >= k:
                        break
                state = json.loads(json.dumps(first.state_dict()))  # it must survive JSON
            after: list[str] = []
            with datago.Client(cfg, state=state) as second:
                for item in second:
                    after += item.ids if batch_size else [item.id]
            union += before + after
        assert sorted(union) == files, f"stop after {k}"


def test_state_survives_close_and_bad_states_name_the_key(tmp_path: Path) -> None:
    make_folder(tmp_path, 6)
    client = datago.Client(config(tmp_path))
    next(client)
    client.close()
    assert client.state_dict()["version"] == 1
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(config(tmp_path), state={"version": 1, "epoch": -1, "done": []})
    assert info.value.key == "resume_state.epoch"


def test_map_dataset(tmp_path: Path) -> None:
    files = make_folder(tmp_path, 12)
    (tmp_path / "zz.png").write_bytes(b"not a png")
    ds = datago.MapDataset(config(tmp_path, source={"rank": 1, "world_size": 2}))
    assert len(ds) == 13 and ds.ids[:12] == files
    sample = ds[4]
    assert sample.id == files[4] and sample.array.shape[2] == 3
    got = ds.get_many([11, 0, 0, -1, 5])
    assert [s.id if s else None for s in got] == [files[11], files[0], files[0], None, files[5]]
    assert ds.stats["skipped"] == {"decode_error": 1}
    with pytest.raises(datago.DatagoError, match="zz.png"):
        ds[12]
    with pytest.raises(IndexError):
        ds.get_many([13])
    ds.close()
    assert got[0] is not None and got[0].array.shape[2] == 3  # samples outlive the dataset
    with pytest.raises(datago.ConfigError, match="source_type"):
        (tmp_path / "x.tar").write_bytes(b"")
        datago.MapDataset({"source_type": "webdataset", "source_config": {"url": str(tmp_path / "x.tar")}})
