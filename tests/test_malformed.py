"""Malformed, unusual and hostile files through the filesystem source (issue #7).

Every class of file made by ``tests/malformed.py`` is served next to good files, without
``image_config`` and with ``crop_and_resize``. Each test asserts that the class gets its outcome
(delivered with the right pixels, or skipped and counted exactly once under the right reason, in
``stats()`` and in the skip reports), that every good file still arrives exactly once, and that
nothing hangs: every wait has a timeout.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago
from support.config import filesystem_config, image_config
from support.drain import Drained, drain
from support.images import photo, save
from support.malformed import Case, cases, png_bytes, write
from support.reference import closest_bucket as reference_bucket
from support.reference import expected_geometry, psnr

# The crop mode uses small buckets (64) so that references are cheap to compute.
MODES: dict[str, dict[str, Any] | None] = {"plain": None, "crop": image_config(size=64)}
BUCKETS = datago.aspect_ratio_buckets(64, 16, 0.5, 2.0)
# One get_sample may wait this long: far above any decode here, so reaching it means a hang.
SAMPLE_TIMEOUT = 20.0
RUN_TIMEOUT = 90.0
HANG_GUARD: dict[str, float] = {"timeout": RUN_TIMEOUT, "sample_timeout": SAMPLE_TIMEOUT}


def make_good(root: Path) -> list[Path]:
    """Good files of both formats, so a bad file's neighbours are checked to arrive."""
    good = [save(root / f"good{i}.png", photo(40 + i, 30, seed=100 + i)) for i in range(3)]
    good += [
        save(root / f"good{i}.jpg", photo(30, 44 + i, seed=200 + i), "JPEG", quality=90) for i in range(3)
    ]
    return good


def closest_bucket(w: int, h: int) -> tuple[int, int]:
    """The bucket datago picks (tests/support/reference.py: plain ratio difference, larger ratio on a tie)."""
    return reference_bucket(w, h, BUCKETS)


def crop_reference(expected: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """Pillow's Lanczos cover-and-centre-crop of expected to bucket, computing only the crop window
    (so the 1x65000 image does not become a 48x3,120,000 intermediate)."""
    h, w = expected.shape[:2]
    (sw, sh), (left, top, right, bottom) = expected_geometry(w, h, bucket)
    box = (left * w / sw, top * h / sh, right * w / sw, bottom * h / sh)
    return np.asarray(Image.fromarray(expected).resize(bucket, Image.LANCZOS, box=box))


def check_delivered(sample: datago.Sample, case: Case, image: dict[str, Any] | None) -> None:
    assert case.expected is not None
    h, w = case.expected.shape[:2]
    assert sample.original_size == (w, h), (case.name, sample.original_size)
    arr = sample.array
    if image is None:
        assert arr.shape == case.expected.shape, (case.name, arr.shape, case.expected.shape)
        diff = np.abs(arr.astype(np.int16) - case.expected.astype(np.int16))
        assert diff.mean() <= case.tolerance, (case.name, float(diff.mean()), int(diff.max()))
        return
    bucket = closest_bucket(w, h)
    assert sample.size == bucket, (case.name, sample.size, bucket)
    assert arr.shape == (bucket[1], bucket[0], 3)
    value = psnr(arr, crop_reference(case.expected, bucket))
    # Lanczos in libvips and Pillow, plus JPEG shrink-on-load, differ by a little: 30 dB is far from
    # a wrong crop, a wrong orientation or garbage (those score under 20 dB here).
    assert value >= 30, (case.name, sample.size, round(value, 1))


def assert_outcome(
    served: Drained, root: Path, good: list[Path], bad: list[Case], image: dict[str, Any] | None
):
    delivered = [c for c in bad if c.reason is None]
    skipped = [c for c in bad if c.reason is not None]
    expected_ids = sorted([str(p) for p in good] + [str(root / c.name) for c in delivered])
    samples = served.by_id()
    assert sorted(samples) == expected_ids
    assert served.stats["served"] == len(expected_ids)
    assert served.stats["listed"] == len(good) + len(bad), served.stats
    # Counted exactly once, under the right reason, in the counters and in the reports.
    assert served.stats["skipped"] == dict(Counter(c.reason for c in skipped)), served.stats
    assert served.stats["skipped_total"] == len(skipped)
    reported = sorted((r.id, r.reason) for r in served.skips)
    assert reported == sorted((str(root / c.name), str(c.reason)) for c in skipped), served.skips
    for case in delivered:
        check_delivered(samples[str(root / case.name)], case, image)
    for path in good:
        with Image.open(path) as im:
            assert samples[str(path)].original_size == im.size


def test_generators_make_what_they_claim() -> None:
    """The crafted files are what their names say, judged by Pillow (an independent decoder), so the
    expectations below test datago, not the generators."""
    c = cases()
    for name in ("interlaced.png", "animated.png", "arithmetic.jpg", "progressive.jpg", "tall_1x65000.png"):
        with Image.open(io.BytesIO(c[name].data)) as im:
            decoded = np.asarray(im.convert("RGB"))
            info, frames, fmt = dict(im.info), getattr(im, "n_frames", 1), im.format
        assert decoded.shape == c[name].expected.shape, name  # type: ignore[union-attr]
        assert np.abs(decoded.astype(int) - c[name].expected).max() <= 1, name  # type: ignore[operator]
        if name == "interlaced.png":
            assert info.get("interlace") == 1
        if name == "animated.png":
            assert frames == 3
        if name == "progressive.jpg":
            assert info.get("progressive") == 1
        if name == "arithmetic.jpg":
            assert fmt == "JPEG" and c[name].data[2:].find(b"\xff\xc9") >= 0  # SOF9: arithmetic, sequential
    for name in ("twelve_bit.jpg", "truncated_idat.png", "bad_crc_ihdr.png", "text_named.jpg"):
        with pytest.raises(OSError), Image.open(io.BytesIO(c[name].data)) as im:
            im.load()
    header = c["bomb_100000x100000.png"].data[16:24]
    assert header == (100_000).to_bytes(4, "big") * 2 and len(c["bomb_100000x100000.png"].data) < 2000


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(cases()))
def test_malformed_file(tmp_path: Path, name: str, mode: str) -> None:
    case = cases()[name]
    root = tmp_path / "folder"
    good = make_good(root)
    write(root, case)
    served = drain(filesystem_config(root, image=MODES[mode]), **HANG_GUARD)
    print(name, mode, served.stats["skipped"], served.skips)
    assert_outcome(served, root, good, [case], MODES[mode])


@pytest.mark.parametrize("mode", list(MODES))
def test_every_class_in_one_folder(tmp_path: Path, mode: str) -> None:
    """All the classes at once, decoded concurrently: no failure leaks into another sample's outcome."""
    root = tmp_path / "all"
    good = make_good(root)
    for case in cases().values():
        write(root, case)
    served = drain(filesystem_config(root, image=MODES[mode], concurrency=2), **HANG_GUARD)
    assert_outcome(served, root, good, list(cases().values()), MODES[mode])


def test_tall_image_goes_to_the_most_extreme_bucket(tmp_path: Path) -> None:
    """1x65000 is far beyond max_aspect_ratio: the tallest bucket, covered and centre-cropped (so the
    delivered pixels are the middle of the column, stretched), not an error."""
    case = cases()["tall_1x65000.png"]
    write(tmp_path, case)
    served = drain(filesystem_config(tmp_path, image=MODES["crop"]), **HANG_GUARD)
    (sample,) = served.samples
    tallest = min(BUCKETS, key=lambda b: b[0] / b[1])
    assert sample.size == tallest == (48, 80)
    assert case.expected is not None
    # Scale 48 (the bucket width): the 80 rows cropped from the middle of 3,120,000 are source rows
    # 32499.2 to 32500.8.
    middle = case.expected[32499:32501, 0].astype(np.float64).mean(axis=0)
    assert np.abs(sample.array.reshape(-1, 3).mean(axis=0) - middle).max() < 3


# -- files that cannot be read, or are not files -----------------------------------------------------


def test_unreadable_files(tmp_path: Path) -> None:
    """chmod 000 stops everyone but root (through CAP_DAC_OVERRIDE, which a container may drop): the
    expected outcome follows what the current process can do, as os.access reports it.

    A link to /proc/self/mem cannot be read by anyone (reading its offset 0 fails with EIO, the page is
    never mapped), so one read_error is asserted whatever the uid.
    """
    root = tmp_path / "perm"
    good = make_good(root)
    locked = root / "locked.png"
    locked.write_bytes(png_bytes(photo(20, 16, seed=9)))
    locked.chmod(0)
    os.symlink("/proc/self/mem", root / "proc_mem.jpg")
    try:
        readable = os.access(locked, os.R_OK)
        print(f"euid {os.geteuid()}: a chmod 000 file is {'readable' if readable else 'unreadable'}")
        assert os.geteuid() == 0 or not readable, "chmod 000 must stop a non-root user"
        served = drain(filesystem_config(root, image=None), **HANG_GUARD)
    finally:
        locked.chmod(0o644)
    expected = sorted(str(p) for p in good + ([locked] if readable else []))
    assert sorted(served.by_id()) == expected
    unreadable = [str(root / "proc_mem.jpg")] + ([] if readable else [str(locked)])
    assert served.stats["skipped"] == {"read_error": len(unreadable)}, served.stats
    assert sorted(served.skipped_ids()) == sorted(unreadable)
    assert all(r.reason == "read_error" for r in served.skips)


def test_fifo_and_dangling_link_are_not_listed(tmp_path: Path) -> None:
    """A FIFO named like an image is not a regular file: never opened (opening it would block
    forever), not counted. A dangling link has no file behind it: not listed, not counted."""
    root = tmp_path / "special"
    good = make_good(root)
    os.mkfifo(root / "pipe.jpg")
    os.symlink(root / "missing.png", root / "dangling.png")
    started = time.monotonic()
    served = drain(filesystem_config(root, image=None), **HANG_GUARD)
    assert time.monotonic() - started < 10
    assert sorted(served.by_id()) == sorted(str(p) for p in good)
    assert served.stats["listed"] == len(good)
    assert served.stats["skipped_total"] == 0 and served.skips == []


def test_directory_named_like_an_image(tmp_path: Path) -> None:
    """x.jpg/ is a directory: walked like any other (its images are served), never served itself."""
    root = tmp_path / "dirs"
    good = make_good(root)
    inner = save(root / "x.jpg" / "inner.png", photo(20, 20, seed=3))
    (root / "empty.png").mkdir()
    served = drain(filesystem_config(root, image=MODES["crop"]), **HANG_GUARD)
    assert sorted(served.by_id()) == sorted(str(p) for p in [*good, inner])
    assert served.stats["listed"] == len(good) + 1
    assert served.stats["skipped_total"] == 0 and served.skips == []


def test_files_deleted_while_running(tmp_path: Path) -> None:
    """Files deleted between listing and reading: each listed id is delivered or counted as read_error.

    The consumer pauses first so the queues fill (samples listed, not yet read), then a thread deletes
    every file in random order while the consumer drains the client.
    """
    root = tmp_path / "vanishing"
    root.mkdir()
    data = png_bytes(photo(16, 16, seed=1))
    paths = [root / f"v{i:05d}.png" for i in range(2000)]
    for p in paths:
        p.write_bytes(data)
    cfg = filesystem_config(root, concurrency=2, prefetch_buffer_size=16, samples_buffer_size=16)
    delivered: list[str] = []
    order = list(paths)
    random.Random(7).shuffle(order)

    def delete_all() -> None:
        for i, p in enumerate(order):
            p.unlink()
            if i % 50 == 0:
                time.sleep(0.002)  # let the pipeline run between deletions

    deleter = threading.Thread(target=delete_all)
    with datago.Client(cfg) as client:
        first = client.get_sample(timeout=SAMPLE_TIMEOUT)
        assert first is not None
        delivered.append(first.id)
        time.sleep(0.3)  # the queues fill with listed, unread samples
        deleter.start()
        while (sample := client.get_sample(timeout=SAMPLE_TIMEOUT)) is not None:
            delivered.append(sample.id)
        stats = client.stats()
        reports = client.skipped()
    deleter.join(30)
    assert not deleter.is_alive()
    failed = [r.id for r in reports if r.reason == "read_error"]
    print(f"listed {stats['listed']}, delivered {len(delivered)}, read_error {len(failed)}")
    assert len(set(delivered)) == len(delivered), "an id was delivered twice"
    assert not set(delivered) & set(failed), "an id was both delivered and counted"
    assert set(delivered) | set(failed) <= {str(p) for p in paths}
    assert stats["skipped"] == {"read_error": len(failed)}, stats
    assert stats["reports_dropped"] == 0
    assert len(delivered) + len(failed) == stats["listed"], stats
    # The pause left at least a full prefetch queue of listed, unread files for the deleter.
    assert len(failed) >= 16, stats
