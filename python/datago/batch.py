"""A batch of samples sharing one aspect-ratio bucket: a Python view of a ``datago_batch``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _lib
from .errors import DatagoError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Batch"]


class Batch:
    """``len(batch)`` samples of one bucket, delivered by a client configured with ``batch_size``.

    The images are one contiguous buffer in library memory, seen by :attr:`array` without a copy; it
    is released when the Batch and every array taken from it are gone.
    """

    __slots__ = ("__weakref__", "_array", "_owner", "ids", "original_sizes")

    ids: list[str]
    original_sizes: list[tuple[int, int]]

    def __init__(self, owner: Any) -> None:
        """Wrap ``owner``, a ``datago_batch *`` already wrapped with ``ffi.gc(ptr, datago_batch_free)``."""
        self._owner = owner
        n = int(owner.size)
        ffi = _lib.ffi
        self.ids = [ffi.string(owner.ids[i]).decode("utf-8", "surrogateescape") for i in range(n)]
        sizes = owner.original_sizes
        self.original_sizes = [(int(sizes[2 * i]), int(sizes[2 * i + 1])) for i in range(n)]
        self._array: npt.NDArray[np.uint8] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        buf = self._owner.images
        return f"<datago.Batch of {len(self)} {buf.width}x{buf.height}x{buf.channels}>"

    @property
    def array(self) -> npt.NDArray[np.uint8]:
        """The images as one ``len(batch) x height x width x channels`` uint8 array (no copy)."""
        if self._array is None:
            buf = self._owner.images
            n, width, height, channels = len(self), int(buf.width), int(buf.height), int(buf.channels)
            length = int(buf.len)
            if channels <= 0 or length != n * width * height * channels or buf.data == _lib.ffi.NULL:
                shape = f"{n} x {width}x{height}x{channels}"
                raise DatagoError(f"inconsistent batch buffer from libdatago ({shape}, {length} bytes)")
            # The array's base holds a pointer whose destructor closure references the batch, so the
            # batch (and its buffer) lives as long as any array or view of it.
            keep = _lib.ffi.gc(_lib.ffi.cast("uint8_t *", buf.data), lambda _p, _owner=self._owner: None)
            array = np.frombuffer(_lib.ffi.buffer(keep, length), dtype=np.uint8)
            self._array = array.reshape((n, height, width, channels))
        return self._array

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """Each sample's source-specific metadata, ``{}`` when it has none."""
        out: list[dict[str, Any]] = []
        for i in range(len(self)):
            meta = self._owner.meta_json[i]
            parsed: Any = json.loads(_lib.ffi.string(meta).decode("utf-8", "replace")) if meta else {}
            out.append(parsed if isinstance(parsed, dict) else {"value": parsed})
        return out
