"""The WebDataset source: tar shards from disk and from a real HTTP server on 127.0.0.1 (tests/wds_server.py),
grouping checked against the ``webdataset`` package, rank split, shuffle, and injected faults."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import datago
from support.config import webdataset_config
from support.drain import drain
from support.shards import image_bytes, shard_bytes, standard_shard, write_shard
from support.wds_server import Fault, ShardServer


def expected_ids(urls: list[str], n: int) -> Counter[str]:
    return Counter(f"{url}#s{s:02d}_{i:03d}" for s, url in enumerate(urls) for i in range(n))


# ------------------------------------------------------------------------------------------- grouping


def tricky_shards(tmp_path: Path) -> list[Path]:
    """Shards exercising the grouping rules: directories in names, upper-case and multi-dot suffixes,
    extras, metadata members, a sample without image, a directory entry."""
    a = tmp_path / "a.tar"
    with tarfile.open(a, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        dir_info = tarfile.TarInfo("train/sub")
        dir_info.type = tarfile.DIRTYPE
        tf.addfile(dir_info)
        add("__index__", b"not a sample")
        for i in range(6):
            key = f"train/sub/img{i:02d}"
            add(f"{key}.JPG" if i % 2 else f"{key}.jpg", image_bytes(24, 16, i))
            add(f"{key}.txt", f"caption {i}".encode())
            add(f"{key}.seg.png", image_bytes(8, 8, i, "PNG"))
            if i % 3 == 0:
                add(f"{key}.cls", str(i).encode())
                add(f"{key}.json", json.dumps({"i": i, "tags": ["x", i]}).encode())
            add(f"{key}.npy", bytes([i]) * 7)
        add("orphan.txt", b"a caption without an image")
        add("png_only.png", image_bytes(12, 10, 1, "PNG"))
        add("png_only.json", b'{"nested": {"a": [1, 2.5, null]}}')
    b = write_shard(tmp_path / "b.tar", standard_shard(1, 5))
    return [a, b]


def test_grouping_matches_the_webdataset_package(tmp_path: Path) -> None:
    import webdataset as wds  # the oracle: installed by make deps, so a missing one fails the test

    shards = tricky_shards(tmp_path)
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for s in wds.WebDataset([str(p) for p in shards], shardshuffle=False):
        image_key = next((k for k in ("jpg", "jpeg", "png", "webp") if k in s), None)
        if image_key is None:
            continue  # datago skips it (missing_image): checked below
        expected[(s["__url__"], s["__key__"])] = {
            "caption": s["txt"].decode() if "txt" in s else None,
            "label": int(s["cls"]) if "cls" in s else None,
            "attributes": json.loads(s["json"]) if "json" in s else {},
            "extras": sorted(
                k for k in s if not k.startswith("__") and k not in (image_key, "txt", "cls", "json")
            ),
        }
    got = drain(webdataset_config([str(p) for p in shards]))
    actual = {
        (v.metadata.get("shard"), v.metadata.get("key")): {
            "caption": v.caption,
            "label": v.label,
            "attributes": v.attributes,
            "extras": sorted(v.extras),
        }
        for v in got.by_id().values()
    }
    assert len(expected) == 6 + 1 + 5
    assert actual == expected
    assert len(got.ids) == len(expected)
    assert got.skipped_ids("missing_image") == [f"{shards[0]}#orphan"]
    assert got.stats["skipped"] == {"missing_image": 1}
    extras = got.by_id()[f"{shards[0]}#train/sub/img03"].extras
    assert extras["npy"] == bytes([3]) * 7 and extras["seg.png"][:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------- HTTP


@pytest.fixture
def http_shards() -> Iterator[tuple[ShardServer, list[str]]]:
    """Four shards of 8 samples and a gzipped fifth, served over HTTP."""
    files = {f"/shard-{s:02d}.tar": shard_bytes(standard_shard(s, 8)) for s in range(4)}
    files["/shard-04.tgz"] = shard_bytes(standard_shard(4, 8), compress=True)
    with ShardServer(files) as server:
        urls = [server.url(f"/shard-{s:02d}.tar") for s in range(4)] + [server.url("/shard-04.tgz")]
        yield server, urls


def test_http_shards_with_brace_pattern_gzip_and_crop(http_shards: tuple[ShardServer, list[str]]) -> None:
    server, urls = http_shards
    pattern = [server.url("/shard-{00..03}.tar"), server.url("/shard-04.tgz")]
    image = {"crop_and_resize": True, "default_image_size": 32, "downsampling_ratio": 16}
    got = drain(webdataset_config(pattern, image=image))
    assert Counter(got.ids) == expected_ids(urls, 8)
    buckets = {(h, w, 3) for w, h in datago.aspect_ratio_buckets(32, 16, 0.5, 2.0)}
    for sid, s in got.by_id().items():
        key = sid.rsplit("#", 1)[1]
        assert s.caption == f"caption of {key} ü"
        assert s.label == int(key[-3:]) % 7
        assert s.original_size == tuple(s.attributes["size"])
        assert s.array.shape in buckets
    assert got.stats["skipped_total"] == 0
    assert got.stats["served"] == 40
    assert all(status == 200 for _, _, status, _ in server.requests), server.requests


FAULTS: dict[str, tuple[list[Fault], dict[str, Any], bool]] = {
    # name: (faults, extra source_config, whether every sample must arrive)
    "500_on_3rd_request": ([Fault("status", nth=3)], {}, True),
    "503_twice": ([Fault("status", status=503, nth=2, times=2)], {}, True),
    "cut_after_7000_bytes": ([Fault("cut", after=7000, times=4)], {}, True),
    "slow_body": ([Fault("slow", delay=0.003, chunk=8192, times=-1)], {}, True),
    "stall_longer_than_timeout": ([Fault("stall", after=5000, delay=4.0)], {"timeout_s": 0.4}, True),
    "dead_shard": ([Fault("status", path="/shard-01.tar", times=-1)], {"max_retries": 1}, False),
    "cut_then_dead": (
        [
            Fault("cut", path="/shard-02.tar", after=20000),
            Fault("status", path="/shard-02.tar", nth=2, times=-1),
        ],
        {"max_retries": 1},
        False,
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_deliver_each_sample_once_or_count_it(
    name: str, http_shards: tuple[ShardServer, list[str]]
) -> None:
    server, urls = http_shards
    faults, extra, complete = FAULTS[name]
    server.faults.extend(faults)
    started = time.monotonic()
    got = drain(webdataset_config(urls, **extra), timeout=20)
    assert time.monotonic() - started < 20
    ids = Counter(got.ids)
    assert max(ids.values()) == 1, "a sample was delivered twice"
    expected = expected_ids(urls, 8)
    assert set(ids) <= set(expected)
    if complete:
        assert ids == expected
        assert got.stats["skipped_total"] == 0, got.stats
        return
    # Something was lost: the broken shard is counted, the others arrived in full, nothing twice.
    broken = urls[1] if name == "dead_shard" else urls[2]
    assert got.skipped_ids("shard_error") == [broken]
    assert got.stats["skipped"]["shard_error"] == 1
    assert {i for i in expected if not i.startswith(broken + "#")} <= set(ids)
    lost = got.skipped_ids("lost")
    assert not set(lost) & set(ids)
    if name == "cut_then_dead":
        delivered = [i for i in ids if i.startswith(broken + "#")]
        assert 0 < len(delivered) < 8 and len(lost) == 1
        assert (
            sorted(delivered + lost)
            == sorted(i for i in expected if i.startswith(broken + "#"))[: len(delivered) + 1]
        )


def test_resume_without_range_support(http_shards: tuple[ShardServer, list[str]]) -> None:
    server, urls = http_shards
    server.no_range = True
    server.faults.append(Fault("cut", after=9000, times=3))
    got = drain(webdataset_config(urls))
    assert Counter(got.ids) == expected_ids(urls, 8)
    assert got.stats["skipped_total"] == 0
    # 5 shards, 3 of them cut once and read again from the start (the first 9000 bytes skipped).
    assert len(server.requests) == 8
    assert all(status == 200 and not rng for _, rng, status, _ in server.requests[:1])


def test_limit_stops_a_slow_source_promptly(http_shards: tuple[ShardServer, list[str]]) -> None:
    server, urls = http_shards
    server.faults.append(Fault("slow", delay=0.05, chunk=2048, times=-1))
    started = time.monotonic()
    got = drain(webdataset_config(urls, limit=3))
    assert len(got.ids) == 3
    assert time.monotonic() - started < 10


# ------------------------------------------------------------------------------------ ranks and order


def local_shards(tmp_path: Path, n: int, per: int) -> list[str]:
    return [str(write_shard(tmp_path / f"shard-{s:02d}.tar", standard_shard(s, per))) for s in range(n)]


@pytest.mark.parametrize(("shards", "world"), [(5, 3), (2, 3)], ids=["shard_split", "key_hash_split"])
def test_ranks_disjoint_and_complete(tmp_path: Path, shards: int, world: int) -> None:
    per = 20  # ids hash over the ranks: with 40 samples an empty rank is ~1e-7 likely
    urls = local_shards(tmp_path, shards, per)
    per_rank = [Counter(drain(webdataset_config(urls, rank=r, world_size=world)).ids) for r in range(world)]
    assert all(per_rank), "every rank gets samples"
    assert sum(per_rank, Counter()) == expected_ids(urls, per)
    if shards >= world:
        for rank, ids in enumerate(per_rank):
            assert {urls.index(i.rsplit("#", 1)[0]) % world for i in ids} == {rank}


def test_shuffle_reproducible_by_seed(tmp_path: Path) -> None:
    urls = local_shards(tmp_path, 4, 10)

    def order(seed: int, shuffle: bool = True) -> list[str]:
        # One worker: delivery order is the listing order.
        config = webdataset_config(urls, shuffle=shuffle, seed=seed, shuffle_buffer=16, concurrency=1)
        return drain(config).ids

    first, again, other = order(7), order(7), order(8)
    assert first == again
    assert first != other
    assert Counter(first) == Counter(other) == expected_ids(urls, 10)
    plain = order(0, shuffle=False)
    assert first != plain and sorted(first) == sorted(plain)


# ---------------------------------------------------------------------------------- damaged shards


def test_corrupt_member_and_truncated_shard_lose_only_their_samples(tmp_path: Path) -> None:
    samples = standard_shard(0, 8)
    data = bytearray(shard_bytes(samples))
    # Find the header of sample 3's .txt and damage it.
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tf:
        offsets = {m.name: m.offset for m in tf.getmembers()}
    data[offsets["s00_003.txt"] + 20] ^= 0xFF
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(bytes(data))
    whole = shard_bytes(standard_shard(1, 8))
    with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
        cut_at = next(m.offset_data + 10 for m in tf.getmembers() if m.name == "s01_005.json")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(whole[:cut_at])
    got = drain(webdataset_config([str(corrupt), str(truncated)]))
    ids = Counter(got.ids)
    assert max(ids.values()) == 1
    assert ids == expected_ids([str(corrupt), str(truncated)], 8) - Counter(
        {f"{corrupt}#s00_003": 1, **{f"{truncated}#s01_{i:03d}": 1 for i in range(5, 8)}}
    )
    assert sorted(got.skipped_ids("lost")) == sorted([f"{corrupt}#s00_003", f"{truncated}#s01_005"])
    assert got.skipped_ids("shard_error") == [str(truncated)]


def test_undecodable_image_is_skipped_not_fatal(tmp_path: Path) -> None:
    samples = standard_shard(0, 4)
    samples[1][1]["jpg"] = b"\xff\xd8\xff not really a jpeg"
    url = str(write_shard(tmp_path / "s.tar", samples))
    got = drain(webdataset_config(url))
    assert len(got.ids) == 3
    assert got.skipped_ids("decode_error") == [f"{url}#s00_001"]


# -------------------------------------------------------------------------------------- configuration


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    url = str(write_shard(tmp_path / "s-0.tar", standard_shard(0, 1)))
    cases = [
        (webdataset_config(str(tmp_path / "missing-{0..3}.tar")), "source_config.url", "no shard matches"),
        (webdataset_config(str(tmp_path / "s-{0..3.tar")), "source_config.url", "malformed brace pattern"),
        (webdataset_config(["http://h/a.tar", 5]), "source_config.url[1]", "must be a string"),
        (webdataset_config(url, shufle=True), "source_config.shufle", 'did you mean "shuffle"'),
        (webdataset_config(url, image_keys="jpg"), "source_config.image_keys", "list of strings"),
        (webdataset_config(url, rank=1), "source_config.rank", "< world_size"),
        (webdataset_config("ftp://host/a.tar"), "source_config.url", "unsupported scheme"),
    ]
    for config, key, text in cases:
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(config)
        assert info.value.key == key, (config, str(info.value))
        assert text in str(info.value)
    # "wds" is accepted, and so is a file:// URL.
    config = webdataset_config("file://" + url)
    config["source_type"] = "wds"
    assert drain(config).ids == [f"file://{url}#s00_000"]
