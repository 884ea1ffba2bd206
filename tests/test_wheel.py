"""The in-tree build backend: a platform wheel that installs into a fresh venv and works there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from support.images import photo, save
from support.process import ROOT


def _backend() -> ModuleType:
    # Loaded under another name: "build" could also be the PyPA package.
    spec = importlib.util.spec_from_file_location("datago_build_backend", ROOT / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metadata_and_tags() -> None:
    backend = _backend()
    assert backend.get_requires_for_build_wheel() == []
    text = backend.metadata_text()
    assert "Name: datago" in text
    for dep in ("cffi", "numpy", "pillow"):
        assert f"Requires-Dist: {dep}\n" in text
    assert "Requires-Python: >=3.11" in text
    assert 'extra == "test"' in text
    assert backend.wheel_tag().startswith("py3-none-")
    assert not backend.wheel_tag().endswith("any")
    import datago

    assert backend.version() == datago.__version__


@pytest.mark.wheel
def test_wheel_installs_and_runs_in_fresh_venv(tmp_path: Path) -> None:
    backend = _backend()
    dist = tmp_path / "dist"
    name = backend.build_wheel(str(dist))
    wheel = dist / name
    assert wheel.is_file()
    parts = name[: -len(".whl")].split("-")
    assert parts[0] == "datago" and parts[2:4] == ["py3", "none"]
    assert parts[4] != "any" and parts[4].startswith("linux_"), name
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.testzip() is None
        dist_info = f"datago-{parts[1]}.dist-info"
        assert {
            "datago/libdatago.so",
            "datago/__init__.py",
            "datago/_lib.py",
            "datago/py.typed",
            f"{dist_info}/METADATA",
            f"{dist_info}/WHEEL",
            f"{dist_info}/RECORD",
        } <= names
        assert "datago/libdatago.h" not in names
        assert "Root-Is-Purelib: false" in zf.read(f"{dist_info}/WHEEL").decode()
        record = zf.read(f"{dist_info}/RECORD").decode()
        assert all(n in record for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATAGO_LIBRARY")}
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    images = tmp_path / "outside" / "images"
    for i in range(7):
        save(images / f"x{i}.jpg", photo(50, 40, seed=i), "JPEG")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = f"""
import datago
print(datago.__file__)
config = {{"source_type": "filesystem", "source_config": {{"root_path": {str(images)!r}}},
          "image_config": {{"crop_and_resize": True, "default_image_size": 32, "downsampling_ratio": 16}}}}
with datago.Client(config) as client:
    samples = list(client)
print(len(samples), sorted({{s.image.size for s in samples}}))
"""
    run = subprocess.run(
        [str(py), "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(venv)), lines[0]
    assert lines[1].startswith("7 ")
