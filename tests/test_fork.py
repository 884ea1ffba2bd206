"""A client created in a forked child after the parent decoded images: every decode path, not only JPEG.

libvips keeps the threads of its workers alive for a while after use, and a forked child inherits
its list of idle workers without the threads: a libvips load that ran on them hung the child.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from support.config import filesystem_config, image_config
from support.forking import IMPORT_WAIT_CHILD
from support.images import photo, png16, smooth_alpha
from support.process import run_python

_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png16_interlaced(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (HxWx3 uint16) with Adam7 interlacing, which Pillow cannot write."""
    h, w = array.shape[:2]
    raw = b""
    for x0, y0, dx, dy in _ADAM7:
        sub = array[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.astype(">u2").tobytes() for row in sub)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 1)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return exif.tobytes()


def _write(root: Path, kind: str, n: int = 3) -> None:
    root.mkdir()
    for i in range(n):
        rgb = photo(200, 150, seed=i)
        path = root / f"img{i}"
        if kind == "webp_lossless":
            Image.fromarray(rgb).save(f"{path}.webp", lossless=True)
        elif kind == "webp_lossy":
            Image.fromarray(rgb).save(f"{path}.webp", quality=80)
        elif kind == "webp_alpha":
            rgba = np.dstack([rgb, smooth_alpha(200, 150)])
            Image.fromarray(rgba).save(f"{path}.webp", lossless=True)
        elif kind == "webp_exif_rotated":
            Image.fromarray(rgb).save(f"{path}.webp", lossless=True, exif=_rotated_exif())
        elif kind == "cmyk_jpeg":
            Image.fromarray(rgb).convert("CMYK").save(f"{path}.jpg", quality=90)
        elif kind == "png16":
            Path(f"{path}.png").write_bytes(png16(rgb.astype(np.uint16) * 257 + i))
        elif kind == "png16_interlaced":
            Path(f"{path}.png").write_bytes(_png16_interlaced(rgb.astype(np.uint16) * 257 + i))
        else:
            raise AssertionError(kind)


# The image settings each kind is decoded with, in the parent then in the child: the whole image
# as RGB, a cover resize (with shrink-on-load), native modes and kept alpha.
_SETTINGS: dict[str, dict[str, Any] | None] = {
    "whole": None,
    "resize": image_config(size=64),
    "native": {"image_to_rgb8": False},
    "keep_alpha": {"alpha_background": "keep"},
}

_KINDS = [
    "webp_lossless",
    "webp_lossy",
    "webp_alpha",
    "webp_exif_rotated",
    "cmyk_jpeg",
    "png16",
    "png16_interlaced",
]


@pytest.mark.parametrize("kind", _KINDS)
def test_child_decodes_after_parent_decoded(tmp_path: Path, kind: str) -> None:
    root = tmp_path / kind
    _write(root, kind)
    configs = {name: filesystem_config(root, image=image) for name, image in _SETTINGS.items()}
    script = f"""
        import json, os, time
        import numpy as np
        import datago
        {IMPORT_WAIT_CHILD}
        configs = json.loads({json.dumps(json.dumps(configs))})

        def decode(cfg):
            with datago.Client(cfg) as c:
                return {{s.id: np.array(s.array) for s in c}}

        # The parent decodes right before the fork: libvips' workers are idle, not gone.
        parent = {{name: decode(cfg) for name, cfg in configs.items()}}
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for name, cfg in configs.items():
                    print("CHILD-START", name, flush=True)
                    got = decode(cfg)
                    same = got.keys() == parent[name].keys() and all(
                        got[k].dtype == parent[name][k].dtype and np.array_equal(got[k], parent[name][k])
                        for k in got
                    )
                    print("CHILD", name, len(got), same, flush=True)
                    if name == "whole":
                        arrays = {{os.path.basename(k): v for k, v in got.items()}}
                        np.savez({json.dumps(str(tmp_path / "child.npz"))}, **arrays)
                code = 0
            finally:
                os._exit(code)
        status = wait_child(pid, 40)
        print("CHILD-HUNG" if status is None else f"CHILD-EXIT {{status}}", flush=True)
        print("PARENT", sum(len(v) for v in parent.values()), flush=True)
    """
    result = run_python(script, timeout=120)
    out = result.stdout
    assert result.returncode == 0, (out, result.stderr[-3000:])
    assert "CHILD-HUNG" not in out, f"the child hung: {out}"
    assert "CHILD-EXIT 0" in out, (out, result.stderr[-3000:])
    for name in _SETTINGS:
        # Every setting delivered all images in the child, identical to the parent's.
        assert f"CHILD {name} 3 True" in out, out
    assert f"PARENT {3 * len(_SETTINGS)}" in out

    # The child's pixels are the right ones, not only the parent's: checked against Pillow where
    # the decode is exact (lossless WebP; the rotated one after exif_transpose).
    if kind in ("webp_lossless", "webp_alpha", "webp_exif_rotated"):
        child = np.load(tmp_path / "child.npz")
        for i in range(3):
            with Image.open(root / f"img{i}.webp") as im:
                if kind == "webp_exif_rotated":
                    im = ImageOps.exif_transpose(im)
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
            if kind == "webp_alpha":
                a = rgba[..., 3:] / 255
                expected = np.rint(rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
                assert np.abs(child[f"img{i}.webp"].astype(int) - expected).max() <= 1
            else:
                assert np.array_equal(child[f"img{i}.webp"], rgba[..., :3].astype(np.uint8)), kind
                if kind == "webp_exif_rotated":
                    assert child[f"img{i}.webp"].shape == (200, 150, 3)


def test_png16_interlaced_helper_is_valid() -> None:
    """The hand-written interlaced PNG decodes (Pillow reads Adam7) to the pixels it was made of."""
    rgb = photo(13, 11, seed=3)
    data = _png16_interlaced(rgb.astype(np.uint16) * 257)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info.get("interlace") == 1
        assert np.array_equal(np.asarray(im.convert("RGB")), rgb)


def test_torch_fork_workers_after_parent_peeked_webp(tmp_path: Path) -> None:
    """The case users hit: a WebP sample looked at in the parent, then DataLoader workers (fork
    start method) that each build their client after the fork."""
    root = tmp_path / "webp"
    _write(root, "webp_lossy", n=8)
    cfg = filesystem_config(root, image=image_config(size=64))
    script = f"""
        import json
        from torch.utils.data import DataLoader
        import datago
        from datago.torch import DatagoIterableDataset
        cfg = json.loads({json.dumps(json.dumps(cfg))})
        with datago.Client(cfg) as c:
            peeked = c.get_sample(timeout=30)
        loader = DataLoader(
            DatagoIterableDataset(cfg), batch_size=None, num_workers=2,
            multiprocessing_context="fork", timeout=40,
        )
        ids = sorted(item["id"] for item in loader)
        print("IDS", len(ids), len(set(ids)), peeked.id in ids, flush=True)
    """
    result = run_python(script, timeout=150)
    # A hung worker makes the DataLoader raise after its timeout (nonzero exit), not hang the test.
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IDS 8 8 True" in result.stdout, result.stdout


def test_fork_while_parent_is_busy_in_libvips(tmp_path: Path) -> None:
    """Forks while the parent's workers run libvips thread-pool pipelines (CMYK with kept alpha): a
    worker that finishes just before the fork goes back on libvips' idle list microseconds later,
    and must not be left there for the child."""
    big, small = tmp_path / "big", tmp_path / "small"
    for root, n, size in ((big, 60, (300, 200)), (small, 3, (60, 40))):
        root.mkdir()
        for i in range(n):
            Image.fromarray(photo(*size, seed=i)).convert("CMYK").save(root / f"{i}.jpg", quality=90)
    keep = {"alpha_background": "keep"}
    cfg = filesystem_config(big, image=keep, concurrency=3)
    child_cfg = filesystem_config(small, image=keep)
    script = f"""
        import json, os, time
        import datago
        {IMPORT_WAIT_CHILD}
        cfg = json.loads({json.dumps(json.dumps(cfg))})
        child_cfg = json.loads({json.dumps(json.dumps(child_cfg))})
        ok = hung = 0
        for rep in range(6):
            c = datago.Client(cfg)
            c.start()
            for _ in range(3 + rep):
                c.get_sample(timeout=30)
            pid = os.fork()
            if pid == 0:
                with datago.Client(child_cfg) as n:
                    os._exit(0 if len(list(n)) == 3 else 3)
            status = wait_child(pid, 20, poll=0.01)
            ok += status == 0
            hung += status is None
            c.close()
        print("FORKS", ok, hung, flush=True)
    """
    result = run_python(script, timeout=200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FORKS 6 0" in result.stdout, result.stdout
