"""Object storage, Azure Blob Storage: az://container/path against Azurite (npm ``azurite``, on 127.0.0.1,
started here), with a connection string, an account key and a SAS token; the same data on local disk as
the reference; wrong key, missing container; no secret in errors."""

from __future__ import annotations

import datetime
import logging
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import datago
from support.azurite import ACCOUNT, KEY, Azurite
from support.background import BackgroundRun, read_for
from support.config import filesystem_config, webdataset_config
from support.drain import drain
from support.leaks import assert_no_secret, run_texts
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
from support.token_server import AzureTokenServer, self_signed

BASE = "az://data"
AZ_VARS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    srv = Azurite(tmp_path_factory.mktemp("azurite"))
    srv.put("data", store_files())
    local = tmp_path_factory.mktemp("local")
    write_files(local, store_files())
    yield srv, local
    srv.stop()


@pytest.fixture
def az_env(azurite: tuple[Azurite, Path], monkeypatch: pytest.MonkeyPatch) -> Azurite:
    srv, _ = azurite
    for k in AZ_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", srv.connection_string)
    return srv


def account_sas() -> str:
    """A read-and-list account SAS for an hour, signed with KEY (two tests need the same one)."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return str(
        generate_account_sas(
            ACCOUNT,
            KEY,
            resource_types=ResourceTypes(service=True, container=True, object=True),
            permission=AccountSasPermissions(read=True, list=True),
            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        )
    )


def test_prefix_once_each_ranks_and_pixels(az_env: Azurite, azurite: tuple[Azurite, Path]) -> None:
    _, local = azurite
    check_prefix_once_each_ranks_and_pixels(BASE, local)


def test_shards_map_dataset_and_resume(az_env: Azurite) -> None:
    check_shards_and_resume(BASE)
    with datago.MapDataset(filesystem_config("az://data/imgs")) as ds:
        assert ds.ids == image_urls(BASE) and ds[3].id == image_urls(BASE)[3]


def test_account_key_and_sas_token(az_env: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    storage = {"endpoint_url": az_env.endpoint}
    assert sorted(
        drain(datago.Client(filesystem_config("az://data/imgs", storage=storage))).ids
    ) == image_urls(BASE)
    sas = account_sas()
    monkeypatch.delenv("AZURE_STORAGE_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    d = drain(datago.Client(filesystem_config("az://data/imgs", storage=storage)))
    assert sorted(d.ids) == image_urls(BASE)
    signature = [p for p in sas.split("&") if p.startswith("sig=")][0]
    assert signature not in repr(d.stats)


def test_wrong_key_missing_container_and_no_secret(az_env: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    wrong = KEY[:-8] + "AAAAAAA="
    monkeypatch.setenv("AZURE_STORAGE_KEY", wrong)
    storage = {"endpoint_url": az_env.endpoint}
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(filesystem_config("az://data/imgs", storage=storage))
    # Azure answers AuthenticationFailed, Azurite AuthorizationFailure: both 403, with the service's code.
    msg = str(info.value)
    assert ("AuthenticationFailed" in msg or "AuthorizationFailure" in msg) and "HTTP 403" in msg, msg
    assert wrong not in msg
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    for url, code in (
        ("az://nocontainer/imgs", "ContainerNotFound"),
        ("az://data/nothing", "no object under"),
    ):
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(filesystem_config(url, storage=storage))
        assert code in str(info.value) and KEY not in str(info.value), str(info.value)
    monkeypatch.delenv("AZURE_STORAGE_KEY")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT")
    with pytest.raises(datago.DatagoError, match="AZURE_STORAGE_CONNECTION_STRING"):
        datago.Client(filesystem_config("az://data/imgs"))


def test_faults_every_sample_once(az_env: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.s3_server import FaultProxy

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    base = az_env.endpoint.rsplit("/", 1)[0]
    proxy = FaultProxy(base, plan=["ok", "cut", "ok", "slowdown", "reset", "ok", "throttle", "cut"])
    check_faults_every_sample_once(BASE, proxy, {"endpoint_url": f"{proxy.endpoint}/{ACCOUNT}"})


def test_retry_after_is_waited_and_every_shard_arrives_once(
    az_env: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 with Retry-After: 2 for the first request of every blob and listing page: azcore's retry policy
    waits the 2 s (measured between the two requests at the proxy), nothing is lost or doubled."""
    from support.s3_server import FaultProxy

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    proxy = FaultProxy(az_env.endpoint.rsplit("/", 1)[0], retry_after=2)
    storage = {"endpoint_url": f"{proxy.endpoint}/{ACCOUNT}"}
    check_retry_after(BASE, proxy, storage, object_marker=".tar", listing_marker="comp=list")


def managed_identity_run(workdir: Path) -> dict[str, Any]:
    """In the background (support/background.py): Azurite over HTTPS with OAuth on, the images in it, a
    managed-identity endpoint handing out 20-second tokens, a 2-minute slow read of the prefix with the
    default credential chain, then what Azurite answers an expired token and one for another audience."""
    cert, key = self_signed(workdir)
    srv = Azurite(workdir, tls=(cert, key))
    tokens = AzureTokenServer(lifetime=20)
    try:
        srv.put("data", {k: v for k, v in store_files().items() if k.startswith("imgs/")})
        # This process is the run's own: no other credential of the chain comes before the managed identity.
        for k in [
            *AZ_VARS,
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
        ]:
            os.environ.pop(k, None)
        cfg = filesystem_config(
            "az://data/imgs",
            storage={"endpoint_url": srv.endpoint},
            epochs=1000,
            samples_buffer_size=2,
            prefetch_buffer_size=4,
        )
        # The reader's own process: Go reads SSL_CERT_FILE (the certificate Azurite serves) once per process.
        env = {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "SSL_CERT_FILE": str(cert), **tokens.env()}
        got = read_for(cfg, 120, workdir, timeout=200, **env)
        got.update(issued=len(tokens.issued), refused=tokens.refused)
        expired, _ = tokens.issue(lifetime=-5)
        wrong_audience, _ = tokens.issue(resource="https://vault.azure.net")
        got["probes"] = []
        for token in (expired, wrong_audience):
            r = requests.get(
                f"{srv.endpoint}/data?restype=container&comp=list",
                headers={"Authorization": f"Bearer {token}", "x-ms-version": "2021-08-06"},
                verify=str(cert),
                timeout=10,
            )
            got["probes"].append((r.status_code, r.text[:300]))
    finally:
        tokens.stop()
        srv.stop()
    return got


@pytest.mark.background(run=managed_identity_run)
def test_managed_identity_tokens_of_20_seconds_over_a_2_minute_run(background: BackgroundRun) -> None:
    """The default Azure credential chain, on its managed-identity link (App Service's IDENTITY_ENDPOINT, a
    loopback server handing out 20-second tokens), against Azurite over HTTPS with OAuth on: Azurite refuses
    an expired token, so a run that outlives several tokens only succeeds if the SDK renews them."""
    got = background.result()
    assert got["returncode"] == 0, got["stderr"]
    # Azurite does refuse an expired token and one for another audience (the check the run relies on).
    for status, text in got["probes"]:
        assert status in (401, 403), (status, text)
    assert sum(got["skipped"].values()) == 0, got["skips"][:3]
    assert got["n"] > N_IMAGES * 3
    # A token per expiry (azcore renews an expired one before the request that needs it): 6 in 2 minutes.
    assert got["issued"] >= 5 and got["refused"] == 0, (got["issued"], got["refused"])


def test_no_secret_in_logs_errors_stats_reprs_skips_or_state(
    az_env: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="datago")
    storage = {"endpoint_url": az_env.endpoint}
    shards = webdataset_config(
        ["az://data/shards/train-{000..001}.tar", "az://data/shards/train-404.tar"], storage=storage
    )
    prefix = filesystem_config("az://data/imgs", storage=storage)
    sas = account_sas()
    signature = [p for p in sas.split("&") if p.startswith("sig=")][0].removeprefix("sig=")
    texts: list[str] = []
    for creds in (
        {"AZURE_STORAGE_CONNECTION_STRING": az_env.connection_string},
        {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": KEY},
        {"AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_SAS_TOKEN": sas},
    ):
        for k in AZ_VARS:
            monkeypatch.delenv(k, raising=False)
        for k, v in creds.items():
            monkeypatch.setenv(k, v)
        texts += run_texts(shards, prefix)
    assert any("train-404.tar" in t and "BlobNotFound" in t for t in texts)  # the missing object's error
    # Wrong credentials, each refused at construction with the service's code.
    wrong_key = KEY[:-8] + "AAAAAAA="
    wrong_sas = sas.replace(signature, "A" * 43 + "%3D")
    for creds in (
        {"AZURE_STORAGE_KEY": wrong_key},
        {"AZURE_STORAGE_SAS_TOKEN": wrong_sas},
        {"AZURE_STORAGE_CONNECTION_STRING": az_env.connection_string.replace(KEY, wrong_key)},
    ):
        for k in AZ_VARS:
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
        for k, v in creds.items():
            monkeypatch.setenv(k, v)
        with pytest.raises(datago.ConfigError) as info:
            datago.Client(prefix)
        assert "HTTP 403" in str(info.value), str(info.value)
        texts += [str(info.value), repr(info.value)]
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    secrets = [KEY, wrong_key, signature, urllib.parse.unquote(signature), az_env.connection_string, "A" * 43]
    assert_no_secret(texts, secrets)
