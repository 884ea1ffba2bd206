"""A WebDataset list that cannot work at all (every shard refused, or 404) ends early with a
DatagoError naming the cause and the first shards, with the default retries; one where only some
shards fail still delivers everything the others hold."""

from __future__ import annotations

import socket
import time

import pytest

import datago
from support.drain import drain
from support.shards import shard_bytes, standard_shard
from support.wds_server import ShardServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_shard_refused_ends_early_with_the_cause() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/shard-{{0000..2325}}.tar"
    client = datago.Client({"source_type": "webdataset", "source_config": {"url": url}})
    t0 = time.monotonic()
    with pytest.raises(datago.DatagoError) as e:
        for _ in client:
            pass
    took = time.monotonic() - t0
    client.close()
    assert "connection refused" in str(e.value) and "shard-0000.tar" in str(e.value), e.value
    assert took < 30, f"gave up after {took:.1f} s"


def test_every_shard_404_ends_early_with_the_status() -> None:
    with ShardServer() as server:
        url = server.url("/missing-{000..999}.tar")
        with pytest.raises(datago.DatagoError) as e:
            drain({"source_type": "webdataset", "source_config": {"url": url}})
    assert "HTTP 404" in str(e.value) and "missing-000.tar" in str(e.value), e.value


def test_a_list_where_some_shards_fail_delivers_the_rest() -> None:
    files = {f"/s-{i}.tar": shard_bytes(standard_shard(i, 4)) for i in range(0, 40, 2)}
    with ShardServer(files) as server:
        got = drain({"source_type": "webdataset", "source_config": {"url": server.url("/s-{0..39}.tar")}})
    assert len(got.samples) == 20 * 4
    assert got.stats["skipped"] == {"shard_error": 20}
