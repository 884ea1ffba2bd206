"""Object storage, Google Cloud Storage: gs://bucket/key against fake-gcs-server (on 127.0.0.1, started here)
through STORAGE_EMULATOR_HOST and through storage.endpoint_url; the same data on local disk as the
reference; a missing bucket; an object deleted after the listing."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import datago
from support.background import BackgroundRun, read_for
from support.config import filesystem_config, webdataset_config
from support.gcs_server import FakeGCS
from support.leaks import assert_no_secret, run_texts
from support.s3_server import FaultProxy
from support.storage_cases import (
    N_IMAGES,
    check_faults_every_sample_once,
    check_prefix_once_each_ranks_and_pixels,
    check_retry_after,
    check_shards_and_resume,
    image_urls,
    store_files,
    write_files,
)
from support.token_server import GoogleTokenServer

BASE = "gs://data"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGCS, Path]]:
    root = tmp_path_factory.mktemp("gcs")
    write_files(root / "data", store_files())
    srv = FakeGCS(root)
    yield srv, root / "data"
    srv.stop()


@pytest.fixture
def gcs_env(gcs: tuple[FakeGCS, Path], monkeypatch: pytest.MonkeyPatch) -> FakeGCS:
    srv, _ = gcs
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return srv


def test_prefix_once_each_ranks_and_pixels(gcs_env: FakeGCS, gcs: tuple[FakeGCS, Path]) -> None:
    _, local = gcs
    check_prefix_once_each_ranks_and_pixels(BASE, local)


def test_shards_map_dataset_resume_and_endpoint_key(
    gcs_env: FakeGCS, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_shards_and_resume(BASE)
    # Without the emulator variable: the endpoint key, anonymous (no credential lookup).
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    storage = {"endpoint_url": gcs_env.endpoint, "anonymous": True}
    with datago.MapDataset(filesystem_config("gs://data/imgs", storage=storage)) as ds:
        assert ds.ids == image_urls(BASE) and ds[4].id == image_urls(BASE)[4]


def test_missing_bucket_empty_prefix_and_deleted_object(gcs_env: FakeGCS) -> None:
    for url, msg in (("gs://nobucket/imgs", "nobucket"), ("gs://data/nothing", "no object under")):
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(filesystem_config(url))
        assert msg in str(info.value) and info.value.key == "source_config.root_path", str(info.value)
    with datago.MapDataset(filesystem_config("gs://data/imgs")) as ds:
        name = image_urls(BASE)[2].removeprefix("gs://data/")
        gcs_env.delete("data", name)
        try:
            got = ds.get_many([1, 2, 3])
        finally:
            gcs_env.put("data", name, store_files()[name])
        assert got[0] is not None and got[1] is None and got[2] is not None
        assert [(r.id, r.reason) for r in ds.skipped()] == [(image_urls(BASE)[2], "not_found")]


def test_faults_every_sample_once(gcs_env: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    proxy = FaultProxy(
        gcs_env.endpoint, plan=["ok", "cut", "ok", "slowdown", "reset", "ok", "throttle", "cut"]
    )
    check_faults_every_sample_once(BASE, proxy, {"endpoint_url": proxy.endpoint, "anonymous": True})


def test_retry_after_is_waited_and_every_shard_arrives_once(
    gcs_env: FakeGCS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 with Retry-After: 2 for the first request of every object and listing page: the retry waits the
    2 s (measured between the two requests at the proxy), nothing is lost or doubled."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    proxy = FaultProxy(gcs_env.endpoint, retry_after=2)
    storage = {"endpoint_url": proxy.endpoint, "anonymous": True}
    check_retry_after(BASE, proxy, storage, object_marker="alt=media", listing_marker="prefix=")


@contextlib.contextmanager
def token_guarded(upstream: str) -> Iterator[tuple[GoogleTokenServer, FaultProxy]]:
    """A loopback token endpoint issuing 20-second access tokens, and a proxy in front of ``upstream``
    (fake-gcs-server, which itself accepts anything) that refuses (401) any request without an issued,
    unexpired token."""
    tokens = GoogleTokenServer(lifetime=20)
    proxy = FaultProxy(upstream, authorize=tokens.valid)
    try:
        yield tokens, proxy
    finally:
        proxy.stop()
        tokens.stop()


@pytest.fixture
def google_tokens(
    gcs: tuple[FakeGCS, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[GoogleTokenServer, FaultProxy]]:
    """Application Default Credentials from a service-account JSON whose token endpoint is the token server
    of ``token_guarded``."""
    srv, _ = gcs
    with token_guarded(srv.endpoint) as (tokens, proxy):
        (tmp_path / "service-account.json").write_text(json.dumps(tokens.credentials()))
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "service-account.json"))
        yield tokens, proxy


def service_account_run(workdir: Path) -> dict[str, Any]:
    """In the background (support/background.py): fake-gcs-server with the images behind ``token_guarded``, a
    2-minute slow read of the prefix with the service account, then what the proxy does with an unknown
    token and an expired one."""
    root = workdir / "gcs"
    write_files(root / "data", {k: v for k, v in store_files().items() if k.startswith("imgs/")})
    srv = FakeGCS(root)
    try:
        with token_guarded(srv.endpoint) as (tokens, proxy):
            (workdir / "service-account.json").write_text(json.dumps(tokens.credentials()))
            # Many epochs over the prefix, read slowly: every epoch lists again and reads every object.
            cfg = filesystem_config(
                "gs://data/imgs",
                storage={"endpoint_url": proxy.endpoint},
                epochs=1000,
                samples_buffer_size=2,
                prefetch_buffer_size=4,
            )
            got = read_for(
                cfg, 120, workdir, GOOGLE_APPLICATION_CREDENTIALS=str(workdir / "service-account.json")
            )
            got.update(issued=len(tokens.issued), refused=tokens.refused, rejected=proxy.rejected)
            expired = tokens.issue(lifetime=0)
            got["probes"] = [
                requests.get(
                    f"{proxy.endpoint}/storage/v1/b/data/o",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).status_code
                for token in ("ya29.unknown", expired)
            ]
            got["rejected_after_probes"] = proxy.rejected
    finally:
        srv.stop()
    return got


@pytest.mark.background(run=service_account_run)
def test_service_account_tokens_of_20_seconds_over_a_2_minute_run(background: BackgroundRun) -> None:
    got = background.result()
    assert got["returncode"] == 0, got["stderr"]
    assert sum(got["skipped"].values()) == 0, got["skips"][:3]
    assert got["n"] > N_IMAGES * 3
    # Refreshed before each expiry (x/oauth2 renews 10 s ahead: about every 10 s), never used after it.
    assert got["issued"] >= 6 and got["refused"] == 0, (got["issued"], got["refused"])
    assert got["rejected"] == 0
    # The proxy does refuse what a store refuses: an unknown token, an expired one.
    assert got["probes"] == [401, 401] and got["rejected_after_probes"] == 2, got


def test_no_secret_in_logs_errors_stats_reprs_skips_or_state(
    google_tokens: tuple[GoogleTokenServer, FaultProxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    tokens, proxy = google_tokens
    caplog.set_level(logging.DEBUG, logger="datago")
    storage = {"endpoint_url": proxy.endpoint}
    present = "gs://data/shards/train-{000..001}.tar"
    shards = webdataset_config([present, "gs://data/shards/train-404.tar"], storage=storage)
    texts = run_texts(shards, filesystem_config("gs://data/imgs", storage=storage))
    assert any("train-404.tar" in t and "Not Found" in t for t in texts)  # the missing object's error
    # A wrong key: the token endpoint refuses it, with its own code, at construction.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "wrong.json").write_text(json.dumps(tokens.credentials(key=other)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "wrong.json"))
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(filesystem_config("gs://data/imgs", storage=storage))
    assert "invalid_grant" in str(info.value) and info.value.key == "source_config.root_path", str(info.value)
    texts += [str(info.value), repr(info.value)]
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    assert tokens.issued and tokens.refused >= 1
    key_lines = [line for line in tokens.private_key_pem.splitlines() if "PRIVATE KEY" not in line]
    wrong_lines = [
        line for line in json.loads((tmp_path / "wrong.json").read_text())["private_key"].splitlines()
    ]
    secrets = (
        [t for t, _ in tokens.issued]
        + key_lines[1:-1]
        + [w for w in wrong_lines if "PRIVATE KEY" not in w][1:-1]
    )
    assert_no_secret(texts, secrets)
