"""One loaded sample: a Python view of a ``datago_sample`` owned by the library."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from . import _lib
from .errors import DatagoError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

__all__ = ["Sample", "pil_mode"]

_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}

# 16-bit grey is PIL's "I;16" (little-endian) or "I;16B", in the host's byte order as the library
# delivers it. PIL has no 16-bit mode with more channels: those images become their 8-bit
# reduction (the high byte, as Pillow itself opens a 16-bit PNG).
_PIL_MODE_16 = "I;16" if sys.byteorder == "little" else "I;16B"


def pil_mode(channels: int, bit_depth: int) -> str:
    """The PIL mode of a delivered image of ``channels`` and ``bit_depth``."""
    if bit_depth == 16 and channels == 1:
        return _PIL_MODE_16
    mode = _PIL_MODES.get(channels)
    if mode is None:
        raise DatagoError(f"unsupported number of channels {channels}")
    return mode


def _view(owner: Any, buf: Any, what: str | Callable[[], str], squeeze: bool = False) -> npt.NDArray[Any]:
    """A NumPy array viewing ``buf``'s pixels without copying; it keeps ``owner`` (the sample) alive.
    ``what`` names the buffer in errors (a callable, called only then)."""
    width, height, channels, _ = _lib.check_buffer(buf, what)
    if channels <= 0:
        what = what if isinstance(what, str) else what()
        raise DatagoError(f"{what} holds encoded bytes, not pixels (pre_encode_images is set)")
    shape: tuple[int, ...] = (height, width) if squeeze and channels == 1 else (height, width, channels)
    return _lib.buffer_view(owner, buf, shape)


def _pil_or_bytes(buf: Any, what: str) -> PILImage.Image | bytes:
    """``_pil``, or the encoded bytes (a copy) with ``pre_encode_images``."""
    if int(buf.channels) <= 0:
        return _lib.buffer_bytes(buf)
    return _pil(buf, what)


def _pil(buf: Any, what: str) -> PILImage.Image:
    """A PIL image holding a COPY of ``buf``'s pixels (it never references library memory), in
    the mode of ``pil_mode``."""
    width, height, channels, _ = _lib.check_buffer(buf, what)
    depth = int(buf.bit_depth)
    try:
        mode = pil_mode(channels, depth)
    except DatagoError as exc:
        raise DatagoError(f"{what}: {exc}") from None
    if depth == 16 and channels > 1:
        samples = np.frombuffer(_lib.buffer_memory(buf), dtype=np.uint16).reshape(height, width, channels)
        return PILImage.fromarray((samples >> 8).astype(np.uint8), mode)
    return PILImage.frombytes(mode, (width, height), _lib.buffer_memory(buf))


def metadata_of(meta_json: Any) -> dict[str, Any]:
    """The parsed ``meta_json`` of a sample, ``{}`` when NULL; a non-object value as ``{"value": ...}``."""
    text = _lib.string(meta_json, "replace")
    parsed: Any = json.loads(text) if text else {}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


class Sample:
    """A sample delivered by a :class:`~datago.Client`.

    The pixels live in library memory, released when the Sample and every array returned by
    :attr:`array` or the ``*_arrays()`` methods are gone. PIL images and ``bytes`` are copies.
    """

    __slots__ = (
        "__weakref__",
        "_additional_images",
        "_array",
        "_image",
        "_latents",
        "_masks",
        "_metadata",
        "_id",
        "_owner",
        "_source",
    )

    def __init__(self, owner: Any, source: str | None = None) -> None:
        """Wrap ``owner``, a ``datago_sample *`` that frees itself when dropped (``_lib.client_next``);
        ``source`` is the :attr:`source` of a sample whose metadata names none ("filesystem").

        Samples are created by :class:`~datago.Client`; there is no reason to call this directly.
        """
        self._owner = owner
        self._source = source
        self._id: str | None = None  # decoded on first use: a consumer of arrays may never ask
        self._image: PILImage.Image | bytes | None = None
        self._array: npt.NDArray[Any] | None = None
        self._metadata: dict[str, Any] | None = None
        self._masks: dict[str, PILImage.Image | bytes] | None = None
        self._additional_images: dict[str, PILImage.Image | bytes] | None = None
        self._latents: dict[str, bytes] | None = None

    @property
    def id(self) -> str:
        """The sample's id: the file's path, the object's URL, the shard's sample key..."""
        sid = self._id
        if sid is None:
            sid = self._id = _lib.string(self._owner.id)
        return sid

    @property
    def original_size(self) -> tuple[int, int]:
        """(width, height) of the image before processing, after EXIF orientation."""
        owner = self._owner
        return (owner.original_width, owner.original_height)

    def _name(self) -> str:
        return f"sample {self.id!r}"

    def __repr__(self) -> str:
        buf = self._owner.image
        shape = f"{buf.width}x{buf.height}" if buf.channels > 0 else f"{buf.len} encoded bytes"
        return f"<datago.Sample id={self.id!r} {shape} original_size={self.original_size}>"

    # -- main image -------------------------------------------------------------------------------

    @property
    def has_image(self) -> bool:
        """False for a sample without a main image (dataroom source with ``require_images: false``)."""
        return bool(self._owner.image.len > 0)

    @property
    def pre_encoded(self) -> bool:
        """Whether the image is delivered as encoded bytes (``image_config.pre_encode_images``)."""
        return self.has_image and bool(self._owner.image.channels <= 0)

    def _require_image(self) -> None:
        if self._owner.image.len == 0:
            raise DatagoError(f"sample {self.id!r} has no main image (require_images is false)")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the delivered image (after processing)."""
        buf = self._owner.image
        return (int(buf.width), int(buf.height))

    @property
    def mode(self) -> str:
        """The PIL mode of the delivered pixels: "RGB" (with ``image_to_rgb8``), "RGBA" (alpha_background
        "keep"), and with ``image_to_rgb8: false`` the decoded mode: "L", "LA", "RGB", "RGBA", or for
        16-bit images "I;16" (grey; "I;16B" on a big-endian host), "LA;16", "RGB;16", "RGBA;16" (whose
        :attr:`image` is their 8-bit reduction, PIL having no such modes). "" when pre-encoded."""
        self._require_image()
        buf = self._owner.image
        channels, depth = int(buf.channels), int(buf.bit_depth)
        if channels <= 0:
            return ""
        mode = pil_mode(channels, depth)
        return f"{mode};16" if depth == 16 and channels > 1 else mode

    @property
    def bit_depth(self) -> int:
        """Bits per sample of :attr:`array`: 8 (uint8), or 16 (uint16) for 16-bit images with
        ``image_to_rgb8: false``; with ``pre_encode_images``, the depth of the encoded pixels."""
        self._require_image()
        return int(self._owner.image.bit_depth)

    @property
    def image(self) -> PILImage.Image | bytes:
        """The image: a PIL image (created on first access, then cached) of mode "RGB", or with
        ``image_to_rgb8: false`` the decoded mode (see :attr:`mode`; 16-bit images other than grey
        become their 8-bit reduction), or the encoded ``bytes`` when the configuration has
        ``pre_encode_images``."""
        image = self._image
        if image is None:
            self._require_image()
            buf = self._owner.image
            image = _lib.buffer_bytes(buf) if buf.channels <= 0 else _pil(buf, f"sample {self.id!r}")
            self._image = image
        return image

    @property
    def array(self) -> npt.NDArray[Any]:
        """The image as a height x width x channels array viewing library memory (no copy): uint8,
        or uint16 for 16-bit images with ``image_to_rgb8: false``; height x width for one channel
        (grey, as NumPy shapes a PIL "L" image).

        Raises DatagoError when the image is pre-encoded.
        """
        array = self._array
        if array is None:
            self._require_image()
            array = _view(self._owner, self._owner.image, self._name, squeeze=True)
            self._array = array
        return array

    # Compatibility with the original datago sample.
    @property
    def ID(self) -> str:  # noqa: N802
        """Alias of :attr:`id`."""
        return self.id

    @property
    def Image(self) -> PILImage.Image | bytes:  # noqa: N802
        """Alias of :attr:`image`."""
        return self.image

    # -- items ------------------------------------------------------------------------------------

    def _items(self, kind: int) -> list[tuple[str, Any]]:
        owner = self._owner
        out = []
        for i in range(int(owner.n_items)):
            item = owner.items[i]
            if item.kind == kind:
                out.append((_lib.string(item.name), item.buf))
        return out

    @property
    def masks(self) -> dict[str, PILImage.Image | bytes]:
        """Masks by name, as PIL images of mode "L" (copies); PNG bytes with ``pre_encode_images``."""
        if self._masks is None:
            self._masks = {
                name: _pil_or_bytes(buf, f"mask {name!r} of {self.id!r}")
                for name, buf in self._items(_lib.DATAGO_ITEM_MASK)
            }
        return self._masks

    @property
    def additional_images(self) -> dict[str, PILImage.Image | bytes]:
        """Additional images by name, as PIL images (copies); PNG bytes with ``pre_encode_images``."""
        if self._additional_images is None:
            self._additional_images = {
                name: _pil_or_bytes(buf, f"image {name!r} of {self.id!r}")
                for name, buf in self._items(_lib.DATAGO_ITEM_ADDITIONAL_IMAGE)
            }
        return self._additional_images

    @property
    def latents(self) -> dict[str, bytes]:
        """Raw byte items (latents, extra members, ...) by name."""
        if self._latents is None:
            self._latents = {
                name: _lib.buffer_bytes(buf) for name, buf in self._items(_lib.DATAGO_ITEM_BYTES)
            }
        return self._latents

    def mask_arrays(self) -> dict[str, npt.NDArray[np.uint8]]:
        """Masks by name as height x width uint8 arrays viewing library memory (no copy)."""
        return {
            name: _view(self._owner, buf, f"mask {name!r} of {self.id!r}", squeeze=True)
            for name, buf in self._items(_lib.DATAGO_ITEM_MASK)
        }

    def additional_image_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Additional images by name as height x width x channels arrays (no copy), of the main
        image's sample type."""
        return {
            name: _view(self._owner, buf, f"image {name!r} of {self.id!r}")
            for name, buf in self._items(_lib.DATAGO_ITEM_ADDITIONAL_IMAGE)
        }

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """Source-specific metadata (the sample's ``meta_json``), ``{}`` when there is none."""
        if self._metadata is None:
            self._metadata = metadata_of(self._owner.meta_json)
        return self._metadata

    @property
    def source(self) -> str | None:
        """The dataroom source of the image; "filesystem" for files (as the Rust loader says)."""
        value = self.metadata.get("source")
        return value if isinstance(value, str) else self._source

    @property
    def attributes(self) -> dict[str, Any]:
        return self.metadata.get("attributes") or {}

    @property
    def tags(self) -> list[str]:
        return self.metadata.get("tags") or []

    @property
    def duplicate_state(self) -> Any:
        return self.metadata.get("duplicate_state")

    @property
    def embedding(self) -> npt.NDArray[np.float32] | None:
        """The image's embedding (dataroom ``coca_embedding``) as a float32 vector, None when absent."""
        value = self.metadata.get("embedding")
        if value is None:
            return None
        return np.asarray(value, dtype=np.float32)

    @property
    def caption(self) -> str | None:
        """The caption (WebDataset ``.txt`` member), None when the source has none."""
        value = self.metadata.get("caption")
        return value if isinstance(value, str) else None

    @property
    def label(self) -> int | None:
        """The class label (WebDataset ``.cls`` member), None when the source has none."""
        value = self.metadata.get("label")
        return value if isinstance(value, int) else None

    @property
    def extras(self) -> dict[str, bytes]:
        """Members delivered as raw bytes by name (same items as :attr:`latents`)."""
        return self.latents
