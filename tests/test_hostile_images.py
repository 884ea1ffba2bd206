"""Files that declare far more than they hold (libpng's huge_*_chunk crashers and their kin in
JPEG and WebP), and compressed metadata that inflates far beyond the file: each is skipped, or
decoded without the metadata, fast and without allocating what it declares.

Bound checked: the peak RSS of a run over many copies of every class at concurrency 4 stays within
HOSTILE_RSS_BOUND of the same run over good files only. Before the pre-scan each huge-chunk PNG
allocated and zeroed about 1 GiB for 0.6-5 s (eight at concurrency 4 peaked at 3.9 GB).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from support.config import filesystem_config
from support.images import photo, save
from support.process import run_python

COPIES = 8
CONCURRENCY = 4
# Decoders' copies of the file and of the (tiny) image, allocator slack of four workers, and one
# 16 MiB ICC profile per worker at most: far below one declared gigabyte.
HOSTILE_RSS_BOUND = 192 << 20
# About 200 files, each skipped in well under 100 ms (1 ms here): generous for a loaded 2-core box.
HOSTILE_RUN_SECONDS = 20.0
HUGE = (1 << 30) - 1  # what libpng's crashers declare


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_head(width: int = 1, height: int = 1) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def png_idat(width: int = 1, height: int = 1) -> bytes:
    return chunk(b"IDAT", zlib.compress((b"\x00" + b"\x07" * width) * height))


def png_huge_chunk(kind: bytes, after_pixels: bool) -> bytes:
    """libpng's crasher shape (57 bytes): a 1x1 header, then a chunk declaring 1 GiB, holding 16."""
    head = png_head() + (png_idat() if after_pixels else b"")
    return head + struct.pack(">I", HUGE) + kind + b"A" * 16


def png_text_bomb(kind: bytes, count: int = 10, inflated: int = 40 << 20) -> bytes:
    """Well-formed zTXt / iTXt chunks, each inflating to ``inflated`` bytes."""
    body = (b"Comment\x00\x00" if kind == b"zTXt" else b"Comment\x00\x01\x00\x00\x00") + zlib.compress(
        bytes(inflated), 9
    )
    return png_head(8, 8) + chunk(kind, body) * count + png_idat(8, 8) + chunk(b"IEND", b"")


def png_icc_bomb() -> bytes:
    """An iCCP chunk whose profile header declares 1 GiB, with a 132-byte stream."""
    icc = struct.pack(">I", 1 << 30) + bytes(32) + b"acsp" + bytes(92)
    iccp = chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    return png_head(8, 8) + iccp + png_idat(8, 8) + chunk(b"IEND", b"")


def jpeg_huge_segment(jpeg: bytes, marker: int, prefix: bytes) -> bytes:
    return jpeg[:2] + bytes((0xFF, marker, 0xFF, 0xFF)) + prefix


def webp_huge_chunk(kind: bytes) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x20" + bytes(9) + kind + struct.pack("<I", HUGE) + b"A" * 16
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def classes(jpeg: bytes) -> dict[str, tuple[bytes, bool]]:
    """name -> (bytes, decoded): decoded when the oversized part is metadata datago drops."""
    out: dict[str, tuple[bytes, bool]] = {}
    for kind in (b"tEXt", b"zTXt", b"iTXt", b"pCAL", b"sCAL", b"sPLT", b"iCCP", b"eXIf", b"prIv"):
        name = kind.decode()
        out[f"huge_{name}.png"] = (png_huge_chunk(kind, after_pixels=False), False)
        out[f"pixels_then_huge_{name}.png"] = (png_huge_chunk(kind, after_pixels=True), True)
    out["ztxt_bomb.png"] = (png_text_bomb(b"zTXt"), True)
    out["itxt_bomb.png"] = (png_text_bomb(b"iTXt"), True)
    out["icc_bomb.png"] = (png_icc_bomb(), True)
    out["huge_app1.jpg"] = (jpeg_huge_segment(jpeg, 0xE1, b"Exif\x00\x00MM"), False)
    out["huge_app2.jpg"] = (jpeg_huge_segment(jpeg, 0xE2, b"ICC_PROFILE\x00\x01\x01"), False)
    out["huge_iccp.webp"] = (webp_huge_chunk(b"ICCP"), False)
    out["huge_exif.webp"] = (webp_huge_chunk(b"EXIF"), False)
    return out


RUN = """
import json, logging, sys, time
import datago

reports = []
class Reports(logging.Handler):
    def emit(self, record):
        if record.msg == "skipped %s (%s): %s":
            reports.append([str(a) for a in record.args])
logging.getLogger("datago").addHandler(Reports())
config = json.loads(sys.argv[1] if len(sys.argv) > 1 else {config!r})
start = time.monotonic()
with datago.Client(config) as client:
    delivered = [s.id for s in client]
    stats = client.stats()
elapsed = time.monotonic() - start
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) << 10 for line in f if line.startswith("VmHWM:"))
print(json.dumps({{"delivered": delivered, "skipped": stats["skipped"], "reports": reports,
                  "elapsed": elapsed, "peak_rss": hwm}}))
"""


def run(root: Path) -> dict[str, object]:
    config = filesystem_config(root, concurrency=CONCURRENCY)
    proc = run_python(RUN.format(config=json.dumps(config)), timeout=600)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, tuple[bytes, bool]]]:
    good_root = tmp_path_factory.mktemp("good")
    hostile_root = tmp_path_factory.mktemp("hostile")
    for root in (good_root, hostile_root):
        for i in range(4):
            save(root / f"good{i}.jpg", photo(64, 48, seed=i), "JPEG", quality=90)
            save(root / f"good{i}.png", photo(48, 64, seed=10 + i))
    jpeg = (good_root / "good0.jpg").read_bytes()
    cases = classes(jpeg)
    for name, (data, _) in cases.items():
        for copy in range(COPIES):
            (hostile_root / f"{copy}_{name}").write_bytes(data)
    return good_root, hostile_root, cases


def test_hostile_files_are_cheap(folders: tuple[Path, Path, dict[str, tuple[bytes, bool]]]) -> None:
    good_root, hostile_root, cases = folders
    good = run(good_root)
    hostile = run(hostile_root)

    def files(decodes: bool) -> list[str]:
        names = [name for name, (_, ok) in cases.items() if ok == decodes]
        return sorted(str(hostile_root / f"{copy}_{name}") for name in names for copy in range(COPIES))

    decoded, refused = files(True), files(False)
    delivered = sorted(str(d) for d in hostile["delivered"])  # type: ignore[union-attr]
    assert [d for d in delivered if "good" not in d] == decoded
    assert hostile["skipped"] == {"decode_error": len(refused)}, hostile["skipped"]
    reports = hostile["reports"]
    assert isinstance(reports, list)
    assert sorted(r[0] for r in reports) == refused
    for sid, reason, message in reports:
        assert reason == "decode_error"
        fmt = {"png": "png", "jpg": "jpeg", "webp": "webp"}[sid.rsplit(".", 1)[1]]
        assert message.startswith(f"cannot decode image: {fmt}: "), message
        assert "declares" in message and ("truncated" in message), message
    grew = int(hostile["peak_rss"]) - int(good["peak_rss"])  # type: ignore[call-overload]
    print(
        f"peak RSS good {int(good['peak_rss']) >> 20} MiB, hostile {int(hostile['peak_rss']) >> 20} MiB "  # type: ignore[call-overload]
        f"({len(cases) * COPIES} hostile files, {hostile['elapsed']:.2f} s)"
    )
    assert grew <= HOSTILE_RSS_BOUND, (good["peak_rss"], hostile["peak_rss"])
    assert float(hostile["elapsed"]) <= HOSTILE_RUN_SECONDS, hostile["elapsed"]  # type: ignore[arg-type]


def test_dropped_metadata_keeps_pixels(tmp_path: Path) -> None:
    """The text bomb decodes to the same pixels as the file without its chunks."""
    plain = png_head(8, 8) + png_idat(8, 8) + chunk(b"IEND", b"")
    (tmp_path / "a_plain.png").write_bytes(plain)
    (tmp_path / "b_bomb.png").write_bytes(png_text_bomb(b"zTXt", count=2))
    import datago

    with datago.Client(filesystem_config(tmp_path, concurrency=1)) as client:
        arrays = {Path(s.id).name: np.array(s.array) for s in client}
    assert set(arrays) == {"a_plain.png", "b_bomb.png"}
    assert np.array_equal(arrays["a_plain.png"], arrays["b_bomb.png"])
    assert arrays["a_plain.png"].shape == (8, 8, 3) and int(arrays["a_plain.png"][0, 0, 0]) == 7
