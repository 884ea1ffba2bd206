"""A panic anywhere in the Go core reaches Python as an exception or a counted skip, never a dead
process. DATAGO_TEST_PANIC (go/internal/faults) arms one point; each case runs in a subprocess so
the armed point cannot leak into other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = r"""
import json, sys
import datago
config = json.loads(sys.argv[1])
out = {"delivered": 0}
try:
    with datago.Client(config) as client:
        for item in client:
            out["delivered"] += 1
        out["stats"] = client.stats()
except datago.DatagoError as e:
    out["error"] = str(e)
    out["type"] = type(e).__name__
print(json.dumps(out))
"""


def run_armed(point: str, config: dict) -> dict:
    env = dict(os.environ, DATAGO_TEST_PANIC=point)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"the process died (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("panics")
    for i in range(20):
        Image.new("RGB", (40 + i, 30), (i * 10, 0, 0)).save(root / f"img{i:02d}.png")
    return root


CROP = {"crop_and_resize": True, "default_image_size": 64}


@pytest.mark.parametrize(
    ("point", "extra"),
    [
        ("list", {}),
        ("collect", {"deterministic": True}),
        ("collect", {"batch_size": 4, "image_config": CROP}),
    ],
)
def test_a_panic_in_a_stage_raises_datago_error(folder: Path, point: str, extra: dict) -> None:
    config = {"source_type": "filesystem", "source_config": {"root_path": str(folder)}, **extra}
    out = run_armed(point, config)
    assert out.get("type") == "DatagoError", out
    assert "internal error in the" in out["error"] and f"injected panic at {point}" in out["error"], out


@pytest.mark.parametrize("point", ["fetch", "decode"])
def test_a_panic_on_one_sample_is_counted_as_internal_error(folder: Path, point: str) -> None:
    config = {"source_type": "filesystem", "source_config": {"root_path": str(folder)}, "concurrency": 2}
    out = run_armed(point, config)
    assert "error" not in out, out
    assert out["delivered"] == 0
    assert out["stats"]["skipped"] == {"internal_error": 20}, out["stats"]
