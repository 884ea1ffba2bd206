"""Differential tests against Photoroom's Rust loader (``datago==2026.10.1``, in its own venv made by
``make deps``: .cache/bench/venv-rust): the same configs over the same generated folders through both
``DatagoClient``s (tests/support/rust_worker.py), comparing ids, sizes, modes, buckets, pixels, the
payload fields, the keys of get_sample_auto_convert() and the encoded formats."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import datago
from support.images import photo, png16, smooth_alpha
from support.process import PYTHON_DIR, ROOT
from support.reference import psnr

RUST_PYTHON = ROOT / ".cache" / "bench" / "venv-rust" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "support" / "rust_worker.py"

pytestmark = pytest.mark.skipif(
    not RUST_PYTHON.exists(), reason=f"{RUST_PYTHON} is missing: `make deps` installs the Rust loader there"
)

# Formats both decode losslessly: pixels must be equal.
LOSSLESS = {"rgb.png", "rgba.png", "l.png", "la.png", "palette.png", "palette_t.png", "lossless.webp"}
LOSSLESS |= {"rgb24.bmp", "palette.gif"}


def write_folder(root: Path) -> dict[str, tuple[int, int]]:
    """One file per kind, and sizes (width, height) of each."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    rgb = photo(60, 40, seed=1)
    alpha = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    files: dict[str, Image.Image] = {
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "l.png": Image.fromarray(rgb[..., 0]),
        "la.png": Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA"),
        "palette.png": Image.fromarray(rgb).quantize(32),
        "lossless.webp": Image.fromarray(rgb),
        "rgb24.bmp": Image.fromarray(rgb),
        "palette.gif": Image.fromarray(rgb).quantize(32),
        "photo.jpg": Image.fromarray(photo(64, 48, seed=2)),
    }
    pal_t = Image.fromarray(rgb).quantize(16)
    pal_t.info["transparency"] = 0
    files["palette_t.png"] = pal_t
    for name, im in files.items():
        params: dict[str, Any] = {"lossless": True} if name.endswith(".webp") else {}
        if name == "photo.jpg":
            params["quality"] = 92
        if name == "palette_t.png":
            params["transparency"] = 0
        im.save(root / name, **params)
    # 16-bit grey: Pillow writes mode I;16 as a 16-bit PNG.
    Image.fromarray(rgb[..., 2].astype(np.uint16) * 257).save(root / "l16.png")
    # A JPEG with an EXIF orientation (6: rotate 90° clockwise to display).
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(64, 48, seed=3)).save(root / "exif6.jpg", quality=92, exif=exif.tobytes())
    return {p.name: Image.open(p).size for p in root.iterdir()}


def run(python: Path, config: dict[str, Any], out: Path, env: dict[str, str]) -> dict[str, Any]:
    cfg = out.with_suffix(".json")
    cfg.write_text(json.dumps(config))
    proc = subprocess.run(
        [str(python), str(WORKER), str(cfg), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    for n, s in enumerate(result["samples"]):
        s["pixels"] = np.load(out / f"{n}.npy") if (out / f"{n}.npy").exists() else None
        s["raw"] = np.load(out / f"{n}.raw.npy") if (out / f"{n}.raw.npy").exists() else None
    return result


def both(tmp_path: Path, config: dict[str, Any], tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    rust_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    ours_env = {**rust_env, "PYTHONPATH": str(PYTHON_DIR)}
    rust = run(RUST_PYTHON, config, tmp_path / f"rust-{tag}", rust_env)
    ours = run(Path(sys.executable), config, tmp_path / f"ours-{tag}", ours_env)
    return rust, ours


def raw_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload fields that must agree for raw pixels (not the first bytes of the pixels)."""
    return {k: v for k, v in payload.items() if k != "magic"}


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(s["id"]).name: s for s in result["samples"]}


def rust_config(root: Path, image: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "source_type": "file",
        "source_config": {"root_path": str(root), "random_sampling": False, "rank": 0, "world_size": 1},
        "limit": 1000,
        "samples_buffer_size": 16,
    }
    if image is not None:
        config["image_config"] = image
    return config


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    root = tmp_path_factory.mktemp("rustdiff") / "imgs"
    return root, write_folder(root)


def compare_common(rust: dict[str, Any], ours: dict[str, Any]) -> None:
    assert sorted(by_name(rust)) == sorted(by_name(ours))
    assert rust["auto_convert"] is not None and ours["auto_convert"] is not None
    assert set(rust["auto_convert"]) == set(ours["auto_convert"])
    for key in ("id", "source", "duplicate_state", "tags", "coca_embedding", "latents", "masks"):
        assert rust["auto_convert"][key] == ours["auto_convert"][key], key
    for r, o in zip(
        sorted(rust["samples"], key=lambda s: s["id"]),
        sorted(ours["samples"], key=lambda s: s["id"]),
        strict=True,
    ):
        assert r["types"] == o["types"], r["id"]
        assert r["source"] == o["source"] == "filesystem"


def test_rgb8_full_size(tmp_path: Path, folder: tuple[Path, dict[str, tuple[int, int]]]) -> None:
    root, sizes = folder
    image = {"crop_and_resize": False, "image_to_rgb8": True}
    rust, ours = both(tmp_path, rust_config(root, image), "rgb8")
    compare_common(rust, ours)
    r, o = by_name(rust), by_name(ours)
    for name in r:
        rp, op = r[name]["payload"], o[name]["payload"]
        assert r[name]["mode"] == o[name]["mode"] == "RGB", name
        if name == "la.png":
            # A difference on purpose: the Rust loader drops the alpha of grey+alpha images, datago
            # composites it onto the same grey as RGBA images.
            src = np.asarray(Image.open(folder[0] / name)).astype(np.float64)
            grey, alpha = src[..., 0], src[..., 1] / 255
            np.testing.assert_array_equal(r[name]["pixels"][..., 0], src[..., 0].astype(np.uint8))
            want = grey * alpha + 128 * (1 - alpha)
            assert np.abs(o[name]["pixels"][..., 0] - want).max() <= 1
            continue
        if name == "exif6.jpg":
            # A difference on purpose: datago applies the EXIF orientation, the Rust loader does not.
            assert r[name]["size"] == [64, 48] and o[name]["size"] == [48, 64]
            np.testing.assert_array_equal(np.rot90(o[name]["pixels"], 1).shape, r[name]["pixels"].shape)
            assert psnr(np.rot90(o[name]["pixels"], 1), r[name]["pixels"]) >= 35
            continue
        assert r[name]["size"] == o[name]["size"], (name, r[name]["size"], o[name]["size"])
        assert raw_fields(rp) == raw_fields(op), (name, rp, op)
        a, b = r[name]["pixels"], o[name]["pixels"]
        if name in LOSSLESS:
            diff = np.abs(a.astype(int) - b.astype(int))
            # Alpha is composited onto the same grey; rounding may differ by one level.
            assert diff.max() <= (1 if "a" in name.split(".")[0][-1:] or "_t" in name else 0), (
                name,
                diff.max(),
            )
        else:
            assert psnr(a, b) >= 35, (name, psnr(a, b))


def log_rule(w: int, h: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - math.log(w / h)))


def test_buckets_agree_where_the_rules_differ(tmp_path: Path) -> None:
    root = tmp_path / "sizes"
    root.mkdir()
    buckets = datago.aspect_ratio_buckets(256, 32, 0.5, 2.0)
    ratios = sorted(Fraction(w, h) for w, h in buckets)
    sizes = []
    # Sizes between the geometric and arithmetic means of two neighbouring ratios (the two rules
    # disagree there) and at the arithmetic mean itself (an exact tie).
    for lo, hi in zip(ratios, ratios[1:], strict=False):
        for h in (90, 120, 150):
            arith = (lo + hi) / 2
            geo = math.sqrt(lo * hi)
            w_mid = int((float(arith) + geo) / 2 * h)
            sizes.append((w_mid, h))
            if (arith * h).denominator == 1:
                sizes.append((int(arith * h), h))
    sizes = sorted(set(sizes))
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(photo(w, h, seed=i)).save(root / f"{i:03d}_{w}x{h}.png")
    image = {
        "crop_and_resize": True,
        "default_image_size": 256,
        "downsampling_ratio": 32,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
        "image_to_rgb8": True,
    }
    rust, ours = both(tmp_path, rust_config(root, image), "buckets")
    r, o = by_name(rust), by_name(ours)
    assert sorted(r) == sorted(o) and len(r) == len(sizes)
    differ = 0
    for name in r:
        w, h = (int(x) for x in name.split("_")[1].split(".")[0].split("x"))
        assert r[name]["size"] == o[name]["size"], (name, r[name]["size"], o[name]["size"])
        if tuple(o[name]["size"]) != log_rule(w, h, buckets):
            differ += 1
        assert o[name]["payload"]["original_width"] == w == r[name]["payload"]["original_width"]
        # Same crop and resize: both resample with their own Lanczos.
        assert psnr(r[name]["pixels"], o[name]["pixels"]) >= 35, (
            name,
            psnr(r[name]["pixels"], o[name]["pixels"]),
        )
    assert differ >= 5, "the sizes must include some where log space would pick another bucket"


def test_crop_and_resize_folder(tmp_path: Path, folder: tuple[Path, dict[str, tuple[int, int]]]) -> None:
    root, _ = folder
    # (The Rust loader refuses 64/16 with ratios 0.5 to 2: "Aspect ratio constraints are invalid".)
    image = {
        "crop_and_resize": True,
        "default_image_size": 256,
        "downsampling_ratio": 32,
        "min_aspect_ratio": 0.5,  # the Rust loader needs them
        "max_aspect_ratio": 2.0,
        "image_to_rgb8": True,
    }
    rust, ours = both(tmp_path, rust_config(root, image), "crop")
    compare_common(rust, ours)
    r, o = by_name(rust), by_name(ours)
    for name in r:
        if name in ("exif6.jpg", "la.png"):
            continue  # differences on purpose (test_rgb8_full_size)
        assert r[name]["size"] == o[name]["size"], name
        assert raw_fields(r[name]["payload"]) == raw_fields(o[name]["payload"]), name
        assert psnr(r[name]["pixels"], o[name]["pixels"]) >= 35, (
            name,
            psnr(r[name]["pixels"], o[name]["pixels"]),
        )


def test_pre_encoded_formats(tmp_path: Path, folder: tuple[Path, dict[str, tuple[int, int]]]) -> None:
    root, _ = folder
    for fmt, magic in ((None, "89504e47"), ("png", "89504e47"), ("jpeg", "ffd8ffe0")):
        image: dict[str, Any] = {"crop_and_resize": False, "pre_encode_images": True, "image_to_rgb8": True}
        if fmt is not None:
            image["encode_format"] = fmt
        rust, ours = both(tmp_path, rust_config(root, image), f"enc-{fmt}")
        r, o = by_name(rust), by_name(ours)
        assert sorted(r) == sorted(o)
        for name in r:
            if name in ("exif6.jpg", "la.png"):
                continue  # differences on purpose (test_rgb8_full_size)
            rp, op = r[name]["payload"], o[name]["payload"]
            assert rp["is_encoded"] and op["is_encoded"] and rp["channels"] == op["channels"] == -1
            assert rp["magic"].startswith(magic[:6]) and op["magic"].startswith(magic[:6]), (
                fmt,
                name,
                rp,
                op,
            )
            assert (rp["width"], rp["height"]) == (op["width"], op["height"])
            assert psnr(r[name]["pixels"], o[name]["pixels"]) >= 35, (fmt, name)


def test_float_rounding_does_not_break_a_tie(tmp_path: Path) -> None:
    """2003x3960 lies exactly between 352x720 and 368x704 (512/16 buckets); float64 differences
    would pick 368x704, both loaders pick the smaller ratio."""
    root = tmp_path / "tie"
    root.mkdir()
    Image.new("RGB", (2003, 3960), (10, 120, 30)).save(root / "tie.png")
    image = {
        "crop_and_resize": True,
        "default_image_size": 512,
        "downsampling_ratio": 16,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
        "image_to_rgb8": True,
    }
    rust, ours = both(tmp_path, rust_config(root, image), "tie")
    assert by_name(rust)["tie.png"]["size"] == by_name(ours)["tie.png"]["size"] == [352, 720]


# -- image_to_rgb8 false: native modes -----------------------------------------------------------------

NATIVE_LOSSLESS = {"rgb.png", "rgba.png", "l.png", "la.png", "palette.png", "palette_t.png", "lossless.webp"}
NATIVE_LOSSLESS |= {"rgba.webp", "l16.png", "la16.png", "rgb16.png", "rgba16.png", "rgb24.bmp", "palette.gif"}


def write_native_folder(root: Path) -> None:
    """Every mode, with a smooth alpha (so that resized colours compare) and 16-bit PNGs."""
    root.mkdir(parents=True)
    rgb = photo(60, 40, seed=1)
    alpha = smooth_alpha(60, 40)
    files: dict[str, Image.Image] = {
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "l.png": Image.fromarray(rgb[..., 0]),
        "la.png": Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA"),
        "palette.png": Image.fromarray(rgb).quantize(32),
        "lossless.webp": Image.fromarray(rgb),
        "rgba.webp": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "lossy.webp": Image.fromarray(rgb),
        "rgb24.bmp": Image.fromarray(rgb),
        "palette.gif": Image.fromarray(rgb).quantize(32),
        "photo.jpg": Image.fromarray(photo(64, 48, seed=2)),
        "grey.jpg": Image.fromarray(photo(64, 48, seed=2)[..., 1]),
    }
    for name, im in files.items():
        params: dict[str, Any] = {"lossless": True} if name in ("lossless.webp", "rgba.webp") else {}
        if name.endswith(".jpg") or name == "lossy.webp":
            params["quality"] = 92
        im.save(root / name, **params)
    Image.fromarray(rgb).quantize(16).save(root / "palette_t.png", transparency=0)
    wide = rgb.astype(np.uint16) * 257 + np.arange(60, dtype=np.uint16)[None, :, None] * 3
    wide_alpha = alpha.astype(np.uint16) * 257
    (root / "l16.png").write_bytes(png16(wide[..., 0]))
    (root / "la16.png").write_bytes(png16(np.dstack([wide[..., 1], wide_alpha])))
    (root / "rgb16.png").write_bytes(png16(wide))
    (root / "rgba16.png").write_bytes(png16(np.dstack([wide, wide_alpha])))


@pytest.fixture(scope="module")
def native_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rustnative") / "imgs"
    write_native_folder(root)
    return root


def peak_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR at the samples' own peak (65535 for 16-bit), colours premultiplied by alpha when the
    image has one: where alpha is low a colour barely shows, and resizers may leave it anything."""
    peak = 65535.0 if a.dtype == np.uint16 else 255.0
    x, y = a.astype(np.float64), b.astype(np.float64)
    if a.shape[-1] in (2, 4):
        x[..., :-1] *= x[..., -1:] / peak
        y[..., :-1] *= y[..., -1:] / peak
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


# Our PIL modes for the Rust loader's 16-bit payloads, which it cannot convert to PIL (its
# to_pil_image raises): grey as "I;16", colour as its 8-bit reduction.
OUR_16_BIT_MODES = {1: "I;16", 2: "LA", 3: "RGB", 4: "RGBA"}


def compare_native(rust: dict[str, Any], ours: dict[str, Any], lossless: set[str]) -> None:
    r, o = by_name(rust), by_name(ours)
    assert sorted(r) == sorted(o)
    for name in r:
        rp, op = r[name]["payload"], o[name]["payload"]
        assert r[name]["size"] == o[name]["size"], name
        if name.endswith(".gif"):
            # A difference on purpose: a GIF without a transparent colour arrives RGB, as Pillow
            # converts it; the Rust loader makes every GIF RGBA, with an opaque alpha here.
            assert (rp["channels"], op["channels"], o[name]["mode"]) == (4, 3, "RGB"), name
            assert (r[name]["raw"][..., 3] == 255).all(), name
            r[name]["raw"] = r[name]["raw"][..., :3]
            r[name]["mode"], rp["channels"], rp["len"] = "RGB", 3, rp["len"] // 4 * 3
        assert (rp["channels"], rp["bit_depth"]) == (op["channels"], op["bit_depth"]), (name, rp, op)
        assert raw_fields(rp) == raw_fields(op), (name, rp, op)
        if r[name]["mode"] is None:
            assert rp["bit_depth"] == 16, name
            assert o[name]["mode"] == OUR_16_BIT_MODES[op["channels"]], name
        else:
            assert r[name]["mode"] == o[name]["mode"], name
        a, b = r[name]["raw"], o[name]["raw"]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if name in lossless:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert peak_psnr(a, b) >= 35, (name, peak_psnr(a, b))


def test_native_full_size(tmp_path: Path, native_folder: Path) -> None:
    image = {"crop_and_resize": False, "image_to_rgb8": False}
    rust, ours = both(tmp_path, rust_config(native_folder, image), "native")
    compare_common(rust, ours)
    compare_native(rust, ours, NATIVE_LOSSLESS)
    modes = {name: s["mode"] for name, s in by_name(ours).items()}
    assert modes["la.png"] == "LA" and modes["l.png"] == "L" and modes["grey.jpg"] == "L"
    assert modes["palette.png"] == "RGB" and modes["palette_t.png"] == "RGBA"


def test_native_resized(tmp_path: Path, native_folder: Path) -> None:
    image = {
        "crop_and_resize": True,
        "default_image_size": 32,
        "downsampling_ratio": 16,
        "min_aspect_ratio": 0.5,
        "max_aspect_ratio": 2.0,
        "image_to_rgb8": False,
    }
    rust, ours = both(tmp_path, rust_config(native_folder, image), "native-resized")
    compare_common(rust, ours)
    compare_native(rust, ours, set())


def test_native_pre_encoded_png(tmp_path: Path, native_folder: Path) -> None:
    """PNG keeps every native mode and depth, in both loaders."""
    image = {"crop_and_resize": False, "image_to_rgb8": False, "pre_encode_images": True}
    rust, ours = both(tmp_path, rust_config(native_folder, image), "native-png")
    r, o = by_name(rust), by_name(ours)
    assert sorted(r) == sorted(o)
    for name in r:
        if name.endswith(".gif"):
            continue  # RGBA in the Rust loader, RGB here: see compare_native
        rp, op = r[name]["payload"], o[name]["payload"]
        assert rp["is_encoded"] and op["is_encoded"] and rp["magic"] == op["magic"] == "89504e47", name
        assert (rp["bit_depth"], r[name]["mode"], r[name]["size"]) == (
            op["bit_depth"],
            o[name]["mode"],
            o[name]["size"],
        ), name
        if name in NATIVE_LOSSLESS:
            np.testing.assert_array_equal(r[name]["pixels"], o[name]["pixels"], err_msg=name)
        else:
            assert psnr(r[name]["pixels"], o[name]["pixels"]) >= 35, name
