"""image_to_rgb8 false (native modes) and image_config.alpha_mask, against Pillow: every mode arrives
as decoded (L, LA, RGB, RGBA; 16-bit as uint16) with its pixels where the format is lossless, resized
within 35 dB of Pillow's LANCZOS of the same crop; the alpha mask is the image's alpha, aligned with
it, beside the image flattened as Pillow composites it."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago
from support.config import dataroom_config, filesystem_config, image_config, webdataset_config
from support.dataroom_server import DataroomServer
from support.drain import drain
from support.images import photo, png16, smooth_alpha
from support.reference import expected_geometry
from support.shards import write_shard

W, H = 60, 40
SIZE = 32  # buckets of crop_and_resize: each image is reduced


def arrays16() -> dict[str, np.ndarray]:
    """The source samples of the 16-bit files: smooth, using all 16 bits."""
    rgb = photo(W, H, seed=4).astype(np.uint16) * 257 + np.arange(W, dtype=np.uint16)[None, :, None] * 3
    alpha = smooth_alpha(W, H).astype(np.uint16) * 257 + 100
    return {
        "l16.png": rgb[..., 0],
        "la16.png": np.dstack([rgb[..., 1], alpha]),
        "rgb16.png": rgb,
        "rgba16.png": np.dstack([rgb, alpha]),
    }


def write_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rgb = photo(W, H, seed=1)
    alpha = smooth_alpha(W, H)
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(root / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(root / "l.png")
    Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA").save(root / "la.png")
    Image.fromarray(rgb).quantize(32).save(root / "palette.png")
    Image.fromarray(rgb).quantize(16).save(root / "palette_t.png", transparency=0)
    Image.fromarray(rgb).save(root / "photo.jpg", quality=92)
    Image.fromarray(rgb[..., 2]).save(root / "grey.jpg", quality=92)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(root / "rgba.webp", lossless=True)
    for name, array in arrays16().items():
        (root / name).write_bytes(png16(array))


# The mode (PIL's, of Sample.mode), channels and NumPy type each file arrives in.
EXPECTED: dict[str, tuple[str, int, type]] = {
    "rgb.png": ("RGB", 3, np.uint8),
    "rgba.png": ("RGBA", 4, np.uint8),
    "l.png": ("L", 1, np.uint8),
    "la.png": ("LA", 2, np.uint8),
    "palette.png": ("RGB", 3, np.uint8),
    "palette_t.png": ("RGBA", 4, np.uint8),
    "photo.jpg": ("RGB", 3, np.uint8),
    "grey.jpg": ("L", 1, np.uint8),
    "rgba.webp": ("RGBA", 4, np.uint8),
    "l16.png": ("I;16" if sys.byteorder == "little" else "I;16B", 1, np.uint16),
    "la16.png": ("LA;16", 2, np.uint16),
    "rgb16.png": ("RGB;16", 3, np.uint16),
    "rgba16.png": ("RGBA;16", 4, np.uint16),
}
LOSSLESS = {"rgb.png", "rgba.png", "l.png", "la.png", "palette.png", "palette_t.png", "rgba.webp"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("native") / "imgs"
    write_files(root)
    return root


def by_name(samples: list[datago.Sample]) -> dict[str, datago.Sample]:
    return {Path(s.id).name: s for s in samples}


def reference(path: Path) -> np.ndarray:
    """The file's samples as Pillow decodes them (palettes expanded), or as written for 16-bit colour."""
    if path.name in arrays16() and path.name != "l16.png":
        return arrays16()[path.name]
    im = Image.open(path)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    return np.asarray(im)


def test_full_size_modes_and_pixels(folder: Path) -> None:
    got = by_name(drain(filesystem_config(folder, {"image_to_rgb8": False})).samples)
    assert sorted(got) == sorted(EXPECTED)
    for name, (mode, channels, dtype) in EXPECTED.items():
        s = got[name]
        array = s.array
        assert s.mode == mode, name
        assert s.bit_depth == (16 if dtype is np.uint16 else 8), name
        assert array.dtype == dtype, name
        assert array.shape == ((H, W) if channels == 1 else (H, W, channels)), name
        ref = reference(folder / name)
        if name in LOSSLESS or dtype is np.uint16:
            np.testing.assert_array_equal(array, ref, err_msg=name)
        else:  # JPEG: libjpeg against Pillow's libjpeg, within rounding of the IDCT
            assert np.abs(array.astype(int) - ref.astype(int)).max() <= 2, name
        image = s.image
        assert isinstance(image, Image.Image) and image.size == (W, H)
        if dtype is np.uint16 and channels > 1:
            # PIL has no 16-bit colour modes: the image is the 8-bit reduction (the high byte).
            assert image.mode == mode.split(";")[0]
            np.testing.assert_array_equal(np.asarray(image), (array >> 8).astype(np.uint8))
        else:
            assert image.mode == mode
            np.testing.assert_array_equal(np.asarray(image), array)


def psnr_peak(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(peak**2 / mse))


def lanczos(ref: np.ndarray, cover: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """Pillow's LANCZOS of ``ref`` to ``cover``, cropped to ``box``: 8-bit through Pillow's own mode
    (which premultiplies RGBA and LA), 16-bit channel by channel in float, premultiplied by alpha."""
    if ref.dtype == np.uint8:
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}.get(ref.shape[2] if ref.ndim == 3 else 1, "L")
        return np.asarray(Image.fromarray(ref, mode).resize(cover, Image.LANCZOS).crop(box))
    planes = ref.astype(np.float32)[..., None] if ref.ndim == 2 else ref.astype(np.float32)
    alpha = planes.shape[2] in (2, 4)
    if alpha:
        planes = planes.copy()
        planes[..., :-1] *= planes[..., -1:] / 65535
    out = np.dstack(
        [
            np.asarray(Image.fromarray(planes[..., c], "F").resize(cover, Image.LANCZOS).crop(box))
            for c in range(planes.shape[2])
        ]
    )
    if alpha:
        out[..., :-1] /= np.maximum(out[..., -1:], 1e-6) / 65535
    out = np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return out[..., 0] if ref.ndim == 2 else out


def test_resized_modes_close_to_pillow(folder: Path) -> None:
    got = by_name(drain(filesystem_config(folder, image_config(SIZE, image_to_rgb8=False))).samples)
    assert sorted(got) == sorted(EXPECTED)
    for name, (mode, channels, dtype) in EXPECTED.items():
        s = got[name]
        array = s.array
        h, w = array.shape[:2]
        assert s.mode == mode and array.dtype == dtype, name
        assert array.shape == ((h, w) if channels == 1 else (h, w, channels)), name
        cover, box = expected_geometry(W, H, (w, h))
        want = lanczos(reference(folder / name), cover, box)
        peak = 65535.0 if dtype is np.uint16 else 255.0
        quality = psnr_peak(array, want, peak)
        assert quality >= 35, (name, quality)
        if dtype is np.uint16:
            # Resized in 16 bits, not in 8 and scaled back.
            assert np.mean(array % 257 == 0) < 0.1, name


def test_default_client_stays_rgb8(folder: Path) -> None:
    """datago.Client keeps image_to_rgb8 true by default: every mode arrives as 8-bit RGB."""
    for s in drain(filesystem_config(folder)).samples:
        assert s.mode == "RGB" and s.array.dtype == np.uint8 and s.array.shape == (H, W, 3), s.id


def test_pre_encoded_native_modes(folder: Path) -> None:
    for fmt in ("png", "jpeg"):
        cfg = filesystem_config(
            folder, {"image_to_rgb8": False, "pre_encode_images": True, "encode_format": fmt}
        )
        got = by_name(drain(cfg).samples)
        for name, (mode, channels, dtype) in EXPECTED.items():
            s = got[name]
            data = s.image
            assert isinstance(data, bytes) and s.pre_encoded, name
            decoded = Image.open(io.BytesIO(data))
            alpha = channels in (2, 4)
            if fmt == "jpeg" and not alpha:
                # JPEG holds grey and RGB, 8 bits: a 16-bit image is reduced to its high byte.
                assert decoded.format == "JPEG" and decoded.mode == ("L" if channels == 1 else "RGB"), name
                assert s.bit_depth == 8, name
                continue
            # PNG (also for JPEG with alpha, which JPEG cannot hold), in the mode and depth delivered.
            assert decoded.format == "PNG", name
            assert s.bit_depth == (16 if dtype is np.uint16 else 8), name
            pil_mode = {"LA;16": "RGBA", "RGB;16": "RGB", "RGBA;16": "RGBA"}.get(mode, mode)
            assert decoded.mode == pil_mode, (name, decoded.mode)
            if dtype is np.uint8 and name in LOSSLESS:
                np.testing.assert_array_equal(np.asarray(decoded), reference(folder / name), err_msg=name)


# -- alpha_mask -------------------------------------------------------------------------------------


def composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Pillow's alpha composite of ``rgba`` onto an opaque ``background``, as RGB."""
    im = Image.fromarray(rgba, "RGBA")
    base = Image.new("RGBA", im.size, (*background, 255))
    return np.asarray(Image.alpha_composite(base, im).convert("RGB"))


@pytest.mark.parametrize("background", [(0, 0, 0), (255, 255, 255), (128, 128, 128)])
def test_alpha_mask_full_size(folder: Path, background: tuple[int, int, int]) -> None:
    cfg = filesystem_config(folder, {"alpha_mask": "alpha", "alpha_background": list(background)})
    got = by_name(drain(cfg).samples)
    rgba = np.asarray(Image.open(folder / "rgba.png"))
    s = got["rgba.png"]
    mask = s.mask_arrays()["alpha"]
    np.testing.assert_array_equal(mask, rgba[..., 3])
    assert s.masks["alpha"].mode == "L"
    assert np.abs(s.array.astype(int) - composite(rgba, background).astype(int)).max() <= 2
    for name in ("rgb.png", "photo.jpg", "l.png", "grey.jpg", "palette.png"):
        assert (got[name].mask_arrays()["alpha"] == 255).all(), name
    # 16-bit alpha: its high byte.
    np.testing.assert_array_equal(
        got["rgba16.png"].mask_arrays()["alpha"], (arrays16()["rgba16.png"][..., 3] >> 8)
    )


def test_alpha_mask_resized_aligned(folder: Path) -> None:
    """After crop_and_resize, the mask is the image's alpha resized with it: Pillow's LANCZOS of the
    alpha over the same crop; the flattened colour is Pillow's composite of its resized RGBA."""
    for native in (False, True):
        image = image_config(SIZE, alpha_mask="alpha", alpha_background="black", image_to_rgb8=not native)
        got = by_name(drain(filesystem_config(folder, image)).samples)
        for name in ("rgba.png", "la.png", "rgba.webp"):
            s = got[name]
            mask = s.mask_arrays()["alpha"]
            h, w = mask.shape
            assert s.array.shape[:2] == (h, w), name
            cover, box = expected_geometry(W, H, (w, h))
            ref = reference(folder / name)
            alpha = np.asarray(Image.fromarray(ref[..., -1]).resize(cover, Image.LANCZOS).crop(box))
            assert psnr_peak(mask, alpha, 255) >= 35, name
            assert np.abs(mask.astype(int) - alpha.astype(int)).max() <= 3, name
            resized = lanczos(ref, cover, box)
            if ref.shape[2] == 2:
                want = (resized[..., 0].astype(np.float64) * resized[..., 1] / 255).round()
                colour = s.array if native else s.array[..., 0]
            else:
                want = composite(resized, (0, 0, 0))
                colour = s.array
            assert np.abs(colour.astype(int) - want.astype(int)).max() <= 3, name
        assert got["la.png"].mode == ("L" if native else "RGB")
        assert got["rgba.png"].mode == "RGB"


def test_alpha_mask_from_webdataset_and_dataroom(tmp_path: Path) -> None:
    """The mask is made in decode, so every source delivers it."""
    rgb = photo(W, H, seed=5)
    rgba = np.dstack([rgb, smooth_alpha(W, H)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    data = buf.getvalue()
    shard = write_shard(tmp_path / "s.tar", [(f"k{i}", {"png": data}) for i in range(3)])
    image = {"alpha_mask": "alpha", "alpha_background": "white"}
    got = drain(webdataset_config(str(shard), image))
    assert len(got.samples) == 3
    with DataroomServer(seed=1) as srv:
        for i in range(3):
            srv.add_image(f"img{i}", W, H, data=data, ext="png")
        got.samples += drain(dataroom_config(srv, image)).samples
    assert len(got.samples) == 6
    for s in got.samples:
        np.testing.assert_array_equal(s.mask_arrays()["alpha"], rgba[..., 3])
        assert np.abs(s.array.astype(int) - composite(rgba, (255, 255, 255)).astype(int)).max() <= 2


def test_rust_client_defaults_to_native_modes(folder: Path) -> None:
    """Under DatagoClient a config without image_to_rgb8 gets the Rust loader's native modes."""
    client = datago.DatagoClient(
        {"source_type": "file", "source_config": {"root_path": str(folder), "random_sampling": False}}
    )
    modes: dict[str, tuple[str, int, int]] = {}
    while (sample := client.get_sample()) is not None:
        payload = sample.image.get_payload()
        modes[Path(sample.id).name] = (sample.image.mode, payload.channels, payload.bit_depth)
    client.stop()
    assert modes["la.png"] == ("LA", 2, 8)
    assert modes["l16.png"][1:] == (1, 16)
    assert modes["rgba16.png"] == ("RGBA", 4, 16)
    assert modes["palette_t.png"] == ("RGBA", 4, 8)


@pytest.mark.parametrize(
    ("image", "extra", "key"),
    [
        ({"crop_and_resize": True, "image_to_rgb8": False}, {"batch_size": 4}, "batch_size"),
        ({"crop_and_resize": True, "alpha_mask": "alpha"}, {"batch_size": 4}, "batch_size"),
        ({"alpha_mask": "alpha", "alpha_background": "keep"}, {}, "image_config.alpha_mask"),
        ({"alpha_mask": 1}, {}, "image_config.alpha_mask"),
        ({"image_to_rgb8": "no"}, {}, "image_config.image_to_rgb8"),
    ],
)
def test_refused_combinations_name_the_key(
    folder: Path, image: dict[str, Any], extra: dict[str, Any], key: str
) -> None:
    with pytest.raises(datago.ConfigError) as info:
        datago.Client(filesystem_config(folder, image, **extra))
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_torch_tensors_of_native_modes(folder: Path) -> None:
    torch = pytest.importorskip("torch")
    from datago.torch import sample_to_torch

    got = by_name(drain(filesystem_config(folder, {"image_to_rgb8": False})).samples)
    for name, (_, channels, dtype) in EXPECTED.items():
        image = sample_to_torch(got[name], channels_first=True)["image"]
        assert tuple(image.shape) == (channels, H, W), name
        assert image.dtype == (torch.uint16 if dtype is np.uint16 else torch.uint8), name
        np.testing.assert_array_equal(image.numpy().transpose(1, 2, 0).squeeze(), got[name].array)
