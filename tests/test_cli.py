"""The ``datago`` command, end to end: ``python -m datago`` in a fresh interpreter, as a user runs it, and
the console script the wheel declares."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

import datago
from support.config import filesystem_config
from support.process import PYTHON_DIR, ROOT


def datago_cmd(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(PYTHON_DIR), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "datago", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=stdin,
        check=False,
    )


def write_config(path: Path, config: dict[str, object]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


def test_run_prints_the_table_the_verdict_and_a_suggestion(
    tmp_path: Path, photo_dir: Callable[..., tuple[Path, list[Path]]]
) -> None:
    root, _ = photo_dir(60, size=(64, 48), fmt="JPEG")
    cfg = write_config(tmp_path / "c.json", filesystem_config(root, epochs=0))
    result = datago_cmd("run", cfg, "--seconds", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert " samples in 1.0" in out[0], result.stdout
    assert out[1].split() == [
        "stage", "workers", "items", "busy", "s", "busy", "recent", "items/s", "queue", "fill", "recent"
    ]  # fmt: skip
    assert [line.split()[0] for line in out[2:7]] == ["list", "fetch", "decode", "ready", "consumer"]
    verdict = out[7].split()
    assert verdict[0] == "bottleneck:" and verdict[1] in ("source", "decode", "consumer", "balanced")
    assert len(out) == 9 and out[8]
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    limited = json.loads(datago_cmd("run", cfg, "--limit", "500", "--json").stdout)
    assert limited["samples"] == limited["stats"]["served"] == 500


def test_run_json_on_a_decode_bound_pipeline(photo_dir: Callable[..., tuple[Path, list[Path]]]) -> None:
    root, _ = photo_dir(3, size=(3000, 2000), fmt="JPEG")
    config = json.dumps(filesystem_config(root, concurrency=1, epochs=0))
    result = datago_cmd("run", "-", "--seconds", "2.5", "--json", stdin=config)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bottleneck"] == "decode", report["stats"]["stages"]
    assert report["stats"]["stages"]["decode"]["workers"] == 1
    assert report["samples"] == report["stats"]["served"] > 5
    assert 2.4 < report["seconds"] < 10 and report["mb_per_s"] > 0
    assert "decode-bound" in report["suggestion"]


def test_run_reports_a_config_error_naming_the_key(tmp_path: Path) -> None:
    bad = {"source_type": "filesystem", "source_config": {"root_path": str(tmp_path)}, "concurency": 2}
    cfg = write_config(tmp_path / "bad.json", bad)
    result = datago_cmd("run", cfg)
    assert result.returncode == 2
    assert "configuration error" in result.stderr and 'did you mean "concurrency"' in result.stderr


def test_sheet_writes_a_labelled_grid(
    tmp_path: Path, photo_dir: Callable[..., tuple[Path, list[Path]]]
) -> None:
    root, _ = photo_dir(9, size=(120, 60), fmt="JPEG")
    image = {"crop_and_resize": True, "default_image_size": 64, "downsampling_ratio": 16}
    cfg = write_config(tmp_path / "c.json", filesystem_config(root, image=image))
    out = tmp_path / "sheet.png"
    result = datago_cmd("sheet", cfg, "-o", str(out), "--count", "7", "--columns", "4", "--thumb", "100")
    assert result.returncode == 0, result.stderr
    assert "7 samples" in result.stdout
    with Image.open(out) as sheet:
        assert sheet.size == (8 + 4 * 108, 8 + 2 * (100 + 30 + 8))
        pixels = sheet.convert("RGB")
        # A tile holds the image, an empty slot stays background.
        assert pixels.getpixel((8 + 50, 8 + 50)) != (246, 246, 246)
        assert pixels.getpixel((8 + 3 * 108 + 50, 8 + 138 + 50)) == (246, 246, 246)


def test_buckets_match_the_library() -> None:
    result = datago_cmd("buckets", "--size", "256", "--ratio", "16", "--json")
    assert result.returncode == 0, result.stderr
    assert [tuple(p) for p in json.loads(result.stdout)] == datago.aspect_ratio_buckets(256, 16, 0.5, 2.0)
    text = datago_cmd("buckets", "--size", "256").stdout.splitlines()
    assert text[0].startswith(f"{len(datago.aspect_ratio_buckets(256, 16, 0.5, 2.0))} buckets")
    assert text[2].split()[:2] == [str(x) for x in datago.aspect_ratio_buckets(256, 16, 0.5, 2.0)[0]]
    bad = datago_cmd("buckets", "--min-aspect", "3", "--max-aspect", "1")
    assert bad.returncode == 2 and "aspect_ratio" in bad.stderr


def test_the_wheel_declares_the_console_script(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("datago_build", ROOT / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    name = build.write_wheel(tmp_path)
    with zipfile.ZipFile(tmp_path / name) as wheel:
        entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert wheel.read(entry_points).decode() == "[console_scripts]\ndatago = datago.cli:main\n"
        assert "datago/cli.py" in wheel.namelist() and "datago/__main__.py" in wheel.namelist()
