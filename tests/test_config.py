"""Configuration errors and library loading."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import datago
from datago import _lib
from support.config import filesystem_config, image_config
from support.process import LIBRARY, run_python


def _bad(cfg: dict[str, Any]) -> datago.ConfigError:
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(cfg)
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, datago.DatagoError)
    assert err.key is not None
    assert str(err).startswith(err.key + ": ")
    return err


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Any]:
    return filesystem_config(tmp_path, image=image_config(size=512, ratio=16))


def test_valid_config_is_accepted(good: dict[str, Any]) -> None:
    datago.Client(good).close()


def test_unknown_key_suggests_closest(good: dict[str, Any]) -> None:
    cfg = copy.deepcopy(good)
    cfg["concurency"] = 4
    err = _bad(cfg)
    assert err.key == "concurency"
    assert '"concurrency"' in str(err) or "'concurrency'" in str(err) or "concurrency?" in str(err)
    cfg = copy.deepcopy(good)
    cfg["image_config"]["default_imagesize"] = 256
    err = _bad(cfg)
    assert err.key == "image_config.default_imagesize"
    assert "default_image_size" in str(err)


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("concurrency",), "eight", "concurrency"),
        (("limit",), 1.5, "limit"),
        (("source_config", "root_path"), 42, "source_config.root_path"),
        (("image_config", "crop_and_resize"), "yes", "image_config.crop_and_resize"),
        (("image_config", "min_aspect_ratio"), "0.5", "image_config.min_aspect_ratio"),
        (("source_config",), [], "source_config"),
    ],
)
def test_wrong_type_names_key(good: dict[str, Any], path: tuple[str, ...], value: Any, key: str) -> None:
    cfg = copy.deepcopy(good)
    target = cfg
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    assert _bad(cfg).key == key


def test_rank_must_be_below_world_size(good: dict[str, Any]) -> None:
    cfg = copy.deepcopy(good)
    cfg["source_config"].update(rank=3, world_size=3)
    err = _bad(cfg)
    assert err.key == "source_config.rank"
    assert str(err).startswith("source_config.rank: ")


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("default_image_size", -512, "image_config.default_image_size"),
        ("default_image_size", 0, "image_config.default_image_size"),
        ("downsampling_ratio", -16, "image_config.downsampling_ratio"),
        ("max_pixels", -1, "image_config.max_pixels"),
        ("default_image_size", 500, "image_config.default_image_size"),  # not a multiple of 16
    ],
)
def test_bad_sizes(good: dict[str, Any], field: str, value: int, key: str) -> None:
    cfg = copy.deepcopy(good)
    cfg["image_config"][field] = value
    assert _bad(cfg).key == key


def test_min_aspect_ratio_above_max(good: dict[str, Any]) -> None:
    cfg = copy.deepcopy(good)
    cfg["image_config"].update(min_aspect_ratio=2.0, max_aspect_ratio=0.5)
    assert _bad(cfg).key in ("image_config.min_aspect_ratio", "image_config.max_aspect_ratio")


@pytest.mark.parametrize("field", ["prefetch_buffer_size", "samples_buffer_size"])
def test_zero_buffers(good: dict[str, Any], field: str) -> None:
    cfg = copy.deepcopy(good)
    cfg[field] = 0
    assert _bad(cfg).key == field


def test_negative_concurrency_and_limit(good: dict[str, Any]) -> None:
    for field in ("concurrency", "limit"):
        cfg = copy.deepcopy(good)
        cfg[field] = -1
        assert _bad(cfg).key == field


def test_root_path_missing_or_not_a_directory(good: dict[str, Any], tmp_path: Path) -> None:
    cfg = copy.deepcopy(good)
    del cfg["source_config"]["root_path"]
    assert _bad(cfg).key == "source_config.root_path"
    cfg["source_config"]["root_path"] = str(tmp_path / "does-not-exist")
    assert _bad(cfg).key == "source_config.root_path"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cfg["source_config"]["root_path"] = str(a_file)
    err = _bad(cfg)
    assert err.key == "source_config.root_path"
    assert "directory" in str(err)


def test_bad_source_type_and_json(good: dict[str, Any]) -> None:
    cfg = copy.deepcopy(good)
    cfg["source_type"] = "ftp"
    assert _bad(cfg).key == "source_type"
    with pytest.raises(datago.ConfigError):
        datago.Client("{not json")
    with pytest.raises(datago.ConfigError):
        datago.Client.from_json("[1, 2]")
    with pytest.raises(TypeError):
        datago.Client(42)  # type: ignore[arg-type]


def test_config_error_key_parsing() -> None:
    assert datago.ConfigError("source_config.rank: must be < world_size").key == "source_config.rank"
    assert datago.ConfigError("no key here").key is None


# -- loading ---------------------------------------------------------------------------------------


def test_import_does_not_load_the_library() -> None:
    result = run_python(
        """
        import threading, datago, datago.datago, datago.client, datago.sample
        state = "loaded" if "libdatago" in open("/proc/self/maps").read() else "not loaded"
        print(state, threading.active_count(), datago._lib.loaded())
        datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)
        print("loaded" if "libdatago" in open("/proc/self/maps").read() else "not loaded")
        print(datago.library_version())
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "not loaded 1 False"
    assert lines[1] == "loaded"
    assert lines[2]


def test_missing_library_message(tmp_path: Path) -> None:
    result = run_python(
        """
        import datago
        try:
            datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)
        except ImportError as e:
            assert isinstance(e, datago.DatagoError)
            print(e)
        """,
        timeout=60,
        DATAGO_LIBRARY=str(tmp_path / "nope" / "libdatago.so"),
    )
    assert result.returncode == 0, result.stderr
    assert "native library not found" in result.stdout
    assert "build.py" in result.stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a fake library")
def test_missing_libvips_message_from_dlopen(tmp_path: Path) -> None:
    # A library that needs a libvips (not the real one, which is installed here) that is missing.
    (tmp_path / "vips.c").write_text("int vips_fake(void) { return 0; }\n")
    (tmp_path / "fake.c").write_text(
        "int vips_fake(void);\nint datago_abi_version(void) { return vips_fake() + 1; }\n"
    )
    vips_dir = tmp_path / "vips"
    vips_dir.mkdir()
    cc = ["gcc", "-shared", "-fPIC"]
    subprocess.run(
        [
            *cc,
            "-Wl,-soname,libvips-missing.so.42",
            "-o",
            str(vips_dir / "libvips-missing.so.42"),
            str(tmp_path / "vips.c"),
        ],
        check=True,
    )
    so = tmp_path / "libdatago.so"
    subprocess.run(
        [*cc, "-o", str(so), str(tmp_path / "fake.c"), str(vips_dir / "libvips-missing.so.42")], check=True
    )
    (vips_dir / "libvips-missing.so.42").unlink()
    stdout = _load_error_with(so)
    assert "libvips runtime library (libvips-missing.so.42) is not installed" in stdout, stdout
    assert "apt-get install libvips42" in stdout


def test_missing_libvips_message() -> None:
    error = OSError(
        "cannot load library '/x/libdatago.so': libvips.so.42: cannot open shared object file: No such file"
    )
    message = _lib.explain_load_error(Path("/x/libdatago.so"), error)
    assert "libvips" in message and "apt-get install libvips42" in message


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a fake library")
def test_abi_version_mismatch_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "fake.c"
    src.write_text(f"int datago_abi_version(void) {{ return {_lib.ABI_VERSION + 1}; }}\n")
    so = tmp_path / "libfake.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    stdout = _load_error_with(so)
    assert f"ABI version {_lib.ABI_VERSION + 1}" in stdout and f"needs version {_lib.ABI_VERSION}" in stdout


def test_library_exists_or_overridden() -> None:
    assert LIBRARY.is_file() or _lib.library_path().is_file()


def test_config_values_json_cannot_carry_name_their_key(tmp_path) -> None:
    import numpy as np

    base = {"source_type": "filesystem", "source_config": {"root_path": str(tmp_path)}}
    with pytest.raises(datago.ConfigError) as info:
        datago.Client({**base, "image_config": {"min_aspect_ratio": float("nan")}})
    assert info.value.key == "image_config.min_aspect_ratio"
    # NumPy scalars are plain numbers for the config.
    client = datago.Client({**base, "limit": np.int64(3), "concurrency": np.int32(1)})
    client.close()


def _load_error_with(so: Path) -> str:
    """What a fresh interpreter prints of the LibraryLoadError from loading ``so`` as the library."""
    result = run_python(
        """
        import datago
        try:
            datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)
        except datago.LibraryLoadError as e:
            print(e)
        """,
        timeout=60,
        DATAGO_LIBRARY=str(so),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
