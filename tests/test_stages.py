"""stats()["stages"] and stats()["bottleneck"] on pipelines made slow on purpose at each stage: a throttled
HTTP server (source), a concurrency-1 decode of large JPEGs (decode), a consumer that sleeps (consumer).
The same runs print their stage table with ``-s`` (README "Stage timings" quotes them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import datago
from datago.cli import stage_table, suggestion
from support.config import dataroom_config, filesystem_config
from support.dataroom_server import DataroomServer, Fault

RUN_S = 3.0  # long enough for the 5 s recent window to hold most of the run


def run(config: dict[str, Any], pause: float = 0.0, seconds: float = RUN_S) -> dict[str, Any]:
    """Take samples for ``seconds``, sleeping ``pause`` after each; the stats before closing."""
    with datago.Client(config) as client:
        end = time.monotonic() + seconds
        for sample in client:
            if sample.has_image:
                assert sample.array.ndim == 3
            del sample
            if pause:
                time.sleep(pause)
            if time.monotonic() >= end:
                break
        stats = client.stats()
    print(f"\n{stage_table(stats)}\nbottleneck: {stats['bottleneck']}\n{suggestion(stats, config)}")
    return stats


def check_table(stats: dict[str, Any], stages: tuple[str, ...]) -> None:
    table = stats["stages"]
    assert set(table) == set(stages), table.keys()
    served = stats["served"]
    assert table["consumer"]["items"] == served and table["ready"]["items"] == served
    assert table["decode"]["items"] >= served and table["list"]["items"] >= table["fetch"]["items"]
    for name, s in table.items():
        assert 0 <= s["queue_fill"] <= 1 and 0 <= s["recent_queue_fill"] <= 1, name
        if name != "ready":
            assert s["busy_s"] >= 0 and s["workers"] >= 1, name
            # Utilization is busy time over wall time: a little over 1 from clock reads is tolerated.
            assert 0 <= s["utilization"] <= 1.05, (name, s)


@pytest.mark.slow
def test_a_throttled_server_is_source_bound() -> None:
    with DataroomServer(seed=3) as server:
        server.populate(40, seed=3)
        server.faults.append(Fault("latency", route="file", delay=0.08))
        cfg = dataroom_config(server, concurrency=2, epochs=0, require_images=True)
        stats = run(cfg)
    check_table(stats, ("list", "fetch", "decode", "ready", "consumer"))
    stages = stats["stages"]
    assert stats["bottleneck"] == "source", stages
    assert stages["fetch"]["recent_utilization"] > 0.75 and stages["decode"]["recent_utilization"] < 0.5
    assert "fetchers" in suggestion(stats, cfg)


@pytest.mark.slow
def test_a_single_decoder_of_large_jpegs_is_decode_bound(
    photo_dir: Callable[..., tuple[Path, list[Path]]],
) -> None:
    root, _ = photo_dir(4, size=(3000, 2000), fmt="JPEG")
    cfg = filesystem_config(root, concurrency=1, epochs=0)
    stats = run(cfg)
    check_table(stats, ("list", "fetch", "decode", "ready", "consumer"))
    stages = stats["stages"]
    assert stats["bottleneck"] == "decode", stages
    assert stages["decode"]["workers"] == 1 and stages["decode"]["recent_utilization"] > 0.75
    assert stages["ready"]["recent_queue_fill"] < 0.5
    assert suggestion(stats, cfg, cpus=16).startswith("decode-bound: raise concurrency (1 of 16 CPUs used")


@pytest.mark.slow
def test_a_sleeping_consumer_is_consumer_bound(photo_dir: Callable[..., tuple[Path, list[Path]]]) -> None:
    root, _ = photo_dir(20, size=(64, 48), fmt="JPEG")
    cfg = filesystem_config(
        root,
        image={"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16},
        concurrency=2,
        epochs=0,
        deterministic=True,
    )
    stats = run(cfg, pause=0.02)
    check_table(stats, ("list", "fetch", "decode", "collect", "ready", "consumer"))
    stages = stats["stages"]
    assert stats["bottleneck"] == "consumer", stages
    assert stages["ready"]["recent_queue_fill"] > 0.5 and stages["consumer"]["recent_utilization"] > 0.8
    assert stages["consumer"]["wait_s"] < 0.2 * RUN_S
    assert suggestion(stats, cfg).startswith("consumer-bound")


def test_stages_before_start_and_after_close(photo_dir: Callable[..., tuple[Path, list[Path]]]) -> None:
    root, _ = photo_dir(10)
    client = datago.Client(filesystem_config(root))
    stats = client.stats()
    assert stats["stages"] is None and stats["bottleneck"] == ""
    assert len(list(client)) == 10
    client.close()
    after = client.stats()
    assert after["stages"]["consumer"]["items"] == 10 and after["stages"]["decode"]["items"] == 10
