"""Generators of malformed, unusual and hostile image files, built at test time (no binary is checked in).

Each builder returns the bytes of one file. ``cases()`` lists every single-file class with the outcome
datago must produce for it (delivered, or skipped with a reason); ``tests/test_malformed.py`` serves
them through the filesystem source next to good files.

The arithmetic-coded JPEG is written by a small encoder of ITU-T T.81 Annex D (the QM coder) below:
Pillow cannot write one and ``cjpeg -arithmetic`` (libjpeg-turbo-progs) is not on every machine.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .images import photo

# -- JPEG ------------------------------------------------------------------------------------------

SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def jpeg_bytes(array: np.ndarray, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **params)
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(offset of the 0xFF, marker byte, segment length incl. its 2 length bytes) up to and including SOS."""
    assert data[:2] == SOI, "not a JPEG"
    out = []
    pos = 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((pos, marker, length))
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
        pos += 2 + length
    return out


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def without_eoi(data: bytes) -> bytes:
    """Every byte of the entropy-coded data, only the final EOI marker missing."""
    assert data.endswith(EOI)
    return data[:-2]


def scrambled_dht(data: bytes, seed: int = 0) -> bytes:
    """Every DHT segment's payload (class/id byte, 16 counts, symbols) randomly permuted.

    The counts then no longer describe the symbol list: libjpeg refuses the table (JERR_BAD_HUFF_TABLE)
    or meets impossible codes. Either way the picture cannot be decoded as encoded.
    """
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    found = 0
    for pos, marker, length in jpeg_segments(data):
        if marker == 0xC4:
            body = np.frombuffer(data[pos + 4 : pos + 2 + length], dtype=np.uint8).copy()
            rng.shuffle(body)
            out[pos + 4 : pos + 2 + length] = body.tobytes()
            found += 1
    assert found, "no DHT segment"
    return bytes(out)


def bogus_dht_counts(data: bytes) -> bytes:
    """The first DHT table claims 16 x 255 codes (more than 256 symbols): a structurally invalid table."""
    out = bytearray(data)
    pos = next(p for p, m, _ in jpeg_segments(data) if m == 0xC4)
    out[pos + 5 : pos + 5 + 16] = b"\xff" * 16
    return bytes(out)


def twelve_bit(data: bytes) -> bytes:
    """A baseline JPEG whose frame header is rewritten as SOF1 (extended sequential) with 12-bit samples."""
    out = bytearray(data)
    pos = next(p for p, m, _ in jpeg_segments(data) if m == 0xC0)
    out[pos + 1] = 0xC1
    out[pos + 4] = 12  # sample precision
    return bytes(out)


def with_app1(data: bytes, payload: bytes) -> bytes:
    """data with an APP1 segment holding payload inserted right after SOI."""
    assert data[:2] == SOI
    return SOI + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def exif_payload(
    entries: list[tuple[int, int, int, bytes]], ifd_offset: int = 8, count: int | None = None
) -> bytes:
    """An "Exif\\0\\0" APP1 payload: little-endian TIFF header, then IFD0 of (tag, type, count, value).

    ``ifd_offset`` and ``count`` may lie, to point out of the block or claim more entries than it holds.
    """
    tiff = b"II*\x00" + struct.pack("<I", ifd_offset)
    ifd = struct.pack("<H", len(entries) if count is None else count)
    for tag, typ, n, value in entries:
        ifd += struct.pack("<HHI", tag, typ, n) + value.ljust(4, b"\x00")
    ifd += struct.pack("<I", 0)  # no next IFD
    return b"Exif\x00\x00" + tiff + ifd


def orientation_entry(value: int) -> tuple[int, int, int, bytes]:
    return (0x0112, 3, 1, struct.pack("<H", value))  # Orientation, SHORT, 1 value inline


# -- arithmetic-coded JPEG (T.81 Annex D and F.1.4) ------------------------------------------------

# Table D.2: (Qe, next index after LPS, next index after MPS, switch MPS), plus the fixed 0.5 state of
# T.851 (index 113) used for the sign of AC coefficients.
_QE_TABLE: tuple[tuple[int, int, int, int], ...] = (
    (0x5A1D, 1, 1, 1), (0x2586, 14, 2, 0), (0x1114, 16, 3, 0), (0x080B, 18, 4, 0),
    (0x03D8, 20, 5, 0), (0x01DA, 23, 6, 0), (0x00E5, 25, 7, 0), (0x006F, 28, 8, 0),
    (0x0036, 30, 9, 0), (0x001A, 33, 10, 0), (0x000D, 35, 11, 0), (0x0006, 9, 12, 0),
    (0x0003, 10, 13, 0), (0x0001, 12, 13, 0), (0x5A7F, 15, 15, 1), (0x3F25, 36, 16, 0),
    (0x2CF2, 38, 17, 0), (0x207C, 39, 18, 0), (0x17B9, 40, 19, 0), (0x1182, 42, 20, 0),
    (0x0CEF, 43, 21, 0), (0x09A1, 45, 22, 0), (0x072F, 46, 23, 0), (0x055C, 48, 24, 0),
    (0x0406, 49, 25, 0), (0x0303, 51, 26, 0), (0x0240, 52, 27, 0), (0x01B1, 54, 28, 0),
    (0x0144, 56, 29, 0), (0x00F5, 57, 30, 0), (0x00B7, 59, 31, 0), (0x008A, 60, 32, 0),
    (0x0068, 62, 33, 0), (0x004E, 63, 34, 0), (0x003B, 32, 35, 0), (0x002C, 33, 9, 0),
    (0x5AE1, 37, 37, 1), (0x484C, 64, 38, 0), (0x3A0D, 65, 39, 0), (0x2EF1, 67, 40, 0),
    (0x261F, 68, 41, 0), (0x1F33, 69, 42, 0), (0x19A8, 70, 43, 0), (0x1518, 72, 44, 0),
    (0x1177, 73, 45, 0), (0x0E74, 74, 46, 0), (0x0BFB, 75, 47, 0), (0x09F8, 77, 48, 0),
    (0x0861, 78, 49, 0), (0x0706, 79, 50, 0), (0x05CD, 48, 51, 0), (0x04DE, 50, 52, 0),
    (0x040F, 50, 53, 0), (0x0363, 51, 54, 0), (0x02D4, 52, 55, 0), (0x025C, 53, 56, 0),
    (0x01F8, 54, 57, 0), (0x01A4, 55, 58, 0), (0x0160, 56, 59, 0), (0x0125, 57, 60, 0),
    (0x00F6, 58, 61, 0), (0x00CB, 59, 62, 0), (0x00AB, 61, 63, 0), (0x008F, 61, 32, 0),
    (0x5B12, 65, 65, 1), (0x4D04, 80, 66, 0), (0x412C, 81, 67, 0), (0x37D8, 82, 68, 0),
    (0x2FE8, 83, 69, 0), (0x293C, 84, 70, 0), (0x2379, 86, 71, 0), (0x1EDF, 87, 72, 0),
    (0x1AA9, 87, 73, 0), (0x174E, 72, 74, 0), (0x1424, 72, 75, 0), (0x119C, 74, 76, 0),
    (0x0F6B, 74, 77, 0), (0x0D51, 75, 78, 0), (0x0BB6, 77, 79, 0), (0x0A40, 77, 48, 0),
    (0x5832, 80, 81, 1), (0x4D1C, 88, 82, 0), (0x438E, 89, 83, 0), (0x3BDD, 90, 84, 0),
    (0x34EE, 91, 85, 0), (0x2EAE, 92, 86, 0), (0x299A, 93, 87, 0), (0x2516, 86, 71, 0),
    (0x5570, 88, 89, 1), (0x4CA9, 95, 90, 0), (0x44D9, 96, 91, 0), (0x3E22, 97, 92, 0),
    (0x3824, 99, 93, 0), (0x32B4, 99, 94, 0), (0x2E17, 93, 86, 0), (0x56A8, 95, 96, 1),
    (0x4F46, 101, 97, 0), (0x47E5, 102, 98, 0), (0x41CF, 103, 99, 0), (0x3C3D, 104, 100, 0),
    (0x375E, 99, 93, 0), (0x5231, 105, 102, 0), (0x4C0F, 106, 103, 0), (0x4639, 107, 104, 0),
    (0x415E, 103, 99, 0), (0x5627, 105, 106, 1), (0x50E7, 108, 107, 0), (0x4B85, 109, 103, 0),
    (0x5597, 110, 109, 0), (0x504F, 111, 107, 0), (0x5A10, 110, 111, 1), (0x5522, 112, 109, 0),
    (0x59EB, 112, 111, 1), (0x5A1D, 113, 113, 0),
)  # fmt: skip


class _QMEncoder:
    """The JPEG arithmetic encoder (T.81 D.1), registers laid out as in section D.1.3.

    A statistics bin is a list [index into _QE_TABLE, MPS].
    """

    def __init__(self) -> None:
        self.c = 0
        self.a = 0x10000
        self.ct = 11
        self.out = bytearray()
        self.buffer = -1  # the last byte not yet written (a carry may still increment it)
        self.stacked_ff = 0  # 0xFF bytes that a carry would turn into 0x00
        self.zeros = 0  # pending 0x00 bytes, dropped if they end the stream

    def _emit(self, byte: int) -> None:
        self.out.append(byte)
        if byte == 0xFF:
            self.out.append(0x00)  # byte stuffing

    def _flush_zeros(self) -> None:
        self.out.extend(b"\x00" * self.zeros)
        self.zeros = 0

    def _carry(self) -> None:
        if self.buffer >= 0:
            self._flush_zeros()
            self._emit(self.buffer + 1)
        self.zeros += self.stacked_ff  # the carry turned the stacked 0xFF bytes into 0x00
        self.stacked_ff = 0

    def _no_carry(self) -> None:
        if self.buffer == 0:
            self.zeros += 1
        elif self.buffer > 0:
            self._flush_zeros()
            self._emit(self.buffer)
        if self.stacked_ff:
            self._flush_zeros()
            for _ in range(self.stacked_ff):
                self._emit(0xFF)
            self.stacked_ff = 0

    def encode(self, st: list[int], bit: int) -> None:
        index, mps = st
        qe, nlps, nmps, switch = _QE_TABLE[index]
        self.a -= qe
        if bit != mps:  # code the LPS (D.1.4, with the conditional exchange)
            if self.a >= qe:
                self.c += self.a
                self.a = qe
            if switch:
                st[1] = 1 - mps
            st[0] = nlps
        else:
            if self.a >= 0x8000:
                return
            if self.a < qe:
                self.c += self.a
                self.a = qe
            st[0] = nmps
        while True:  # renormalisation (D.1.6)
            self.a <<= 1
            self.c <<= 1
            self.ct -= 1
            if self.ct == 0:
                byte = self.c >> 19
                if byte > 0xFF:
                    self._carry()
                    self.buffer = byte & 0xFF
                elif byte == 0xFF:
                    self.stacked_ff += 1
                else:
                    self._no_carry()
                    self.buffer = byte
                self.c &= 0x7FFFF
                self.ct += 8
            if self.a >= 0x8000:
                break

    def finish(self) -> bytes:
        """Termination (D.1.8): the value in the interval with the most trailing zeros, then the bytes."""
        temp = (self.a - 1 + self.c) & 0xFFFF0000
        self.c = temp + 0x8000 if temp < self.c else temp
        self.c <<= self.ct
        if self.c & 0xF8000000:
            self._carry()
        else:
            self._no_carry()
        if self.c & 0x7FFF800:
            self._flush_zeros()
            self._emit((self.c >> 19) & 0xFF)
            if self.c & 0x7F800:
                self._emit((self.c >> 11) & 0xFF)
        return bytes(self.out)


def _encode_dc(enc: _QMEncoder, stats: list[list[int]], context: int, diff: int) -> int:
    """Code one DC difference (F.1.4.1, F.1.4.4.1 with the default L=0, U=1); return the next context."""
    s0 = stats[context]
    if diff == 0:
        enc.encode(s0, 0)
        return 0
    enc.encode(s0, 1)
    if diff > 0:
        enc.encode(stats[context + 1], 0)
        sp, next_context, v = context + 2, 4, diff
    else:
        enc.encode(stats[context + 1], 1)
        sp, next_context, v = context + 3, 8, -diff
    v -= 1
    m = 0
    st = sp
    if v:
        enc.encode(stats[st], 1)
        m = 1
        st = 20  # X1
        v2 = v >> 1
        while v2:
            enc.encode(stats[st], 1)
            m <<= 1
            st += 1
            v2 >>= 1
    enc.encode(stats[st], 0)
    # Conditioning (F.1.4.4.1.2) with the default bounds L = 0, U = 1: m < (1 << L) >> 1 = 0 never
    # happens (the zero category comes from zero differences only); m > (1 << U) >> 1 = 1 is large.
    if m > 1:
        next_context += 8
    st += 14  # the magnitude bits (M)
    m >>= 1
    while m:
        enc.encode(stats[st], 1 if m & v else 0)
        m >>= 1
    return next_context


def arithmetic_jpeg(ycc_blocks: np.ndarray) -> bytes:
    """A sequential arithmetic-coded JPEG (SOF9) whose 8x8 blocks are flat: ``ycc_blocks`` is (rows, cols, 3)
    of YCbCr levels, one per block, with every AC coefficient zero.

    The DC quantiser is 8, so a level L is the DC coefficient L - 128 and decodes to exactly L: the expected
    pixels are known without any IDCT. The three components are interleaved, 1x1 sampling, default
    conditioning (no DAC segment). AC coding is then only the end-of-block decision of each block.
    """
    rows, cols, _ = ycc_blocks.shape
    width, height = cols * 8, rows * 8
    dc_stats = [[[0, 0] for _ in range(64)] for _ in range(2)]
    ac_stats = [[[0, 0] for _ in range(256)] for _ in range(2)]
    enc = _QMEncoder()
    last = [0, 0, 0]
    context = [0, 0, 0]
    for r in range(rows):
        for c in range(cols):
            for comp in range(3):
                tbl = 0 if comp == 0 else 1
                dc = int(ycc_blocks[r, c, comp]) - 128
                context[comp] = _encode_dc(enc, dc_stats[tbl], context[comp], dc - last[comp])
                last[comp] = dc
                enc.encode(ac_stats[tbl][0], 1)  # end of block at k = 1: every AC coefficient is zero
    scan = enc.finish()
    dqt = b"\xff\xdb" + struct.pack(">H", 2 + 65) + b"\x00" + bytes([8] + [16] * 63)
    sof9 = b"\xff\xc9" + struct.pack(">HBHHB", 8 + 3 * 3, 8, height, width, 3)
    sof9 += bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    sos = b"\xff\xda" + struct.pack(">HB", 6 + 2 * 3, 3) + bytes([1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return SOI + dqt + sof9 + sos + scan + EOI


def ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """JFIF YCbCr -> RGB, as libjpeg does it (rounded, clamped)."""
    y, cb, cr = (ycc[..., i].astype(np.float64) for i in range(3))
    rgb = np.stack(
        [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)],
        axis=-1,
    )
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def arithmetic_case(rows: int = 6, cols: int = 8, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """An arithmetic JPEG of flat blocks with large and small DC jumps, and its exact RGB pixels."""
    rng = np.random.default_rng(seed)
    ycc = rng.integers(16, 240, size=(rows, cols, 3))
    ycc[0, :3] = 128  # zero differences
    ycc[1, :, 0] = (np.arange(cols) * 30 + 5) % 250  # runs of large positive differences
    ycc[2, 2] = (255, 0, 255)  # the extremes
    expected = np.repeat(np.repeat(ycc_to_rgb(ycc), 8, axis=0), 8, axis=1)
    return arithmetic_jpeg(ycc), expected


# -- PNG -------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", value)


def png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, data length) of every chunk."""
    assert data[:8] == PNG_SIGNATURE
    out = []
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return out


def png_bytes(array: np.ndarray, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", **params)
    return buf.getvalue()


def png_bad_crc(data: bytes, kind: bytes) -> bytes:
    """The first chunk of type kind with its CRC inverted."""
    out = bytearray(data)
    pos, _, length = next(c for c in png_chunks(data) if c[1] == kind)
    end = pos + 8 + length
    out[end : end + 4] = bytes(b ^ 0xFF for b in out[end : end + 4])
    return bytes(out)


def png_with_text(array: np.ndarray) -> bytes:
    """An RGB PNG with a tEXt chunk before its IDAT (to damage an ancillary chunk)."""
    data = png_bytes(array)
    pos = next(p for p, k, _ in png_chunks(data) if k == b"IDAT")
    return data[:pos] + png_chunk(b"tEXt", b"Comment\x00made by tests/malformed.py") + data[pos:]


def png_raw(
    width: int, height: int, idat: bytes, bit_depth: int = 8, color: int = 2, interlace: int = 0
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, interlace)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A decompression bomb: IHDR declares width x height RGB pixels, the IDAT holds a few zero rows."""
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 2, 9)
    return png_raw(width, height, rows)


def png_truncated_idat(width: int = 3000, height: int = 2000, keep: float = 0.3) -> bytes:
    """A valid header (below max_pixels) whose IDAT is a zlib stream cut at ``keep`` of its length.

    The chunk itself is well formed (length and CRC match the cut data), then IEND: only the image
    data is short.
    """
    rng = np.random.default_rng(1)
    row = rng.integers(0, 256, 3 * width, dtype=np.uint8).tobytes()
    full = zlib.compress((b"\x00" + row) * height, 1)
    return png_raw(width, height, full[: int(len(full) * keep)])


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def interlaced_png(array: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write interlaced PNGs)."""
    height, width, _ = array.shape
    raw = bytearray()
    for x0, y0, dx, dy in _ADAM7:
        sub = array[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue  # passes that hold no pixel are absent
        for row in sub:
            raw += b"\x00" + row.tobytes()
    return png_raw(width, height, zlib.compress(bytes(raw), 6), interlace=1)


def apng(frames: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, "PNG", save_all=True, append_images=images[1:], duration=100, loop=0)
    data = buf.getvalue()
    assert b"acTL" in data and b"fdAT" in data, "Pillow did not write an APNG"
    return data


def png_with_exif(array: np.ndarray, payload: bytes) -> bytes:
    """A PNG with an eXIf chunk (the TIFF block, without the "Exif\\0\\0" prefix) before its IDAT."""
    data = png_bytes(array)
    pos = next(p for p, k, _ in png_chunks(data) if k == b"IDAT")
    tiff = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    return data[:pos] + png_chunk(b"eXIf", tiff) + data[pos:]


# -- the catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One malformed file and the outcome datago must give it.

    ``reason`` None means delivered; then ``expected`` is the RGB image it must decode to (EXIF
    orientation applied) and ``tolerance`` the allowed mean absolute difference (JPEG decoders differ
    slightly). Otherwise the file must be skipped and counted once under ``reason``.
    """

    name: str
    data: bytes
    reason: str | None
    expected: np.ndarray | None = None
    tolerance: float = 0.0
    note: str = ""


def pillow_rgb(data: bytes) -> np.ndarray:
    """Pillow's decode, without EXIF orientation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt EXIF blocks made here
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


def pillow_oriented_rgb(data: bytes) -> np.ndarray:
    """Pillow's decode with EXIF orientation applied (what Pillow and libexif make of the EXIF)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt EXIF blocks made here
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _delivered(
    name: str, data: bytes, tolerance: float = 0.0, note: str = "", oriented: bool = False
) -> Case:
    expected = pillow_oriented_rgb(data) if oriented else pillow_rgb(data)
    return Case(name, data, None, expected, tolerance, note)


@cache
def cases() -> dict[str, Case]:
    """Every single-file class, by file name (built once per process)."""
    base = photo(200, 150, seed=21)
    jpg = jpeg_bytes(base, quality=90)
    out: list[Case] = []

    # Truncated JPEGs: libvips runs with fail_on=truncated, so a short file is refused however much is left.
    for pct in (10, 50, 90):
        out.append(Case(f"truncated_{pct}.jpg", truncated(jpg, pct / 100), "decode_error"))
    out.append(
        Case(
            "truncated_before_eoi.jpg",
            without_eoi(jpg),
            "decode_error",
            note="all entropy data present, only EOI missing: libjpeg warns of a premature end",
        )
    )
    out.append(Case("huffman_scrambled.jpg", scrambled_dht(jpg, seed=3), "decode_error"))
    out.append(Case("huffman_bogus_counts.jpg", bogus_dht_counts(jpg), "decode_error"))
    out.append(_delivered("progressive.jpg", jpeg_bytes(base, quality=90, progressive=True), tolerance=1.0))
    arith, arith_rgb = arithmetic_case()
    out.append(
        Case(
            "arithmetic.jpg",
            arith,
            None,
            arith_rgb,
            1.0,
            note="SOF9; libjpeg-turbo decodes arithmetic coding",
        )
    )
    out.append(Case("twelve_bit.jpg", twelve_bit(jpg), "decode_error", note="SOF1 with 12-bit samples"))

    png = png_bytes(base)
    out.append(Case("bad_crc_idat.png", png_bad_crc(png, b"IDAT"), "decode_error"))
    out.append(Case("bad_crc_ihdr.png", png_bad_crc(png, b"IHDR"), "decode_error"))
    text_png = png_with_text(base)
    out.append(
        Case(
            "bad_crc_text.png",
            png_bad_crc(text_png, b"tEXt"),
            None,
            base,
            0.0,
            note="a damaged ancillary chunk is dropped, as libpng does by default",
        )
    )
    out.append(Case("bomb_100000x100000.png", png_bomb(), "too_large"))
    out.append(Case("truncated_idat.png", png_truncated_idat(), "decode_error"))
    out.append(Case("interlaced.png", interlaced_png(base), None, base, 0.0))
    frames = [photo(120, 90, seed=30 + i) for i in range(3)]
    out.append(Case("animated.png", apng(frames), None, frames[0], 0.0, note="APNG: the first frame"))

    out.append(
        Case(
            "one_pixel.png",
            png_bytes(np.array([[[200, 30, 90]]], dtype=np.uint8)),
            None,
            np.array([[[200, 30, 90]]], dtype=np.uint8),
            0.0,
        )
    )
    tall = photo(1, 65000, seed=5)
    out.append(Case("tall_1x65000.png", png_bytes(tall), None, tall, 0.0))

    # EXIF that lies: an orientation outside 1..8, or an IFD that points out of the block.
    for value in (0, 9):
        payload = exif_payload([orientation_entry(value)])
        out.append(_delivered(f"exif_orientation_{value}.jpg", with_app1(jpg, payload), tolerance=1.0))
    out.append(
        _delivered(
            "exif_ifd_out_of_bounds.jpg",
            with_app1(jpg, exif_payload([], ifd_offset=0x7FFF0000)),
            tolerance=1.0,
        )
    )
    # The IFD claims 400 entries and holds one, intact: orientation 6. Pillow and libexif both honour
    # the entries they can read, so the image is delivered rotated.
    out.append(
        _delivered(
            "exif_entries_past_end.jpg",
            with_app1(jpg, exif_payload([orientation_entry(6)], count=400)),
            tolerance=1.0,
            note="claims 400 IFD entries, holds 1 intact orientation 6: rotated",
            oriented=True,
        )
    )
    out.append(
        _delivered(
            "exif_value_out_of_bounds.jpg",
            with_app1(jpg, exif_payload([(0x0112, 3, 50, struct.pack("<I", 0x10000))])),
            tolerance=1.0,
            note="orientation with 50 values stored past the end of the block",
        )
    )
    # Cut inside the orientation entry (6 + 8 header bytes, 2 count bytes, 6 of the entry's 12 bytes).
    out.append(
        _delivered(
            "exif_truncated.jpg",
            with_app1(jpg, exif_payload([orientation_entry(6)])[:22]),
            tolerance=1.0,
            note="orientation 6 entry cut in the middle: unrotated",
        )
    )
    out.append(
        Case(
            "exif_orientation_9.png",
            png_with_exif(base, exif_payload([orientation_entry(9)])),
            None,
            base,
            0.0,
        )
    )

    out.append(Case("png_named.jpg", png, None, base, 0.0, note="the signature decides, not the name"))
    out.append(Case("text_named.jpg", b"hello, this is a text file and not a JPEG\n" * 10, "decode_error"))
    out.append(Case("zero_bytes.jpg", b"", "empty"))
    out.extend(gif_bmp_cases(base))
    return {c.name: c for c in out}


def _pil_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def gif_bmp_cases(base: np.ndarray) -> list[Case]:
    """GIF and BMP (decoded by Go's decoders): good files against Pillow, broken ones skipped."""
    pal = Image.fromarray(base).quantize(64)
    gif = _pil_bytes(pal, "GIF")
    second = Image.fromarray(base[::-1].copy()).quantize(64)
    animated = _pil_bytes(pal, "GIF", save_all=True, append_images=[second])
    bmp24 = _pil_bytes(Image.fromarray(base), "BMP")
    bmp8 = _pil_bytes(pal, "BMP")
    huge = bytearray(bmp24[:54])
    huge[18:26] = struct.pack("<ii", 60000, 60000)  # claims 3.6 GP in 54 bytes
    rle = bytearray(bmp8)
    rle[30:34] = struct.pack("<I", 1)  # BI_RLE8: a compression x/image/bmp does not decode
    return [
        _delivered("palette.gif", gif),
        _delivered("animated.gif", animated, note="the first frame"),
        _delivered("rgb24.bmp", bmp24),
        _delivered("palette8.bmp", bmp8),
        Case("truncated.gif", truncated(gif, 0.5), "decode_error"),
        Case("truncated.bmp", truncated(bmp24, 0.5), "decode_error"),
        Case("claims_60000x60000.bmp", bytes(huge), "too_large", note="max_pixels, before any allocation"),
        Case("rle8.bmp", bytes(rle), "decode_error"),
        Case("gif_header_only.gif", gif[:13], "decode_error"),
    ]


def write(root: Path, case: Case) -> Path:
    path = root / case.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.data)
    return path
