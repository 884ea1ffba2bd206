"""The C ABI boundary as Python sees it: skip reports, batch mode, the cdef, panic containment."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import datago
from datago import _lib
from support.config import filesystem_config, image_config
from support.images import photo, save
from support.process import ROOT, run_python


def _folder_with_corrupt_file(photo_dir) -> tuple[Path, list[Path], Path]:
    root, paths = photo_dir(4)
    bad = root / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return root, paths, bad


def test_client_skipped_reports_id_reason_message(photo_dir) -> None:
    root, _, bad = _folder_with_corrupt_file(photo_dir)
    with datago.Client(filesystem_config(root)) as client:
        ids = [s.id for s in client]
        reports = client.skipped()
    assert len(ids) == 4 and str(bad) not in ids
    assert len(reports) == 1
    report = reports[0]
    assert isinstance(report, datago.SkipReport)
    assert report.id == str(bad)
    assert report.reason == "decode_error"
    assert report.message
    assert client.skipped() == reports  # kept after close, not drained twice


def test_map_dataset_skipped(photo_dir) -> None:
    root, paths, bad = _folder_with_corrupt_file(photo_dir)
    with datago.MapDataset(filesystem_config(root)) as ds:
        index = ds.ids.index(str(bad))
        good = ds.ids.index(str(paths[0]))
        samples = ds.get_many([index, good])
        assert samples[0] is None and samples[1] is not None
        assert [(r.id, r.reason) for r in ds.skipped()] == [(str(bad), "decode_error")]


# -- batch mode comes from the library ----------------------------------------------------------------


def test_batch_mode_comes_from_the_library(tmp_path: Path) -> None:
    root = tmp_path / "batch_size"  # the key's name in the path: the text says nothing about the mode
    for i in range(6):
        save(root / f"{i}.png", photo(40, 30, seed=i), "PNG")
    plain = filesystem_config(root)
    assert "batch_size" in json.dumps(plain) and "batch_size" not in plain
    with datago.Client(json.dumps(plain)) as client:
        assert _lib.client_batch_size(client._handle) == 0
        assert all(isinstance(s, datago.Sample) for s in client)
    batched = filesystem_config(root, image=image_config(size=64), batch_size=3)
    with datago.Client(json.dumps(batched)) as client:
        assert _lib.client_batch_size(client._handle) == 3
        batches = list(client)
    assert batches and all(isinstance(b, datago.Batch) for b in batches)
    assert sum(len(b) for b in batches) == 6
    with pytest.raises(datago.DatagoError, match="batch_size is set"):
        datago.Client(batched).get_sample()


# -- errors carry the status ----------------------------------------------------------------------------


def test_errors_carry_their_status_code(photo_dir) -> None:
    with pytest.raises(datago.DatagoError) as info:
        _lib.client_start(2**63)
    assert info.value.code == "STATE" and "unknown or freed client handle" in str(info.value)
    with pytest.raises(datago.ConfigError) as config:
        datago.Client({"source_type": "ftp", "source_config": {}})
    assert config.value.code == "CONFIG" and config.value.key == "source_type"
    root, _ = photo_dir(1)
    client = datago.Client(filesystem_config(root))
    client.close()
    with pytest.raises(datago.DatagoError) as closed:
        client.get_sample()
    assert closed.value.code is None  # found in Python: the client is closed


# -- the cdef is datago.h -------------------------------------------------------------------------------

HEADER = ROOT / "go" / "capi" / "datago.h"


def test_cdef_declares_everything_in_the_header() -> None:
    text = HEADER.read_text()
    defines = dict(re.findall(r"^#define (DATAGO_\w+) (\d+)", text, flags=re.MULTILINE))
    assert "DATAGO_ABI_VERSION" in defines and "DATAGO_ERR_INTERNAL" in defines
    for name, value in defines.items():
        python_name = "ABI_VERSION" if name == "DATAGO_ABI_VERSION" else name
        assert getattr(_lib, python_name) == int(value), name
    uncommented = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    functions = re.findall(r"\b(datago_\w+)\s*\(", uncommented)
    assert len(functions) >= 28
    lib = _lib.get_lib()
    for name in functions:
        assert name in _lib.CDEF, name
        assert _lib.ffi.typeof(getattr(lib, name)).kind == "function", name
    for struct in ("datago_buffer", "datago_item", "datago_sample", "datago_batch"):
        fields = re.search(r"typedef struct " + struct + r" \{(.*?)\}", uncommented, flags=re.DOTALL)
        assert fields, struct
        names = re.findall(r"(\w+);", fields.group(1))
        assert [name for name, _ in _lib.ffi.typeof(f"{struct} *").item.fields] == names


def test_parse_header() -> None:
    cdef, defines = _lib.parse_header(
        "/* a comment\n * #define NOT_THIS 1 */\n#ifndef X_H\n#define X_H\n#include <stdint.h>\n"
        "#define X_VERSION 7   /* trailing */\n#define X_NEG -2\n// line comment\n"
        "int32_t x_call(int32_t a); /* doc */\n#endif\n"
    )
    assert defines == {"X_VERSION": 7, "X_NEG": -2}
    assert cdef == "int32_t x_call(int32_t a);\n"


def test_header_is_shipped_in_the_wheel() -> None:
    spec = importlib.util.spec_from_file_location("datago_build_backend", ROOT / "build.py")
    assert spec and spec.loader
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    assert ("datago/datago.h", HEADER) in backend._package_files()
    assert _lib.header_path() == HEADER  # a source checkout reads go/capi/datago.h itself


# -- panic containment ----------------------------------------------------------------------------------


def test_panic_poisons_the_library_and_the_process_survives(photo_dir) -> None:
    root, _ = photo_dir(3)
    script = f"""
        import gc, time
        import datago
        cfg = {filesystem_config(root)!r}
        client = datago.Client(cfg)
        client.start()
        try:
            client.get_sample(timeout=10)
        except datago.DatagoError as e:
            print("FIRST", e.code, " ".join(str(e).split())[:200])
        start = time.monotonic()
        try:
            client.get_sample(timeout=10)
        except datago.DatagoError as e:
            print("SECOND", e.code, round(time.monotonic() - start), str(e).splitlines()[0])
        for name, call in [("STATS", client.stats), ("NEW", lambda: datago.Client(cfg)),
                           ("BUCKETS", lambda: datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)),
                           ("CLOSE", client.close)]:
            try:
                call()
                print(name, "ok")
            except datago.DatagoError as e:
                print(name, e.code, "unusable" in str(e) and "injected panic at abi" in str(e))
        del client
        gc.collect()
        print("END", "ok")
        """
    result = run_python(script, timeout=120, DATAGO_TEST_PANIC="abi")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["FIRST"].startswith("INTERNAL "), result.stdout
    assert "internal error" in lines["FIRST"] and "injected panic at abi" in lines["FIRST"]
    second = lines["SECOND"].split(" ", 2)
    assert second[0] == "INTERNAL" and second[1] == "0", result.stdout  # at once, not after 10 s
    assert "unusable after an earlier internal error (injected panic at abi" in second[2]
    for name in ("STATS", "NEW", "BUCKETS", "CLOSE"):
        assert lines[name] == "INTERNAL True", (name, result.stdout)
    assert "END" in lines
    # The first panic's stack is on stderr, once.
    assert result.stderr.count("injected panic at abi") == 1, result.stderr
    assert "goroutine" in result.stderr and "datago_client_next" in result.stderr
