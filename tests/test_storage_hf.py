"""Object storage, the Hugging Face Hub: hf://datasets/<org>/<name>[@<revision>]/<path> against a loopback Hub
(tests/support/hf_server.py: the tree API, paginated; the resolve endpoint, redirecting to a second host
that refuses an Authorization header), with HF_ENDPOINT and HF_TOKEN or the token file."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import datago
from support.config import filesystem_config, image_config, webdataset_config
from support.drain import drain
from support.hf_server import HubServer, Repo
from support.leaks import assert_no_secret, run_texts
from support.shards import image_bytes, shard_bytes, standard_shard

N_IMAGES = 45


def files() -> dict[str, bytes]:
    out = {
        f"imgs/part{i % 3}/img{i:03d}.jpg": image_bytes(24 + i % 5 * 4, 20 + i % 3 * 4, i)
        for i in range(N_IMAGES)
    }
    out["imgs/README.md"] = b"# not an image"
    for s in range(4):
        out[f"shards/train-{s:03d}.tar"] = shard_bytes(standard_shard(s, 6))
    out["shards/meta.json"] = b"{}"
    return out


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    srv = HubServer(
        repos={
            "org/public": Repo(files(), revisions=("main", "v1.0", "refs/pr/1")),
            "org/private": Repo(files(), private=True),
        },
        page_size=10,
    )
    yield srv
    srv.stop()


@pytest.fixture
def hf_env(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    hub.hub_auth.clear()
    hub.storage_requests.clear()
    return hub


def image_urls(repo: str = "org/private") -> list[str]:
    return sorted(f"hf://datasets/{repo}/{k}" for k in files() if k.endswith(".jpg"))


def test_prefix_once_each_token_only_to_the_hub(hf_env: HubServer) -> None:
    d = drain(datago.Client(filesystem_config("hf://datasets/org/private/imgs")))
    assert d.error is None and not d.skips
    assert sorted(d.ids) == image_urls()
    d.by_id()
    # The tree was paginated (45 images + README in pages of 10) and every Hub request carried the token;
    # no storage request did (the storage server would have refused it).
    assert len(hf_env.hub_auth) >= N_IMAGES + 5
    assert set(hf_env.hub_auth) == {f"Bearer {hf_env.token}"}
    assert len(hf_env.storage_requests) == N_IMAGES
    assert all(auth is None for _, auth, _ in hf_env.storage_requests)


def test_token_file_revision_and_pixels(
    hf_env: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    (tmp_path / "hf-home").mkdir()
    (tmp_path / "hf-home" / "token").write_text(hf_env.token + "\n")  # where the Hub's own tools write it
    img = image_config(size=32, ratio=8)
    got = drain(
        datago.Client(filesystem_config("hf://datasets/org/private/imgs", img, concurrency=1))
    ).by_id()
    pinned = drain(datago.Client(filesystem_config("hf://datasets/org/public@v1.0/imgs/", img))).by_id()
    assert sorted(pinned) == sorted(u.replace("org/private", "org/public@v1.0") for u in image_urls())
    local = tmp_path / "local"
    for k, v in files().items():
        (local / k).parent.mkdir(parents=True, exist_ok=True)
        (local / k).write_bytes(v)
    on_disk = drain(datago.Client(filesystem_config(local / "imgs", img))).by_id()
    for path, sample in on_disk.items():
        rel = Path(path).relative_to(local).as_posix()
        assert np.array_equal(sample.array, got[f"hf://datasets/org/private/{rel}"].array)


def test_ranks_split_like_the_local_folder(hf_env: HubServer, tmp_path: Path) -> None:
    local = tmp_path / "local"
    for k, v in files().items():
        (local / k).parent.mkdir(parents=True, exist_ok=True)
        (local / k).write_bytes(v)
    union: Counter[str] = Counter()
    for rank in range(2):
        remote = drain(
            datago.Client(filesystem_config("hf://datasets/org/private/imgs", rank=rank, world_size=2))
        )
        disk = drain(datago.Client(filesystem_config(local / "imgs", rank=rank, world_size=2)))
        rel = sorted(i.removeprefix("hf://datasets/org/private/imgs/") for i in remote.ids)
        assert rel == sorted(Path(i).relative_to(local / "imgs").as_posix() for i in disk.ids)
        union.update(remote.ids)
    assert sorted(union) == image_urls() and set(union.values()) == {1}


def test_shards_by_prefix_and_braces_and_map_dataset(hf_env: HubServer) -> None:
    base = "hf://datasets/org/private/shards/"
    want = sorted(f"{base}train-{s:03d}.tar#s{s:02d}_{i:03d}" for s in range(4) for i in range(6))
    for url in (base, base + "train-{000..003}.tar"):
        d = drain(datago.Client(webdataset_config(url)))
        assert d.error is None and not d.skips and sorted(d.ids) == want
    with datago.MapDataset(filesystem_config("hf://datasets/org/private/imgs")) as ds:
        assert ds.ids == image_urls() and ds[5].id == image_urls()[5]


def test_broken_bodies_are_resumed_with_ranges(hf_env: HubServer) -> None:
    hf_env.cut_first = True
    try:
        d = drain(datago.Client(webdataset_config("hf://datasets/org/private/shards/")))
    finally:
        hf_env.cut_first = False
    assert d.error is None and not d.skips and len(d.ids) == 24
    ranged = [r for _, _, r in hf_env.storage_requests if r]
    assert len(ranged) >= 4  # every shard's first body was cut, then resumed from where it stopped


def test_errors_name_the_key_with_the_hubs_code_and_never_show_the_token(
    hf_env: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        ("hf://datasets/org/nope/imgs", "RepoNotFound"),
        ("hf://datasets/org/public@v9/imgs", "RevisionNotFound"),
        ("hf://datasets/org/private/missing", "EntryNotFound"),
    ]
    for url, code in cases:
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(filesystem_config(url))
        assert code in str(info.value) and info.value.key == "source_config.root_path"
        assert hf_env.token not in str(info.value)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_" + "x" * 20)
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(webdataset_config("hf://datasets/org/private/shards/"))
    assert "RepoNotFound" in str(info.value) and "hf_wrong_" not in str(info.value)
    for bad, msg in (
        ("hf://models/org/x/a.tar", "only dataset repositories"),
        ("hf://datasets/org", "no repository"),
    ):
        with pytest.raises(datago.ConfigError, match=msg):
            datago.Client(webdataset_config(bad))


def test_public_repository_without_a_token(hf_env: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    d = drain(datago.Client(filesystem_config("hf://datasets/org/public/imgs")))
    assert sorted(d.ids) == image_urls("org/public")
    assert set(hf_env.hub_auth) == {""}
    with pytest.raises(datago.ConfigError, match="RepoNotFound"):
        datago.Client(filesystem_config("hf://datasets/org/private/imgs"))


def test_a_revision_with_slashes_written_escaped(hf_env: HubServer) -> None:
    d = drain(datago.Client(webdataset_config("hf://datasets/org/public@refs%2Fpr%2F1/shards/")))
    assert len(d.ids) == 24 and not d.skips
    assert all(i.startswith("hf://datasets/org/public@refs%2Fpr%2F1/shards/train-") for i in d.ids)


def test_retry_after_is_waited_and_every_shard_arrives_once(hf_env: HubServer) -> None:
    """The Hub answers the first request of every tree page and resolve 503 with Retry-After: 2: the retry
    waits the 2 s (measured between the two requests at the server), nothing is lost or doubled."""
    hf_env.times.clear()
    hf_env.retry_after = 2
    try:
        cfg = webdataset_config("hf://datasets/org/private/shards/", concurrent_downloads=4)
        d = drain(datago.Client(cfg), timeout=120)
    finally:
        hf_env.retry_after = 0
    assert d.error is None and not d.skips and len(d.ids) == len(set(d.ids)) == 24
    gaps = hf_env.retry_gaps()
    assert len([t for t in gaps if "/resolve/" in t]) == 4, gaps  # every shard refused once, then read
    assert any("/tree/" in t for t in gaps), gaps  # the listing too
    assert min(gaps.values()) >= 1.9 and max(gaps.values()) < 10, gaps


def test_no_secret_in_logs_errors_stats_reprs_skips_or_state(
    hf_env: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="datago")
    base = "hf://datasets/org/private/"
    shards = webdataset_config([base + "shards/train-{000..001}.tar", base + "shards/train-404.tar"])
    texts = run_texts(shards, filesystem_config(base + "imgs"))
    assert any("train-404.tar" in t and "EntryNotFound" in t for t in texts)  # the missing object's error
    wrong = "hf_wrong_" + "y" * 24
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(filesystem_config(base + "imgs"))
    assert "RepoNotFound" in str(info.value)
    texts += [str(info.value), repr(info.value)]
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    assert_no_secret(texts, [hf_env.token, wrong, wrong.removeprefix("hf_")])
