"""What is delivered: buckets, EXIF orientation, colour modes, pixel fidelity, encoding, bad files."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import datago
from support.config import filesystem_config, image_config
from support.drain import drain
from support.images import asymmetric, photo, save
from support.reference import closest_bucket, expected_geometry, psnr

# -- aspect-ratio buckets --------------------------------------------------------------------------


def test_aspect_ratio_buckets_function() -> None:
    buckets = datago.aspect_ratio_buckets(512, 16, 0.5, 2.0)
    assert buckets, buckets
    assert all(isinstance(b, tuple) and len(b) == 2 for b in buckets)
    assert (512, 512) in buckets
    assert len(set(buckets)) == len(buckets)
    for w, h in buckets:
        assert w % 16 == 0 and h % 16 == 0, (w, h)
        # Sides are whole patches of 16, so ratios may step slightly past the limits.
        assert 0.5 * 0.95 <= w / h <= 2.0 / 0.95, (w, h)
        assert (h, w) in buckets, "the buckets should be symmetric"
    # Every bucket has about the default area.
    assert all(0.5 < w * h / 512**2 < 1.5 for w, h in buckets)
    with pytest.raises(datago.ConfigError):
        datago.aspect_ratio_buckets(500, 16, 0.5, 2.0)
    with pytest.raises(datago.ConfigError):
        datago.aspect_ratio_buckets(512, 16, 2.0, 0.5)


def test_sizes_are_closest_buckets(tmp_path: Path) -> None:
    root = tmp_path / "aspect"
    sizes = [
        (100, 100),
        (200, 100),
        (100, 200),
        (300, 120),
        (120, 300),
        (120, 90),
        (90, 160),
        (47, 31),
        (640, 250),
    ]
    oriented: dict[str, tuple[int, int]] = {}
    for i, (w, h) in enumerate(sizes):
        p = save(root / f"s{i}.png", photo(w, h, seed=i))
        oriented[str(p)] = (w, h)
    # EXIF orientation 6 (rotate 90): stored 200x80, oriented 80x200.
    exif = Image.Exif()
    exif[0x0112] = 6
    p = save(root / "rotated.jpg", photo(200, 80, seed=99), "JPEG", exif=exif, quality=95)
    oriented[str(p)] = (80, 200)

    cfg = image_config(size=64, ratio=16, min_aspect_ratio=0.5, max_aspect_ratio=2.0)
    buckets = datago.aspect_ratio_buckets(64, 16, 0.5, 2.0)
    samples = drain(filesystem_config(root, image=cfg)).samples
    assert sorted(s.id for s in samples) == sorted(oriented)
    for s in samples:
        w, h = oriented[s.id]
        assert s.original_size == (w, h), s.id
        assert s.size in buckets, (s.id, s.size, buckets)
        bw, bh = s.size
        assert s.array.shape == (bh, bw, 3)
        assert s.size == closest_bucket(w, h, buckets), (s.id, (w, h), s.size)


# -- EXIF orientation ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientations(tmp_path: Path, fmt: str) -> None:
    base = asymmetric(48, 30, seed=3)
    root = tmp_path / "exif"
    expected: dict[str, np.ndarray] = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        ext = "jpg" if fmt == "JPEG" else "png"
        params = {"quality": 95} if fmt == "JPEG" else {}
        p = save(root / f"o{orientation}.{ext}", base, fmt, exif=exif, **params)
        with Image.open(p) as im:
            expected[str(p)] = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    samples = drain(filesystem_config(root)).samples
    assert sorted(s.id for s in samples) == sorted(expected)
    for s in samples:
        exp = expected[s.id]
        assert s.array.shape == exp.shape, (s.id, s.array.shape, exp.shape)
        assert s.original_size == (exp.shape[1], exp.shape[0])
        diff = np.abs(s.array.astype(int) - exp.astype(int))
        assert diff.mean() < 3, (s.id, diff.mean())
        if fmt == "PNG":
            assert diff.max() == 0, s.id


# -- colour modes ----------------------------------------------------------------------------------


def _flatten_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.clip(np.rint(rgb.astype(np.float64) * a + 255.0 * (1 - a)), 0, 255).astype(np.uint8)


def _mode_images(root: Path) -> dict[str, tuple[np.ndarray, float]]:
    """Files in various modes -> (expected RGB, allowed mean absolute difference)."""
    rgb = photo(40, 32, seed=7)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    yy, xx = np.mgrid[0:32, 0:40]
    alpha = np.clip(xx * 7, 0, 255).astype(np.uint8)  # transparent on the left, opaque on the right
    alpha[:8] = 0  # a fully transparent band
    out: dict[str, tuple[np.ndarray, float]] = {}

    p = save(root / "gray.png", gray)
    out[str(p)] = (np.repeat(gray[..., None], 3, axis=2), 0)
    p = save(root / "gray.jpg", gray, "JPEG", quality=95)
    with Image.open(p) as im:
        out[str(p)] = (np.asarray(im.convert("RGB")), 1)

    la = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)])
    p = root / "gray_alpha.png"
    la.save(p)
    out[str(p)] = (_flatten_on_white(np.repeat(gray[..., None], 3, axis=2), alpha), 1.5)

    rgba = np.dstack([rgb, alpha])
    rgba[:8, :, :3] = 0  # black under the transparent band: must come out white
    p = save(root / "rgba.png", rgba)
    out[str(p)] = (_flatten_on_white(rgba[..., :3], alpha), 1.5)

    pal = Image.fromarray(rgb).quantize(64)
    p = root / "palette.png"
    pal.save(p)
    out[str(p)] = (np.asarray(pal.convert("RGB")), 0)

    g16 = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257 + (xx % 200).astype(np.uint16)
    p = root / "gray16.png"
    im16 = Image.fromarray(g16)  # mode I;16
    assert im16.mode == "I;16"
    im16.save(p)
    exp16 = np.rint(g16.astype(np.float64) / 257.0).clip(0, 255).astype(np.uint8)
    out[str(p)] = (np.repeat(exp16[..., None], 3, axis=2), 1.5)

    p = root / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(p, "JPEG", quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
        out[str(p)] = (np.asarray(im.convert("RGB")), 25)  # colour management may differ from Pillow's
    return out


def test_modes_deliver_rgb(tmp_path: Path) -> None:
    root = tmp_path / "modes"
    root.mkdir()
    expected = _mode_images(root)
    samples = drain(filesystem_config(root)).samples
    assert sorted(s.id for s in samples) == sorted(expected)
    report = {}
    for s in samples:
        exp, tolerance = expected[s.id]
        img = s.image
        assert isinstance(img, Image.Image) and img.mode == "RGB", s.id
        arr = s.array
        assert arr.shape == exp.shape, (s.id, arr.shape, exp.shape)
        diff = np.abs(arr.astype(int) - exp.astype(int))
        report[Path(s.id).name] = (round(float(diff.mean()), 2), int(diff.max()))
        assert np.array_equal(np.asarray(img), arr)
    print(report)
    for s in samples:
        exp, tolerance = expected[s.id]
        mean = report[Path(s.id).name][0]
        assert mean <= tolerance, (Path(s.id).name, report[Path(s.id).name])
    rgba = next(s for s in samples if s.id.endswith("rgba.png"))
    assert (rgba.array[:8] >= 250).all(), "fully transparent pixels must be flattened onto white"


# -- pixel fidelity --------------------------------------------------------------------------------


def test_png_and_jpeg_decode_like_pillow(tmp_path: Path) -> None:
    root = tmp_path / "fidelity"
    arr = photo(97, 61, seed=11)
    png = save(root / "p.png", arr)
    jpgs = [
        save(root / "q95.jpg", arr, "JPEG", quality=95),
        save(root / "q75.jpg", arr, "JPEG", quality=75),
        save(root / "q90_444.jpg", arr, "JPEG", quality=90, subsampling=0),
    ]
    by_id = {s.id: s for s in drain(filesystem_config(root)).samples}
    assert np.array_equal(by_id[str(png)].array, arr)
    for jpg in jpgs:
        with Image.open(jpg) as im:
            ref = np.asarray(im.convert("RGB"))
        diff = np.abs(by_id[str(jpg)].array.astype(int) - ref.astype(int))
        assert diff.max() <= 2, (jpg.name, int(diff.max()))


@pytest.mark.parametrize("size", [(203, 150), (150, 203), (40, 30), (500, 180), (128, 128)])
def test_crop_and_resize_matches_pillow_lanczos(tmp_path: Path, size: tuple[int, int]) -> None:
    root = tmp_path / "resize"
    arr = photo(*size, seed=sum(size))
    p = save(root / "img.png", arr)
    buckets = datago.aspect_ratio_buckets(64, 16, 0.5, 2.0)
    (sample,) = drain(filesystem_config(root, image=image_config(size=64, ratio=16))).samples
    assert sample.id == str(p)
    bucket = sample.size
    assert bucket == closest_bucket(*size, buckets)
    resize_to, box = expected_geometry(*size, bucket)
    ref = np.asarray(Image.fromarray(arr).resize(resize_to, Image.LANCZOS).crop(box))
    value = psnr(sample.array, ref)
    print(size, bucket, f"PSNR {value:.1f} dB")
    assert value >= 35, (size, bucket, value)


# -- pre-encoded images ----------------------------------------------------------------------------


def test_pre_encode_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "encoded"
    sizes = [(120, 90), (90, 160), (64, 64), (300, 100)]
    for i, size in enumerate(sizes):
        save(root / f"e{i}.png", photo(*size, seed=i))
    buckets = datago.aspect_ratio_buckets(64, 16, 0.5, 2.0)
    plain = {s.id: s for s in drain(filesystem_config(root, image=image_config())).samples}
    encoded = drain(filesystem_config(root, image=image_config(pre_encode_images=True))).samples
    assert sorted(s.id for s in encoded) == sorted(plain)
    for s in encoded:
        assert s.pre_encoded
        data = s.image
        assert isinstance(data, bytes) and data
        assert s.Image is data or s.Image == data
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            decoded = np.asarray(im.convert("RGB"))
            assert im.size in buckets
            assert im.size == plain[s.id].size
        assert psnr(decoded, plain[s.id].array) >= 30
        with pytest.raises(datago.DatagoError):
            _ = s.array


# -- bad files -------------------------------------------------------------------------------------


def test_bad_files_are_skipped_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "bad"
    good = [save(root / f"good{i}.png", photo(20, 20, seed=i)) for i in range(10)]
    good.append(save(root / "good.jpg", photo(30, 20, seed=50), "JPEG"))
    valid_jpeg = io.BytesIO()
    Image.fromarray(photo(200, 150, seed=5)).save(valid_jpeg, "JPEG", quality=90)
    jpeg_bytes = valid_jpeg.getvalue()
    bad = {
        "corrupt.jpg": b"\xff\xd8\xff\xe0"
        + bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
        "truncated.jpg": jpeg_bytes[: len(jpeg_bytes) * 2 // 5],
        "empty.jpg": b"",
        "text.jpg": b"this is not an image at all\n" * 20,
        "truncated.png": (root / "good0.png").read_bytes()[:60],
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    caplog.set_level(logging.WARNING, logger="datago")
    with datago.Client(filesystem_config(root)) as client:
        ids = [s.id for s in client]
        stats = client.stats()
    print(json.dumps(stats, indent=1))
    assert sorted(ids) == sorted(str(p) for p in good)
    assert stats["skipped_total"] == len(bad), stats
    assert sum(stats["skipped"].values()) == len(bad)
    assert stats["served"] == len(good)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "datago")
    for name in bad:
        assert str(root / name) in logged, (name, logged)


def test_enlargement_is_centred_like_pillow(tmp_path: Path) -> None:
    """An image smaller than its bucket is enlarged with sample centres aligned (no half-pixel shift)."""
    h, w = 150, 200
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0), x * 255 / w, y * 255 / h], -1)
    arr = arr.clip(0, 255).astype(np.uint8)
    save(tmp_path / "small.png", arr)
    (sample,) = drain(filesystem_config(tmp_path, image=image_config(size=512, ratio=16))).samples
    resize_to, box = expected_geometry(w, h, sample.size)
    assert resize_to[0] > w and resize_to[1] > h
    ref = np.asarray(Image.fromarray(arr).resize(resize_to, Image.LANCZOS).crop(box))
    # Shifted by half an output pixel this pattern scores about 42 dB; aligned, only the filter differs.
    value = psnr(sample.array, ref)
    assert value >= 50, value
