"""Cluster training (README "Cluster training"): equal steps on every rank, elastic exact resume across
topologies, states that cannot belong refused, StatefulDataLoader workers; real files, real clients, real
torchrun jobs on gloo."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import datago
from support.images import photo, save
from support.torchrun import run_torchrun

HERE = Path(__file__).resolve().parent
COUNT = 61  # a prime: no world size divides it, and the hash split is uneven (asserted)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """COUNT small PNGs in three folders; (root, their ids sorted)."""
    root = tmp_path_factory.mktemp("cluster") / "images"
    paths = [
        save(root / f"d{i % 3}" / f"p{i * 7919 % 1000:03d}.png", photo(16, 12, seed=i), "PNG")
        for i in range(COUNT)
    ]
    return root, sorted(str(p) for p in paths)


# A source a planned run reads: {"source_type": ..., "source_config": ...} without rank and world_size
# (test_cluster_sources.py runs these tests' harness over WebDataset shards, dataroom and object storage).
Source = dict[str, Any]


def folder_source(root: Path | str) -> Source:
    return {
        "source_type": "filesystem",
        "source_config": {"root_path": str(root), "random_sampling": True, "seed": 5},
    }


def cfg(root: Path | Source, rank: int = 0, world: int = 1, **top: Any) -> dict[str, Any]:
    source = root if isinstance(root, dict) else folder_source(root)
    return {
        "source_type": source["source_type"],
        "source_config": {**source["source_config"], "rank": rank, "world_size": world},
        "concurrency": 2,
        "samples_buffer_size": 8,
        **top,
    }


def run(
    root: Path | Source, world: int, state: dict[str, Any] | None = None, stop: int | None = None, **top: Any
) -> tuple[list[list[str]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One client per share of ``world``: the ids each delivered (at most ``stop``), states, stats."""
    ids, states, stats = [], [], []
    for share in range(world):
        got: list[str] = []
        with datago.Client(cfg(root, share, world, **top), state=state) as client:
            for sample in client:
                got.append(sample.id)
                if stop is not None and len(got) == stop:
                    break
            states.append(json.loads(json.dumps(client.state_dict())))
            stats.append(client.stats())
        ids.append(got)
    return ids, states, stats


def gathered(states: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 2, "parts": states}


# --------------------------------------------------------------------------------------- equal steps


@pytest.mark.parametrize("world", [2, 3, 4])
def test_equal_steps(folder: tuple[Path, list[str]], world: int) -> None:
    root, files = folder
    plain, _, _ = run(root, world)
    counts = [len(ids) for ids in plain]
    assert len(set(counts)) > 1, f"the hash split should be uneven here: {counts}"
    padded, _, pad_stats = run(root, world, equal_steps="pad")
    assert [len(ids) for ids in padded] == [max(counts)] * world
    assert sorted({i for ids in padded for i in ids}) == files
    for ids, plain_ids, st in zip(padded, plain, pad_stats, strict=True):
        assert set(ids) == set(plain_ids), "pad repeats the rank's own samples, and only those"
        assert st["padded"] == max(counts) - len(plain_ids) == len(ids) - len(set(ids))
    dropped, _, drop_stats = run(root, world, equal_steps="drop")
    assert [len(ids) for ids in dropped] == [min(counts)] * world
    flat = [i for ids in dropped for i in ids]
    assert len(flat) == len(set(flat)), "drop delivers each sample at most once"
    assert sum(st["excess"] for st in drop_stats) == COUNT - len(flat)


def test_bad_files_are_replaced_so_steps_stay_equal(tmp_path: Path, folder: tuple[Path, list[str]]) -> None:
    root, _ = folder
    copy = tmp_path / "images"
    for path in root.rglob("*.png"):
        (copy / path.parent.name).mkdir(parents=True, exist_ok=True)
        (copy / path.parent.name / path.name).write_bytes(path.read_bytes())
    bad = sorted(copy.rglob("*.png"))[:5]
    for path in bad:
        path.write_bytes(b"not a png")
    ids, _, stats = run(copy, 3, equal_steps="pad")
    assert len({len(x) for x in ids}) == 1
    assert not {str(p) for p in bad} & {i for x in ids for i in x}
    # Every bad slot (padding may repeat a bad file) was skipped, reported and filled by a substitute.
    skipped = sum(st["skipped"].get("decode_error", 0) for st in stats)
    assert skipped >= 5 and sum(st["substituted"] for st in stats) == skipped


# ---------------------------------------------------------------------------------- elastic resume


@pytest.mark.parametrize("policy", ["pad", "drop"])
@pytest.mark.parametrize(("before", "after"), [(4, 2), (2, 3), (1, 4), (2, 1), (2, 4), (4, 3)])
def test_elastic_resume(folder: tuple[Path, list[str]], policy: str, before: int, after: int) -> None:
    """Checkpoints mid-epoch, at the epoch's end and in the second epoch, taken with ``before`` shares and
    resumed with ``after`` (2 -> 4 is 2 ranks x 0 workers -> 2 ranks x 2 workers): over both epochs each
    sample comes exactly twice, plus padding (pad) or minus what was left out (drop)."""
    root, files = folder
    # deterministic: each share's delivered slots are a prefix, so padding is never delivered before the
    # item it repeats and the repeats are exactly the padding (out of order, a padding slot delivered
    # first is that item's delivery: the Go property test covers it).
    top = {"equal_steps": policy, "epochs": 2, "deterministic": True}
    full, _, _ = run(root, before, **top)
    per_epoch = len(full[0]) // 2
    for stop in (3, per_epoch, per_epoch + 4):
        first, states, first_stats = run(root, before, stop=stop, **top)
        assert [len(x) for x in first] == [stop] * before
        second, _, second_stats = run(root, after, state=gathered(states), **top)
        assert len({len(x) for x in second}) == 1, "equal steps after the resume too"
        seen = Counter(i for ids in first + second for i in ids)
        stats = first_stats + second_stats
        if policy == "pad":
            assert sorted(seen) == files
            assert all(n >= 2 for n in seen.values()), f"stop={stop}: a sample missing from an epoch"
            assert sum(seen.values()) - 2 * COUNT == sum(st["padded"] for st in stats)
        else:  # what drop leaves out depends on the topologies: exact counts in the test below
            assert all(n <= 2 for n in seen.values()), f"stop={stop}: a sample twice in an epoch"
        # The order after the resume is a function of the seed and the new topology.
        again, _, _ = run(root, after, state=gathered(states), concurrency=1, **top)
        once_more, _, _ = run(root, after, state=gathered(states), concurrency=1, **top)
        assert again == once_more


def test_elastic_resume_drop_is_exact(folder: tuple[Path, list[str]]) -> None:
    """With drop, one epoch: delivered before + after + left out by the last topology = the epoch."""
    root, files = folder
    for before, after in [(4, 2), (2, 3), (3, 1)]:
        first, states, _ = run(root, before, stop=4, equal_steps="drop")
        second, _, stats = run(root, after, state=gathered(states), equal_steps="drop")
        flat = [i for ids in first + second for i in ids]
        assert len(flat) == len(set(flat))
        assert len(flat) + sum(st["excess"] for st in stats) == COUNT
        assert set(flat) <= set(files)


def test_same_topology_needs_only_its_own_state(folder: tuple[Path, list[str]]) -> None:
    root, files = folder
    first, states, _ = run(root, 3, stop=5, equal_steps="pad")
    # Each share resumes from its own part alone (what a per-rank checkpoint or StatefulDataLoader keeps).
    rest = []
    for share in range(3):
        with datago.Client(cfg(root, share, 3, equal_steps="pad"), state=states[share]) as client:
            rest.append([s.id for s in client])
    full, _, _ = run(root, 3, equal_steps="pad")
    assert [a + b for a, b in zip(first, rest, strict=True)] != [] and all(
        sorted(a + b) == sorted(f) for a, b, f in zip(first, rest, full, strict=True)
    )
    with pytest.raises(datago.ConfigError, match=r"resume_state.*shares \[1 2\] are missing"):
        datago.Client(cfg(root, 0, 2, equal_steps="pad"), state=states[0])
    assert sorted({i for x in full for i in x}) == files


def test_states_that_cannot_belong_are_refused(folder: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = folder
    _, states, _ = run(root, 2, stop=4, equal_steps="pad")
    state = gathered(states)

    def refused(config: dict[str, Any], bad: dict[str, Any], match: str) -> None:
        with pytest.raises(datago.ConfigError, match=match) as info:
            datago.Client(config, state=bad)
        assert "resume_state" in str(info.value)

    other = tmp_path / "other"
    save(other / "a.png", photo(16, 12), "PNG")
    refused(cfg(other, equal_steps="pad"), state, "another dataset or listing")
    seeded = cfg(root, equal_steps="pad")
    seeded["source_config"]["seed"] = 6
    refused(seeded, state, "seed 5, this configuration has seed 6")
    refused(cfg(root, equal_steps="drop"), state, 'equal_steps "pad"')
    refused(cfg(root), state, "this configuration has neither")
    edited = json.loads(json.dumps(state))
    edited["parts"][0]["done"][0]["below"] = 30
    refused(cfg(root, equal_steps="pad"), edited, "check.*edited or truncated")
    truncated = json.loads(json.dumps(state))
    del truncated["parts"][1]["plan"]
    refused(cfg(root, equal_steps="pad"), truncated, "parts\\[1\\].*plan")
    _, plain_states, _ = run(root, 1, stop=3)
    refused(cfg(root, equal_steps="pad"), plain_states[0], "without equal_steps")
    with pytest.raises(datago.ConfigError, match="equal_steps"):
        datago.Client(cfg(root, equal_steps="sometimes"))


def test_state_size_is_bounded(folder: tuple[Path, list[str]]) -> None:
    """A state holds a prefix and the few slots done out of order, not a list of ids."""
    root, _ = folder
    _, states, _ = run(root, 4, stop=9, equal_steps="pad")
    for st in states:
        assert len(json.dumps(st)) < 400, st
    resumed_from = gathered(states)
    _, again, _ = run(root, 2, state=resumed_from, stop=2, equal_steps="pad")
    assert all(len(json.dumps(st)) < 1200 for st in again)


# ------------------------------------------------------------------------------------------ torchrun


def torchrun(nproc: int, out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_torchrun(nproc, HERE / "scripts" / "cluster_worker.py", f"--out={out}", *args, timeout=timeout)


def reports(out: Path, nproc: int) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


@pytest.mark.parametrize(("nproc", "workers"), [(2, 0), (3, 2), (4, 0)])
def test_torchrun_equal_steps_and_allreduce(
    folder: tuple[Path, list[str]], tmp_path: Path, nproc: int, workers: int
) -> None:
    """Each step ends with an all-reduce, as under DDP: with equal steps (the default under
    torch.distributed, pad; and drop) every rank completes; with the plain split it cannot."""
    root, files = folder
    for policy in (None, "drop"):
        out = tmp_path / f"{policy}"
        args = [f"--root={root}", f"--num-workers={workers}", "--allreduce"]
        done = torchrun(nproc, out, *args, *([f"--equal-steps={policy}"] if policy else []))
        assert done.returncode == 0, done.stderr[-3000:]
        got = reports(out, nproc)
        lengths = {len(r["steps"]) for r in got}
        assert len(lengths) == 1, lengths
        ids = [i for r in got for step in r["steps"] for i in step]
        if policy is None:  # pad
            assert sorted(set(ids)) == files
        else:
            assert len(ids) == len(set(ids))


def test_torchrun_hang_check_fails_without_equal_steps(
    folder: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The old behaviour: the rank that runs out first leaves the others in the all-reduce, which times
    out (the job fails instead of hanging for the collective's default 30 minutes)."""
    root, _ = folder
    done = torchrun(3, tmp_path / "off", f"--root={root}", "--allreduce", "--equal-steps=off", "--timeout=10")
    assert done.returncode != 0
    assert "Timed out waiting" in done.stderr, done.stderr[-3000:]  # gloo's collective timeout


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((4, 0), (2, 0)),
        ((2, 0), (3, 0)),
        ((1, 0), (4, 0)),
        ((2, 0), (1, 0)),
        ((2, 0), (2, 2)),
        ((3, 0), (2, 2)),
    ],
)
def test_torchrun_elastic_resume(
    folder: tuple[Path, list[str]], tmp_path: Path, before: tuple[int, int], after: tuple[int, int]
) -> None:
    """Checkpoints (every rank's state, gathered by state_dict) mid-epoch, at the epoch boundary and in
    the second epoch, taken by W1 ranks x N1 workers, resumed by W2 x N2: the samples before and after
    are each epoch's, twice over two epochs, plus the padding."""
    root, files = folder
    (w1, n1), (w2, n2) = before, after
    # Steps per epoch: the largest share's count (pad), which does not depend on the seed.
    steps_per_epoch = len(run(root, w1, equal_steps="pad")[0][0])
    first = tmp_path / "first"
    done = torchrun(
        w1,
        first,
        f"--root={root}",
        f"--num-workers={n1}",
        "--epochs=2",
        f"--checkpoints=3,{steps_per_epoch},{steps_per_epoch + 2}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(first, w1)
    per_epoch = len(got[0]["steps"]) // 2
    assert {len(r["steps"]) for r in got} == {2 * per_epoch}
    assert per_epoch == steps_per_epoch
    second = tmp_path / "second"
    done = torchrun(
        w2,
        second,
        f"--root={root}",
        f"--num-workers={n2}",
        "--epochs=2",
        "--resume=" + ",".join(got[0]["states"]),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = reports(second, w2)
    stops = [3, steps_per_epoch, steps_per_epoch + 2]
    for k, stop in enumerate(stops):
        before_ids = [i for r in got for step in r["steps"][:stop] for i in step]
        after_ids = [i for r in resumed for step in r["resumed"][k] for i in step]
        assert len({len(r["resumed"][k]) for r in resumed}) == 1, "equal steps after the resume"
        seen = Counter(before_ids + after_ids)
        assert sorted(seen) == files and min(seen.values()) >= 2, f"checkpoint {stop}: a sample missing"
        # Repeats beyond the two epochs are padding: at most (largest share - own share) per share and epoch.
        assert sum(seen.values()) - 2 * COUNT <= 2 * (w1 * max(n1, 1) + w2 * max(n2, 1)) * (COUNT // 4 + 1)


def test_stateful_dataloader_workers(folder: tuple[Path, list[str]], tmp_path: Path) -> None:
    """torchdata's StatefulDataLoader with 2 workers per rank checkpoints and resumes exactly."""
    root, files = folder
    out = tmp_path / "stateful"
    done = torchrun(2, out, f"--root={root}", "--num-workers=2", "--stateful", "--checkpoints=1,5,14")
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, 2)
    for k in range(3):
        before = [i for r in got for step in r["checkpoints"][k]["before"] for i in step]
        after = [i for r in got for step in r["checkpoints"][k]["after"] for i in step]
        assert len({len(r["checkpoints"][k]["before"]) + len(r["checkpoints"][k]["after"]) for r in got}) == 1
        seen = Counter(before + after)
        assert sorted(seen) == files, f"checkpoint {k}: a sample missing"
    # num_workers 2 -> 0 on another world size: the workers' states, gathered from the loader states.
    again = tmp_path / "again"
    states = [c["state"] for c in got[0]["checkpoints"]]
    done = torchrun(3, again, f"--root={root}", "--num-workers=0", "--resume=" + ",".join(states))
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = reports(again, 3)
    for k in range(3):
        before = [i for r in got for step in r["checkpoints"][k]["before"] for i in step]
        after = [i for r in resumed for step in r["resumed"][k] for i in step]
        assert len({len(r["resumed"][k]) for r in resumed}) == 1
        assert sorted(Counter(before + after)) == files, f"2 x 2 -> 3 x 0, checkpoint {k}: a sample missing"


# ------------------------------------------------------------------------------------------- batches

SHAPES = [(64, 32), (32, 64), (48, 48), (60, 40), (40, 60), (96, 40)]  # several buckets at 64 px


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """211 small PNGs of six aspect ratios, some with an EXIF rotation that changes their bucket."""
    root = tmp_path_factory.mktemp("cluster-batches") / "images"
    paths = []
    for i in range(211):
        w, h = SHAPES[(i * 7) % len(SHAPES)]
        path = root / f"d{i % 4}" / f"q{i * 613 % 1000:03d}.jpg"
        if i % 10 == 0:  # stored landscape, displayed portrait: the header pass must apply the rotation
            from PIL import Image

            path.parent.mkdir(parents=True, exist_ok=True)
            exif = Image.Exif()
            exif[0x0112] = 6
            Image.fromarray(photo(w, h, seed=i)).save(path, "JPEG", exif=exif.tobytes())
        else:
            save(path, photo(w, h, seed=i), "JPEG")
        paths.append(path)
    return root, sorted(str(p) for p in paths)


def batch_run(
    root: Path | Source, world: int, state: dict[str, Any] | None = None, stop: int | None = None, **top: Any
) -> tuple[list[list[tuple[tuple[int, ...], list[str]]]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Batches of each share: (array shape, ids) per step; states; stats."""
    image = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    out, states, stats = [], [], []
    for share in range(world):
        got: list[tuple[tuple[int, ...], list[str]]] = []
        with datago.Client(
            cfg(root, share, world, image_config=image, batch_size=8, **top), state=state
        ) as c:
            for batch in c:
                got.append((tuple(batch.array.shape), list(batch.ids)))
                if stop is not None and len(got) == stop:
                    break
            states.append(json.loads(json.dumps(c.state_dict())))
            stats.append(c.stats())
        out.append(got)
    return out, states, stats


@pytest.mark.parametrize("world", [2, 3, 4])
def test_equal_batch_steps(shapes_folder: tuple[Path, list[str]], world: int) -> None:
    root, files = shapes_folder
    plain, _, _ = batch_run(root, world)
    assert len({len(b) for b in plain}) > 1, "the plain split should give uneven batch counts here"
    for policy in ("pad", "drop"):
        got, _, stats = batch_run(root, world, equal_steps=policy)
        assert len({len(b) for b in got}) == 1, policy
        ids = [i for share in got for _, batch in share for i in batch]
        for share in got:
            for shape, batch in share:
                assert shape[0] == len(batch) <= 8
        if policy == "pad":
            assert sorted(set(ids)) == files
            assert len(ids) - len(set(ids)) == sum(st["padded"] for st in stats)
        else:
            assert len(ids) == len(set(ids))
            assert len(ids) + sum(st["excess"] for st in stats) == len(files)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_one_bucket_per_step(shapes_folder: tuple[Path, list[str]], world: int) -> None:
    root, files = shapes_folder
    got, _, stats = batch_run(root, world, bucket_per_step=True)
    steps = {len(b) for b in got}
    assert len(steps) == 1 and steps.pop() > 0
    for k in range(len(got[0])):
        assert len({share[k][0] for share in got}) == 1, f"step {k}: the ranks' batch shapes differ"
    ids = [i for share in got for _, batch in share for i in batch]
    assert len(ids) == len(set(ids)), "each sample at most once"
    left = sum(st["excess"] for st in stats)
    assert len(ids) + left == len(files)
    assert left < world * len(SHAPES)  # at most world - 1 per bucket
    for st, share in zip(stats, got, strict=True):  # the fraction of its plan's items a share left out
        delivered = sum(len(batch) for _, batch in share)
        assert st["left_out"] == pytest.approx(st["excess"] / (delivered + st["excess"]))


@pytest.mark.parametrize("mode", [{"equal_steps": "pad"}, {"bucket_per_step": True}])
def test_elastic_resume_with_batches(shapes_folder: tuple[Path, list[str]], mode: dict[str, Any]) -> None:
    root, files = shapes_folder
    for before, after, stop in [(4, 2, 3), (2, 3, 5), (1, 4, 7), (2, 1, 2)]:
        first, states, first_stats = batch_run(root, before, stop=stop, deterministic=True, **mode)
        second, _, second_stats = batch_run(root, after, state=gathered(states), deterministic=True, **mode)
        assert len({len(b) for b in second}) == 1
        if "bucket_per_step" in mode:
            for k in range(len(second[0])):
                assert len({share[k][0] for share in second}) == 1
        seen = Counter(i for run_ in (first, second) for share in run_ for _, batch in share for i in batch)
        if "bucket_per_step" in mode:
            assert max(seen.values()) == 1
            assert len(seen) + sum(st["excess"] for st in second_stats) >= len(files) - sum(
                st["excess"] for st in first_stats
            )
        else:
            assert sorted(seen) == files
            assert sum(seen.values()) - len(seen) == sum(st["padded"] for st in first_stats + second_stats)


@pytest.mark.parametrize(("nproc", "workers"), [(2, 2), (3, 0), (4, 0)])
def test_torchrun_one_bucket_per_step(
    shapes_folder: tuple[Path, list[str]], tmp_path: Path, nproc: int, workers: int
) -> None:
    """Every rank records its batch shape at every step: equal across ranks, step after step, with the
    DDP-style all-reduce completing; each sample at most once."""
    root, files = shapes_folder
    out = tmp_path / "aligned"
    args = [
        f"--root={root}",
        f"--num-workers={workers}",
        "--allreduce",
        "--batch-size=8",
        "--bucket-per-step",
    ]
    done = torchrun(nproc, out, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    got = reports(out, nproc)
    assert len({len(r["shapes"]) for r in got}) == 1
    for k in range(len(got[0]["shapes"])):
        assert len({tuple(r["shapes"][k]) for r in got}) == 1, f"step {k}: shapes differ across ranks"
    ids = [i for r in got for step in r["steps"] for i in step]
    assert len(ids) == len(set(ids)) and set(ids) <= set(files)
    assert len(ids) >= len(files) - nproc * max(workers, 1) * len(SHAPES)


def test_sources_that_cannot_plan_are_refused(tmp_path: Path) -> None:
    """A gzip-compressed shard cannot be read by offset: a planned run over it is refused."""
    import gzip

    from support.shards import standard_shard, write_shard

    shard = write_shard(tmp_path / "shard-0.tar", standard_shard(0, 4))
    packed = tmp_path / "shard-0.tar.gz"
    packed.write_bytes(gzip.compress(shard.read_bytes()))
    config = {"source_type": "webdataset", "source_config": {"url": str(packed)}, "equal_steps": "pad"}
    with pytest.raises(datago.ConfigError, match="equal_steps: shard .*gzip-compressed"):
        datago.Client(config)
