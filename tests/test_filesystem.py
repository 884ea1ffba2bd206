"""The filesystem source: every image exactly once, limit, ranks, threads, the original snippet, the end."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datago
from support.config import filesystem_config
from support.drain import drain


def test_every_file_exactly_once(image_tree: tuple[Path, list[Path]]) -> None:
    root, expected = image_tree
    samples = drain(filesystem_config(root)).samples
    ids = [s.id for s in samples]
    assert Counter(ids) == Counter(str(p) for p in expected)
    for s in samples:
        with Image.open(s.id) as ref:
            assert s.original_size == ref.size
            assert s.size == ref.size
        assert s.array.shape == (ref.size[1], ref.size[0], 3)
        assert s.image.mode == "RGB"


def test_limit(photo_dir) -> None:
    root, paths = photo_dir(30)
    samples = drain(filesystem_config(root, limit=7)).samples
    ids = [s.id for s in samples]
    assert len(ids) == 7
    assert len(set(ids)) == 7
    assert set(ids) <= {str(p) for p in paths}


def test_ranks_disjoint_and_complete(photo_dir) -> None:
    root, paths = photo_dir(40)
    per_rank = [
        set(s.id for s in drain(filesystem_config(root, rank=r, world_size=3)).samples) for r in range(3)
    ]
    assert sum(len(r) for r in per_rank) == len(paths)
    assert set().union(*per_rank) == {str(p) for p in paths}
    assert all(per_rank), "with 40 files every rank should get some"
    # Dispatch is stable: the same rank gets the same files again.
    assert {s.id for s in drain(filesystem_config(root, rank=1, world_size=3)).samples} == per_rank[1]


def test_four_threads_every_file_once(photo_dir) -> None:
    root, paths = photo_dir(300, size=(16, 16))
    results: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    with datago.Client(filesystem_config(root, concurrency=2)) as client:
        barrier = threading.Barrier(4)

        def worker(out: list[str]) -> None:
            try:
                barrier.wait()
                while (sample := client.get_sample(timeout=30)) is not None:
                    out.append(sample.id)
                    assert sample.array.shape == (16, 16, 3)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(r,)) for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    all_ids = [i for r in results for i in r]
    assert Counter(all_ids) == Counter(str(p) for p in paths)
    assert sum(1 for r in results if r) >= 2, "the samples should be spread over several threads"


@pytest.mark.parametrize("source_type", ["filesystem", "file"])
def test_original_snippet(photo_dir, source_type: str) -> None:
    root, paths = photo_dir(12)

    # The original datago snippet, verbatim apart from the configuration.
    from datago import datago

    config = {
        "source_type": source_type,
        "source_config": {"root_path": str(root), "page_size": 512, "rank": 0, "world_size": 1},
        "image_config": {
            "crop_and_resize": True,
            "default_image_size": 64,
            "downsampling_ratio": 16,
            "min_aspect_ratio": 0.5,
            "max_aspect_ratio": 2.0,
            "pre_encode_images": False,
        },
        "prefetch_buffer_size": 64,
        "samples_buffer_size": 128,
        "limit": 10,
    }

    client = datago.GetClientFromJSON(json.dumps(config))
    client.Start()

    seen = []
    for _ in range(10):
        sample = client.GetSample()
        seen.append(sample.ID)
        assert isinstance(sample.Image, Image.Image)
        assert sample.Image.mode == "RGB"
        assert np.asarray(sample.Image).shape[2] == 3
    client.Stop()

    assert len(set(seen)) == 10
    assert set(seen) <= {str(p) for p in paths}
    assert datago.SourceTypeFileSystem == "filesystem"
    assert datago.SourceTypeDB == "db"


def test_get_sample_returns_none_after_end(photo_dir) -> None:
    root, _ = photo_dir(3)
    with datago.Client(filesystem_config(root)) as client:
        got = [client.get_sample(timeout=30) for _ in range(3)]
        assert all(s is not None for s in got)
        assert client.get_sample(timeout=30) is None
        assert client.get_sample(timeout=30) is None
        stats = client.stats()
    print(json.dumps(stats, indent=1))
    assert stats["served"] == 3


def test_iteration_starts_client_and_close_is_idempotent(photo_dir) -> None:
    root, paths = photo_dir(5)
    client = datago.Client.from_json(json.dumps(filesystem_config(root)))
    assert len(list(client)) == len(paths)
    client.stop()
    client.stop()
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(datago.DatagoError, match="closed"):
        client.get_sample()
