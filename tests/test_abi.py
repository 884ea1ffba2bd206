"""The C ABI boundary as Python sees it: skip reports, batch mode, the cdef, panic containment."""

from __future__ import annotations

from pathlib import Path

import datago
from support.config import filesystem_config


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
