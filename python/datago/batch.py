"""A batch of samples sharing one aspect-ratio bucket: a Python view of a ``datago_batch``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _lib
from .errors import DatagoError
from .sample import metadata_of

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
        """Wrap ``owner``, a ``datago_batch *`` freeing itself when dropped (``_lib.client_next_batch``)."""
        self._owner = owner
        n = int(owner.size)
        self.ids = [_lib.string(owner.ids[i]) for i in range(n)]
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
            n = len(self)
            width, height, channels, length = _lib.check_buffer(buf, "batch", count=n)
            if channels <= 0:
                raise DatagoError(
                    f"batch: no pixel buffer from libdatago ({n} x {width}x{height}x0, {length} bytes)"
                )
            self._array = _lib.buffer_view(self._owner, buf, (n, height, width, channels))
        return self._array

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """Each sample's source-specific metadata, ``{}`` when it has none."""
        return [metadata_of(self._owner.meta_json[i]) for i in range(len(self))]
