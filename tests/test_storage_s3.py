"""Object storage, S3: image prefixes and WebDataset shards in moto (server mode on 127.0.0.1, signature
checking on), read end to end through the AWS SDK's own configuration (environment variables,
credential_process), checked against the same data on local disk; a fault proxy that cuts bodies, resets
connections and throttles; the documented errors; no secret anywhere."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import datago
from support.background import BackgroundRun, read_for
from support.config import filesystem_config, image_config, webdataset_config
from support.drain import drain
from support.leaks import assert_no_secret, run_texts
from support.process import PYTHON_DIR, run_python
from support.s3_server import FaultProxy, Key, S3Server
from support.shards import image_bytes, standard_shard, write_shard

BUCKET = "data"
N_IMAGES = 90
N_SHARDS, PER_SHARD = 8, 12


def tree() -> dict[str, bytes]:
    """A nested image tree (with a non-image and a directory marker, both ignored)."""
    files = {
        f"imgs/d{i % 4}/sub{i % 3}/img{i:03d}.jpg": image_bytes(30 + i % 7 * 6, 24 + i % 5 * 6, i)
        for i in range(N_IMAGES)
    }
    files["imgs/d0/notes.txt"] = b"not an image"
    files["imgs/d1/"] = b""
    return files


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, Path]]:
    """moto with the tree and 8 shards, and the same data on local disk (returned as its root)."""
    srv = S3Server()
    srv.bucket(BUCKET)
    local = tmp_path_factory.mktemp("local")
    objects = tree()
    for s in range(N_SHARDS):
        path = write_shard(local / "shards" / f"shard-{s:03d}.tar", standard_shard(s, PER_SHARD))
        objects[f"shards/shard-{s:03d}.tar"] = path.read_bytes()
    objects["shards/README.md"] = b"not a shard"
    srv.put(BUCKET, objects)
    for key, data in objects.items():
        if key.startswith("imgs/") and not key.endswith("/"):
            (local / key).parent.mkdir(parents=True, exist_ok=True)
            (local / key).write_bytes(data)
    yield srv, local
    srv.stop()


@pytest.fixture
def aws_env(s3: tuple[S3Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The SDK's environment for the server: its key and endpoint, no shared files of this machine, and never
    the instance metadata service (no such service is reachable from the tests)."""
    srv, _ = s3
    isolate(monkeypatch, tmp_path)
    for k, v in srv.env().items():
        monkeypatch.setenv(k, v)
    return srv


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def image_keys() -> list[str]:
    return sorted(k for k in tree() if k.endswith(".jpg"))


# ------------------------------------------------------------------------------------------ prefixes


def test_prefix_serves_every_object_once_with_full_urls(aws_env: S3Server) -> None:
    d = drain(datago.Client(filesystem_config(f"s3://{BUCKET}/imgs")))
    assert d.error is None and not d.skips
    assert sorted(d.ids) == [f"s3://{BUCKET}/{k}" for k in image_keys()]
    d.by_id()  # none twice


def test_ranks_are_disjoint_complete_and_split_like_the_local_folder(
    aws_env: S3Server, s3: tuple[S3Server, Path]
) -> None:
    _, local = s3
    union: Counter[str] = Counter()
    for rank in range(3):
        remote = drain(datago.Client(filesystem_config(f"s3://{BUCKET}/imgs/", rank=rank, world_size=3)))
        on_disk = drain(datago.Client(filesystem_config(local / "imgs", rank=rank, world_size=3)))
        rel = sorted(i.removeprefix(f"s3://{BUCKET}/imgs/") for i in remote.ids)
        assert rel and rel == sorted(Path(i).relative_to(local / "imgs").as_posix() for i in on_disk.ids)
        union.update(remote.ids)
    assert sorted(union) == [f"s3://{BUCKET}/{k}" for k in image_keys()] and set(union.values()) == {1}


def test_crop_and_resize_gives_the_pixels_of_the_local_run(
    aws_env: S3Server, s3: tuple[S3Server, Path]
) -> None:
    _, local = s3
    img = image_config(size=32, ratio=8)
    remote = drain(datago.Client(filesystem_config(f"s3://{BUCKET}/imgs", img))).by_id()
    on_disk = drain(datago.Client(filesystem_config(local / "imgs", img))).by_id()
    assert len(remote) == N_IMAGES
    for path, sample in on_disk.items():
        other = remote[f"s3://{BUCKET}/" + Path(path).relative_to(local).as_posix()]
        assert np.array_equal(sample.array, other.array)


def test_seeded_order_and_exact_resume(aws_env: S3Server) -> None:
    cfg = filesystem_config(f"s3://{BUCKET}/imgs", random_sampling=True, seed=3, concurrency=1)
    with datago.Client(cfg) as first:
        before = [next(first).id for _ in range(25)]
        state = json.loads(json.dumps(first.state_dict()))
    with datago.Client(cfg, state=state) as second:
        after = [s.id for s in second]
    full = drain(datago.Client(cfg)).ids
    assert before + after == full and sorted(full) == [f"s3://{BUCKET}/{k}" for k in image_keys()]


def test_map_dataset_over_a_prefix(aws_env: S3Server, s3: tuple[S3Server, Path]) -> None:
    srv, local = s3
    with datago.MapDataset(filesystem_config(f"s3://{BUCKET}/imgs")) as ds:
        assert len(ds) == N_IMAGES and ds.ids == [f"s3://{BUCKET}/{k}" for k in image_keys()]
        i = 17
        assert (
            ds[i].array.tobytes() == datago.MapDataset(filesystem_config(local / "imgs"))[i].array.tobytes()
        )
        # An object deleted after the listing: skipped as not_found, the rest arrives.
        gone = image_keys()[3]
        srv.s3.delete_object(Bucket=BUCKET, Key=gone)
        try:
            got = ds.get_many([2, 3, 4])
        finally:
            srv.put(BUCKET, {gone: tree()[gone]})
        assert got[1] is None and got[0] is not None and got[2] is not None
        assert [(r.id, r.reason) for r in ds.skipped()] == [(f"s3://{BUCKET}/{gone}", "not_found")]


def test_max_file_bytes_is_checked_from_the_listed_size(aws_env: S3Server, s3: tuple[S3Server, Path]) -> None:
    srv, _ = s3
    sizes = {f"s3://{BUCKET}/{k}": len(v) for k, v in tree().items() if k.endswith(".jpg")}
    limit = sorted(sizes.values())[len(sizes) // 2]
    proxy = FaultProxy(srv.endpoint)
    try:
        storage = {"endpoint_url": proxy.endpoint, "path_style": True}
        d = drain(
            datago.Client(filesystem_config(f"s3://{BUCKET}/imgs", storage=storage, max_file_bytes=limit))
        )
    finally:
        proxy.stop()
    big = sorted(u for u, n in sizes.items() if n > limit)
    assert big and sorted(d.skipped_ids("too_large")) == big
    assert sorted(d.ids) == sorted(u for u, n in sizes.items() if n <= limit)
    # The objects over the limit were never asked for.
    asked = {path for _, path in proxy.requests}
    assert not any(u.removeprefix("s3:/") in p for u in big for p in asked)


def test_anonymous_requests_are_unsigned(
    s3: tuple[S3Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    srv, _ = s3
    isolate(monkeypatch, tmp_path)
    for k, v in srv.env().items():
        monkeypatch.setenv(k, v)  # keys in the environment: anonymous must not use them
    proxy = FaultProxy(srv.endpoint)
    try:
        storage = {"endpoint_url": proxy.endpoint, "path_style": True, "anonymous": True}
        # moto, with IAM checks on, answers an unsigned request with a 500 (AWS: 403 AccessDenied).
        with pytest.raises(datago.DatagoError) as info:
            datago.Client(filesystem_config(f"s3://{BUCKET}/imgs", storage=storage))
    finally:
        proxy.stop()
    assert proxy.authorizations and not any(proxy.authorizations), proxy.authorizations
    assert "source_config.root_path" in str(info.value) and srv.key.secret not in str(info.value)


# ------------------------------------------------------------------------------------------- shards


def shard_ids(prefix: str) -> list[str]:
    return sorted(
        f"{prefix}shard-{s:03d}.tar#s{s:02d}_{i:03d}" for s in range(N_SHARDS) for i in range(PER_SHARD)
    )


@pytest.mark.parametrize("form", ["braces", "prefix", "list"])
def test_webdataset_shards_by_brace_pattern_prefix_and_list(aws_env: S3Server, form: str) -> None:
    base = f"s3://{BUCKET}/shards/"
    url: Any = {
        "braces": base + "shard-{000..007}.tar",
        "prefix": base,
        "list": [base + "shard-{000..003}.tar", base + "shard-{004..007}.tar"],
    }[form]
    d = drain(datago.Client(webdataset_config(url)))
    assert d.error is None and not d.skips
    assert sorted(d.ids) == shard_ids(base)
    s = d.by_id()[base + "shard-002.tar#s02_005"]
    assert s.caption == "caption of s02_005 ü" and s.label == 5


def test_webdataset_ranks_and_seeded_shuffle(aws_env: S3Server) -> None:
    base = f"s3://{BUCKET}/shards/"
    union: list[str] = []
    for rank in range(3):
        cfg = webdataset_config(
            base, rank=rank, world_size=3, shuffle=True, seed=4, shuffle_buffer=10, concurrency=1
        )
        a, b = drain(datago.Client(cfg)).ids, drain(datago.Client(cfg)).ids
        assert a == b
        union += a
    assert sorted(union) == shard_ids(base)


# ------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("source", ["filesystem", "webdataset"])
def test_faults_every_sample_once_or_counted(
    aws_env: S3Server, s3: tuple[S3Server, Path], source: str
) -> None:
    srv, _ = s3
    proxy = FaultProxy(
        srv.endpoint, plan=["ok", "cut", "ok", "slowdown", "reset", "ok", "throttle", "cut", "ok"]
    )
    storage = {"endpoint_url": proxy.endpoint, "path_style": True, "region": "us-east-1"}
    try:
        if source == "filesystem":
            cfg = filesystem_config(f"s3://{BUCKET}/imgs", storage=storage, concurrency=4)
            want = [f"s3://{BUCKET}/{k}" for k in image_keys()]
        else:
            cfg = webdataset_config(
                f"s3://{BUCKET}/shards/", storage=storage, max_retries=8, concurrent_downloads=3
            )
            want = shard_ids(f"s3://{BUCKET}/shards/")
        t0 = time.monotonic()
        d = drain(datago.Client(cfg), timeout=120)
    finally:
        proxy.stop()
    assert d.error is None
    delivered = Counter(d.ids)
    assert set(delivered.values()) <= {1}
    lost = set(want) - set(delivered)
    assert len(lost) == sum(d.stats["skipped"].values()) if lost else True
    # Every fault is one a retry or a ranged resume fixes: nothing is lost.
    assert not lost and not d.skips, (d.skips[:3], proxy.counts)
    assert proxy.counts.get("cut", 0) >= 2 and proxy.counts.get("slowdown", 0) >= 1, proxy.counts
    assert time.monotonic() - t0 < 100


def test_retry_after_is_waited_and_every_shard_arrives_once(
    aws_env: S3Server, s3: tuple[S3Server, Path]
) -> None:
    """503 SlowDown with Retry-After: 2 for the first request of every object (and listing page): the SDK's
    retry waits the 2 s (measured between the two requests at the proxy), nothing is lost or doubled."""
    srv, _ = s3
    proxy = FaultProxy(srv.endpoint, retry_after=2)
    storage = {"endpoint_url": proxy.endpoint, "path_style": True}
    try:
        cfg = webdataset_config(f"s3://{BUCKET}/shards/", storage=storage, concurrent_downloads=4)
        d = drain(datago.Client(cfg), timeout=120)
    finally:
        proxy.stop()
    assert d.error is None and not d.skips and sorted(d.ids) == shard_ids(f"s3://{BUCKET}/shards/")
    d.by_id()
    gaps = proxy.retry_gaps()
    assert len([t for t in gaps if ".tar" in t]) == N_SHARDS, gaps  # every shard refused once, then read
    assert any("list-type=2" in t for t in gaps), gaps  # the listing too
    assert min(gaps.values()) >= 1.9 and max(gaps.values()) < 10, gaps


# ---------------------------------------------------------------------------------------- addressing


def test_path_style_and_virtual_host_addressing(s3: tuple[S3Server, Path], tmp_path: Path) -> None:
    """endpoint_url with path_style (https://endpoint/bucket/key) and without it (https://bucket.endpoint/key,
    the default of AWS and R2): a fresh process each, since Go reads HTTP_PROXY once per process."""
    srv, _ = s3
    proxy = FaultProxy(srv.endpoint)
    port = srv.port
    code = """
        import json, sys
        import datago
        cfg = json.loads(open("cfg.json").read())
        with datago.Client(cfg) as c:
            print(json.dumps(sorted(s.id for s in c)))
    """
    try:
        for path_style in (True, False):
            storage = {"endpoint_url": srv.virtual_endpoint, "path_style": path_style}
            (tmp_path / "cfg.json").write_text(
                json.dumps(filesystem_config(f"s3://{BUCKET}/imgs", storage=storage))
            )
            env = {
                k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()
            }
            env.update(
                srv.key.env(), AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none")
            )
            env.update(HTTP_PROXY=proxy.endpoint, PYTHONPATH=str(PYTHON_DIR))
            before = dict(proxy.counts)
            out = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(code)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert out.returncode == 0, out.stderr[-2000:]
            assert json.loads(out.stdout) == [f"s3://{BUCKET}/{k}" for k in image_keys()]
            assert sum(proxy.counts.values()) > sum(before.values())  # it went through the proxy
            hosts = {h for h, _ in proxy.hosts}
            assert (f"{BUCKET}.s3.datago.test:{port}" in hosts) == (not path_style), hosts
            proxy.hosts.clear()
    finally:
        proxy.stop()


# ------------------------------------------------------------------------------------------- errors


def test_wrong_key_denied_user_missing_bucket_and_empty_prefix(
    s3: tuple[S3Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    srv, _ = s3
    isolate(monkeypatch, tmp_path)
    cases = [
        (Key(srv.key.id, "W" * 40), f"s3://{BUCKET}/imgs", "SignatureDoesNotMatch"),
        (Key("AKIAUNKNOWNKEY000000", srv.key.secret), f"s3://{BUCKET}/imgs", "InvalidAccessKeyId"),
        (srv.denied_key, f"s3://{BUCKET}/imgs", "AccessDenied"),
        (srv.key, "s3://no-such-bucket/imgs", "NoSuchBucket"),
        (srv.key, f"s3://{BUCKET}/nothing-here", "no object under s3://data/nothing-here/"),
    ]
    for key, url, code in cases:
        for k, v in srv.env(key).items():
            monkeypatch.setenv(k, v)
        for make, cfg in (
            (datago.Client, filesystem_config(url)),
            (datago.MapDataset, filesystem_config(url)),
            (datago.Client, webdataset_config(url + "/")),
            (datago.Client, webdataset_config(url + "/a.tar")),
        ):
            if code.startswith("no object") and str(cfg["source_config"].get("url")).endswith(".tar"):
                # A missing shard named directly is skipped when read (as a missing local one among
                # others), not refused.
                d = drain(make(cfg))
                assert [r.reason for r in d.skips] == ["shard_error"] and "NoSuchKey" in str(d.skips[0])
                continue
            with pytest.raises(datago.ConfigError) as info:
                make(cfg)
            msg = str(info.value)
            assert code in msg or (code.startswith("no object") and "no .tar" in msg), msg
            assert info.value.key in ("source_config.root_path", "source_config.url")
            assert key.secret not in msg and srv.key.secret not in msg


def test_no_secret_in_errors_stats_reprs_or_skip_reports(
    aws_env: S3Server, s3: tuple[S3Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, _ = s3
    secret = srv.key.secret
    seen: list[str] = []
    present = f"s3://{BUCKET}/shards/shard-{{000..001}}.tar"  # and one that does not exist
    c = datago.Client(webdataset_config([present, f"s3://{BUCKET}/shards/shard-404.tar"]))
    seen.append(repr(c))
    d = drain(c)
    assert [r.reason for r in d.skips] == ["shard_error"] and "NoSuchKey" in str(d.skips[0])
    seen += [repr(c), json.dumps(d.stats), *(repr(r) for r in d.skips), *(str(r) for r in d.skips)]
    with datago.MapDataset(filesystem_config(f"s3://{BUCKET}/imgs")) as ds:
        seen += [repr(ds), json.dumps(ds.stats)]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret[::-1])
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(filesystem_config(f"s3://{BUCKET}/imgs"))
    seen += [str(info.value), repr(info.value)]
    assert len(seen) >= 8
    for text in seen:
        assert secret not in text and secret[::-1] not in text, text


def test_no_secret_in_logs_or_resume_state(
    aws_env: S3Server, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The same check as the other backends': logs and stderr, resume states, skip reports, reprs."""
    caplog.set_level(logging.DEBUG, logger="datago")
    shards = webdataset_config(
        [f"s3://{BUCKET}/shards/shard-{{000..001}}.tar", f"s3://{BUCKET}/shards/shard-404.tar"]
    )
    texts = run_texts(shards, filesystem_config(f"s3://{BUCKET}/imgs"))
    assert any("shard-404.tar" in t and "NoSuchKey" in t for t in texts)
    out, err = capfd.readouterr()
    assert_no_secret([*texts, out, err, caplog.text], [aws_env.key.secret])


# --------------------------------------------------------------------------------- expiring credentials

# A credential_process (the AWS config's external credential source) handing out credentials that expire
# in 20 seconds: temporary ones from moto's STS (with a session token), each call logged.
CREDENTIAL_PROCESS = """\
#!{python}
import datetime, json, boto3
with open({log!r}, "a") as f:
    f.write("x")
sts = boto3.client("sts", endpoint_url={endpoint!r}, region_name="us-east-1",
                   aws_access_key_id={key_id!r}, aws_secret_access_key={secret!r})
c = sts.assume_role(RoleArn={role!r}, RoleSessionName="datago-test", DurationSeconds=900)["Credentials"]
exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=20)
print(json.dumps({{"Version": 1, "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                  "SessionToken": c["SessionToken"], "Expiration": exp.isoformat()}}))
"""


def credential_process_run(workdir: Path) -> dict[str, Any]:
    """In the background (support/background.py): moto with the image tree, a profile whose
    credential_process hands out 20-second credentials, and a 2-minute slow read of the prefix with them."""
    srv = S3Server()
    try:
        srv.bucket(BUCKET)
        srv.put(BUCKET, tree())
        log = workdir / "calls"
        script = workdir / "creds.py"
        script.write_text(
            textwrap.dedent(CREDENTIAL_PROCESS).format(
                python=sys.executable,
                log=str(log),
                endpoint=srv.endpoint,
                key_id=srv.key.id,
                secret=srv.key.secret,
                role=srv.role_arn,
            )
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        config = workdir / "config"
        config.write_text(f"[profile short]\ncredential_process = {script}\nregion = us-east-1\n")
        # This process is the run's own: its environment is the reader's (no key of the server in it).
        for k in list(os.environ):
            if k.startswith("AWS_"):
                del os.environ[k]
        env = {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
            "AWS_PROFILE": "short",
            "AWS_ENDPOINT_URL_S3": srv.endpoint,
        }
        # Many epochs over the prefix, read slowly: every epoch lists again and reads every object.
        cfg = filesystem_config(
            f"s3://{BUCKET}/imgs", epochs=1000, samples_buffer_size=2, prefetch_buffer_size=4
        )
        got = read_for(cfg, 120, workdir, **env)
        got["calls"] = len(log.read_text()) if log.exists() else 0
    finally:
        srv.stop()
    return got


@pytest.mark.background(run=credential_process_run)
def test_credential_process_with_20_second_credentials_over_a_2_minute_run(background: BackgroundRun) -> None:
    got = background.result()
    assert got["returncode"] == 0, got["stderr"]
    assert sum(got["skipped"].values()) == 0, got["skips"][:3]
    assert got["n"] > N_IMAGES * 3
    assert got["calls"] >= 5  # refreshed before each 20-second expiry


def test_every_test_process_is_kept_off_this_machines_credentials() -> None:
    """tests/conftest.py isolates the environment at import, so a subprocess (a torchrun worker, a script)
    inherits it: no instance metadata, no shared AWS files, no machine credentials, no gcloud file."""
    code = """
        import json, os
        print(json.dumps({k: v for k, v in os.environ.items()
                          if k.startswith(("AWS_", "AZURE_", "GOOGLE_", "GCE_", "CLOUDSDK_", "HF_"))}))
    """
    out = run_python(code, 60)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "CLOUDSDK_CONFIG", "HF_HOME"):
        assert env[k].startswith("/nonexistent/") and not Path(env[k]).exists()
    assert env["GCE_METADATA_HOST"].startswith("127.0.0.1:")
    assert not {"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS", "HF_TOKEN"} & set(env)
