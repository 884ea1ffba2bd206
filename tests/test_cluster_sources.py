"""Planned runs (README "Cluster training") over the other sources: WebDataset shards (indexed once, samples
read by byte range), an object-storage prefix of the filesystem source (moto S3) and the dataroom source.
The harness of test_cluster.py (its clients per share, its torchrun worker) runs over each source."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago
from support.images import photo
from support.shards import Members, write_shard
from test_cluster import SHAPES, Source, batch_run, gathered, reports, run, torchrun
from test_cluster import cfg as cfg_of

# ------------------------------------------------------------------------------------------ WebDataset

SHARD_SIZES = [13, 22, 9, 31, 26]  # 101 samples, uneven shards


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Source, list[str]]:
    """Five shards of samples of six aspect ratios, each a JPEG, a mask, a caption and a label: the
    WebDataset source over them (shuffle, seed 5, the mask decoded with reference_image_type), and every
    sample's id, sorted."""
    root = tmp_path_factory.mktemp("cluster-wds")
    urls, ids = [], []
    for s, n in enumerate(SHARD_SIZES):
        samples: list[tuple[str, Members]] = []
        for i in range(n):
            w, h = SHAPES[(s * 5 + i * 7) % len(SHAPES)]
            buf = io.BytesIO()
            Image.fromarray(photo(w, h, seed=s * 100 + i)).save(buf, "JPEG")
            mask = (photo(w, h, seed=i)[:, :, 0] > 128).astype(np.uint8) * 255
            key = f"k{s}_{i:03d}"
            samples.append(
                (key, {"jpg": buf.getvalue(), "seg.png": png(mask), "txt": key.encode(), "cls": b"3"})
            )
        path = write_shard(root / f"shard-{s}.tar", samples)
        urls.append(str(path))
        ids += [f"{path}#{key}" for key, _ in samples]
    source = {
        "source_type": "webdataset",
        "source_config": {"url": urls, "shuffle": True, "seed": 5, "reference_image_type": "jpg"},
    }
    return source, sorted(ids)


def test_planned_samples_are_the_streamed_ones(shards: tuple[Source, list[str]]) -> None:
    """A sample read by its byte range is the sample the streaming path delivers: pixels, mask, metadata."""
    source, ids = shards
    image = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    config: dict[str, Any] = {**source, "image_config": image, "concurrency": 2}
    streamed = {s.id: s for s in datago.Client(config)}
    planned = {s.id: s for s in datago.Client({**config, "equal_steps": "pad"})}
    assert sorted(streamed) == sorted(planned) == ids
    for key, sample in planned.items():
        other = streamed[key]
        assert np.array_equal(sample.array, other.array)
        assert sample.metadata == other.metadata and sample.metadata["caption"] == key.split("#")[1]
        masks, other_masks = sample.mask_arrays(), other.mask_arrays()
        assert list(masks) == ["seg.png"] and np.array_equal(masks["seg.png"], other_masks["seg.png"])


@pytest.mark.parametrize("world", [2, 3])
def test_webdataset_equal_steps(shards: tuple[Source, list[str]], world: int) -> None:
    source, ids = shards
    padded, _, stats = run(source, world, equal_steps="pad")
    assert len({len(x) for x in padded}) == 1
    assert sum(st["padded"] for st in stats) > 0, "the hash split should be uneven here"
    assert sorted({i for x in padded for i in x}) == ids
    dropped, _, stats = run(source, world, equal_steps="drop")
    assert len({len(x) for x in dropped}) == 1
    flat = [i for x in dropped for i in x]
    assert len(flat) == len(set(flat)) and len(flat) + sum(st["excess"] for st in stats) == len(ids)


def test_webdataset_one_bucket_per_step(shards: tuple[Source, list[str]]) -> None:
    source, ids = shards
    got, _, stats = batch_run(source, 3, bucket_per_step=True)
    assert len({len(b) for b in got}) == 1 and len(got[0]) > 0
    for k in range(len(got[0])):
        assert len({share[k][0] for share in got}) == 1, f"step {k}: the shares' batch shapes differ"
    flat = [i for share in got for _, batch in share for i in batch]
    assert len(flat) == len(set(flat)) and len(flat) + sum(st["excess"] for st in stats) == len(ids)


@pytest.mark.parametrize(("before", "after"), [(2, 3), (4, 2)])
def test_webdataset_elastic_resume(shards: tuple[Source, list[str]], before: int, after: int) -> None:
    source, ids = shards
    top = {"equal_steps": "pad", "deterministic": True}
    for stop in (4, 17):
        first, states, first_stats = run(source, before, stop=stop, **top)
        second, _, second_stats = run(source, after, state=gathered(states), **top)
        assert len({len(x) for x in second}) == 1
        seen = Counter(i for x in first + second for i in x)
        assert sorted(seen) == ids, f"stop={stop}: a sample missing"
        assert sum(seen.values()) - len(ids) == sum(st["padded"] for st in first_stats + second_stats)


def test_webdataset_state_of_other_shards_is_refused(shards: tuple[Source, list[str]]) -> None:
    source, _ = shards
    _, states, _ = run(source, 2, stop=3, equal_steps="pad")
    fewer = json.loads(json.dumps(source))
    fewer["source_config"]["url"] = source["source_config"]["url"][:-1]
    with pytest.raises(datago.ConfigError, match="resume_state.*another dataset or listing"):
        datago.Client({**fewer, "equal_steps": "pad"}, state=gathered(states))


def test_torchrun_webdataset(shards: tuple[Source, list[str]], tmp_path: Path) -> None:
    """Under torchrun (gloo): equal steps (drop) with an all-reduce per step, one bucket per
    step (every rank's batch shape equal at every step), elastic resume 2 -> 3 and 4 -> 2 of checkpoints
    mid-epoch and in the second epoch (union before / after = each epoch, exactly, plus padding); and
    the default under torch.distributed: pad, every rank the same steps, every sample seen."""
    source, ids = shards
    src = "--source=" + json.dumps(source)
    out = tmp_path / "default"
    done = torchrun(3, out, src, "--allreduce")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 3)
    assert len({len(r["steps"]) for r in got}) == 1
    assert {i for r in got for step in r["steps"] for i in step} == set(ids)
    assert sum(len(r["steps"]) for r in got) > len(ids), "101 samples on 3 ranks: padded"

    out = tmp_path / "drop"
    done = torchrun(3, out, src, "--allreduce", "--equal-steps=drop", "--num-workers=2")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 3)
    assert len({len(r["steps"]) for r in got}) == 1
    flat = [i for r in got for step in r["steps"] for i in step]
    assert len(flat) == len(set(flat)) and set(flat) <= set(ids) and len(flat) < len(ids)

    out = tmp_path / "aligned"
    done = torchrun(2, out, src, "--allreduce", "--batch-size=8", "--bucket-per-step")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 2)
    assert len({len(r["shapes"]) for r in got}) == 1 and got[0]["shapes"]
    for k in range(len(got[0]["shapes"])):
        assert len({tuple(r["shapes"][k]) for r in got}) == 1, f"step {k}: shapes differ across ranks"
    flat = [i for r in got for step in r["steps"] for i in step]
    assert len(flat) == len(set(flat)) and len(flat) >= len(ids) - 2 * len(SHAPES)

    for w1, w2 in [(2, 3), (4, 2)]:
        first = tmp_path / f"first-{w1}"
        per_epoch = len(run(source, w1, equal_steps="pad")[0][0])
        stops = [5, per_epoch + 3]
        done = torchrun(
            w1, first, src, "--epochs=2", "--equal-steps=pad", "--checkpoints=" + ",".join(map(str, stops))
        )
        assert done.returncode == 0, done.stderr[-3000:]
        before = reports(first, w1)
        assert {len(r["steps"]) for r in before} == {2 * per_epoch}
        second = tmp_path / f"second-{w1}-{w2}"
        done = torchrun(
            w2, second, src, "--epochs=2", "--equal-steps=pad", "--resume=" + ",".join(before[0]["states"])
        )
        assert done.returncode == 0, done.stderr[-3000:]
        after = reports(second, w2)
        for k, stop in enumerate(stops):
            ids_before = [i for r in before for step in r["steps"][:stop] for i in step]
            ids_after = [i for r in after for step in r["resumed"][k] for i in step]
            assert len({len(r["resumed"][k]) for r in after}) == 1, "equal steps after the resume"
            seen = Counter(ids_before + ids_after)
            assert sorted(seen) == ids and min(seen.values()) >= 2, f"{w1} -> {w2}, checkpoint {stop}"
            # Repeats beyond the two epochs are padding: at most the largest share's count per share.
            assert sum(seen.values()) - 2 * len(ids) <= 2 * (w1 + w2) * per_epoch


# ------------------------------------------------------------------------------ object-storage prefix

BUCKET = "planned"


@pytest.fixture(scope="module")
def s3_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """test_cluster's shapes folder, also in a moto bucket under images/: (the local root, the server)."""
    from support.s3_server import S3Server

    root = tmp_path_factory.mktemp("cluster-s3") / "images"
    for i in range(97):
        w, h = SHAPES[(i * 7) % len(SHAPES)]
        path = root / f"d{i % 4}" / f"q{i * 613 % 1000:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(w, h, seed=i)).save(path, "JPEG")
    srv = S3Server()
    srv.bucket(BUCKET)
    srv.put(BUCKET, {f"images/{p.relative_to(root).as_posix()}": p.read_bytes() for p in root.rglob("*.jpg")})
    yield root, srv
    srv.stop()


@pytest.fixture
def s3_env(s3_tree: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    import os

    _, srv = s3_tree
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for k, v in srv.env().items():
        monkeypatch.setenv(k, v)
    return srv


def prefix_source() -> Source:
    return {
        "source_type": "filesystem",
        "source_config": {"root_path": f"s3://{BUCKET}/images", "random_sampling": True, "seed": 5},
    }


@pytest.mark.parametrize("mode", [{"equal_steps": "pad"}, {"equal_steps": "drop"}, {"bucket_per_step": True}])
def test_prefix_plans_as_the_local_folder(
    s3_tree: tuple[Path, Any], s3_env: Any, mode: dict[str, Any]
) -> None:
    """The same tree on disk and in a bucket: the same plan, share by share, batch by batch (ids relative
    to the root), with the header pass reading each object's first bytes."""
    root, _ = s3_tree
    for world in (1, 3):
        local, _, local_stats = batch_run(root, world, **mode)
        remote, _, remote_stats = batch_run(prefix_source(), world, **mode)
        # Within a batch, samples come as they are decoded: compared as sets.
        strip = [
            [(shape, sorted(Path(i).relative_to(root).as_posix() for i in b)) for shape, b in share]
            for share in local
        ]
        prefix = f"s3://{BUCKET}/images/"
        assert [
            [(s, sorted(i.removeprefix(prefix) for i in b)) for s, b in share] for share in remote
        ] == strip
        assert [st["excess"] for st in local_stats] == [st["excess"] for st in remote_stats]
        assert len({len(x) for x in remote}) == 1


def test_prefix_elastic_resume(s3_tree: tuple[Path, Any], s3_env: Any) -> None:
    root, _ = s3_tree
    first, states, _ = run(prefix_source(), 2, stop=9, equal_steps="pad", deterministic=True)
    second, _, _ = run(prefix_source(), 3, state=gathered(states), equal_steps="pad", deterministic=True)
    seen = {i.removeprefix(f"s3://{BUCKET}/images/") for x in first + second for i in x}
    assert sorted(seen) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


def test_webdataset_shards_in_a_bucket(
    s3_tree: tuple[Path, Any], s3_env: Any, shards: tuple[Source, list[str]]
) -> None:
    """The shards in the bucket: indexed by one streamed read each, samples read by ranged reads pinned to
    the listed version; the same samples as on disk."""
    _, srv = s3_tree
    source, ids = shards
    local_urls = source["source_config"]["url"]
    srv.put(BUCKET, {f"wds/{Path(u).name}": Path(u).read_bytes() for u in local_urls})
    remote = json.loads(json.dumps(source))
    remote["source_config"]["url"] = f"s3://{BUCKET}/wds/"
    names = {f"s3://{BUCKET}/wds/{Path(u).name}": u for u in local_urls}

    def local_id(i: str) -> str:
        shard, key = i.split("#")
        return f"{names[shard]}#{key}"

    got, _, stats = run(remote, 2, equal_steps="pad")
    assert len({len(x) for x in got}) == 1 and sum(st["padded"] for st in stats) > 0
    assert sorted({local_id(i) for x in got for i in x}) == ids
    image = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    with datago.Client({**remote, "image_config": image, "equal_steps": "pad"}) as c:
        planned = {local_id(s.id): s.array for s in c}
    streamed = {s.id: s.array for s in datago.Client({**source, "image_config": image})}
    assert planned.keys() == streamed.keys()
    assert all(np.array_equal(planned[k], streamed[k]) for k in streamed)


def test_torchrun_prefix(s3_tree: tuple[Path, Any], s3_env: Any, tmp_path: Path) -> None:
    """torchrun over the bucket: the default equal steps (pad) with an all-reduce per step, and one bucket
    per step."""
    root, _ = s3_tree
    src = "--source=" + json.dumps(prefix_source())
    out = tmp_path / "pad"
    done = torchrun(3, out, src, "--allreduce")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 3)
    assert len({len(r["steps"]) for r in got}) == 1
    seen = {i for r in got for step in r["steps"] for i in step}
    assert len(seen) == len(list(root.rglob("*.jpg")))
    out = tmp_path / "aligned"
    done = torchrun(2, out, src, "--allreduce", "--batch-size=8", "--bucket-per-step")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 2)
    for k in range(len(got[0]["shapes"])):
        assert len({tuple(r["shapes"][k]) for r in got}) == 1, f"step {k}: shapes differ across ranks"


# ------------------------------------------------------------------------------------------- dataroom

N_ROOM = 47


@pytest.fixture(scope="module")
def room() -> Iterator[Any]:
    from support.dataroom_server import DataroomServer

    with DataroomServer(seed=3) as srv:
        srv.populate(N_ROOM, seed=3, short_edge=24)
        yield srv


def room_source(srv: Any) -> Source:
    return {
        "source_type": "db",
        "source_config": {"api_url": srv.base_url, "api_key": srv.token, "page_size": 10},
    }


@pytest.mark.parametrize("policy", ["pad", "drop"])
def test_dataroom_equal_steps(room: Any, policy: str) -> None:
    ids = room.ids()
    got, _, stats = run(room_source(room), 3, equal_steps=policy)
    assert len({len(x) for x in got}) == 1
    flat = [i for x in got for i in x]
    if policy == "pad":
        assert sum(st["padded"] for st in stats) > 0, "the hash split should be uneven here"
        assert sorted(set(flat)) == ids
    else:
        assert sum(st["excess"] for st in stats) > 0
        assert len(flat) == len(set(flat)) and len(flat) + sum(st["excess"] for st in stats) == N_ROOM


def test_dataroom_buckets_come_from_the_listing(room: Any) -> None:
    """With batches, each image's bucket is the listing's width and height: no file is read before the
    first batch is asked for; every share's batch has the same shape at every step."""
    room.clear()
    image = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    clients = [
        datago.Client(
            {
                **cfg_of(room_source(room), share, 2),
                "image_config": image,
                "batch_size": 4,
                "bucket_per_step": True,
            }
        )
        for share in range(2)
    ]
    assert not [r for r in room.requests if r.path.startswith("/files/")], "a header pass read files"
    got = [[(tuple(b.array.shape), list(b.ids)) for b in c] for c in clients]
    stats = [c.stats() for c in clients]
    for c in clients:
        c.close()
    # The listed sizes are the decoded ones: no sample decoded into another bucket (substituted).
    assert all(st["substituted"] == 0 and not st["skipped"] for st in stats), stats
    assert len({len(x) for x in got}) == 1 and got[0]
    for k in range(len(got[0])):
        assert len({share[k][0] for share in got}) == 1, f"step {k}: shapes differ"
    flat = [i for share in got for _, batch in share for i in batch]
    assert len(flat) == len(set(flat)) and len(flat) >= N_ROOM - 2 * 6


def test_dataroom_elastic_resume(room: Any) -> None:
    ids = room.ids()
    top = {"equal_steps": "pad", "deterministic": True}
    first, states, first_stats = run(room_source(room), 2, stop=7, **top)
    second, _, second_stats = run(room_source(room), 3, state=gathered(states), **top)
    seen = Counter(i for x in first + second for i in x)
    assert sorted(seen) == ids
    assert sum(seen.values()) - N_ROOM == sum(st["padded"] for st in first_stats + second_stats)


def test_dataroom_random_sampling_is_refused(room: Any) -> None:
    source = room_source(room)
    source["source_config"]["random_sampling"] = True
    with pytest.raises(datago.ConfigError, match="source_config.random_sampling: a planned run"):
        datago.Client({**source, "equal_steps": "pad"})


def test_torchrun_dataroom(room: Any, tmp_path: Path) -> None:
    out = tmp_path / "drop"
    src = "--source=" + json.dumps(room_source(room))
    # equal_steps left to the default under torch.distributed (pad), with one bucket per step.
    done = torchrun(2, out, src, "--allreduce", "--batch-size=4", "--bucket-per-step")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 2)
    assert len({len(r["shapes"]) for r in got}) == 1 and got[0]["shapes"]
    for k in range(len(got[0]["shapes"])):
        assert len({tuple(r["shapes"][k]) for r in got}) == 1, f"step {k}: shapes differ across ranks"


def test_default_pad_falls_back_where_shards_cannot_plan(
    s3_tree: tuple[Path, Any], s3_env: Any, shards: tuple[Source, list[str]]
) -> None:
    """Under torch.distributed, the default equal_steps "pad" over a prefix that turns out to hold .tar.gz
    shards (known only once listed) runs unplanned, with a warning, instead of failing."""
    import gzip
    import socket
    import subprocess
    import sys
    import textwrap

    _, srv = s3_tree
    source, ids = shards
    srv.put(
        BUCKET,
        {
            f"gz/{Path(u).name}.gz": gzip.compress(Path(u).read_bytes())
            for u in source["source_config"]["url"]
        },
    )
    config = {"source_type": "webdataset", "source_config": {"url": f"s3://{BUCKET}/gz/"}}
    with pytest.raises(datago.ConfigError, match="equal_steps"):
        datago.Client({**config, "equal_steps": "pad"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = textwrap.dedent(f"""
        import json, logging, sys
        import torch.distributed as dist
        from datago.torch import DatagoIterableDataset
        logging.basicConfig(level=logging.WARNING)
        dist.init_process_group("gloo", rank=0, world_size=1, init_method="tcp://127.0.0.1:{port}")
        print(json.dumps(sorted(x["id"] for x in DatagoIterableDataset(json.loads(sys.argv[1])))))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got) == len(ids) and len(set(got)) == len(ids)
    assert "cannot be planned" in done.stderr
