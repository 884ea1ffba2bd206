"""datago: an image data loader for ML training (Go + libvips core, loaded through cffi).

Importing datago does not load the native library (nor start its Go runtime): that happens on first
use (creating a Client, calling aspect_ratio_buckets or library_version).
"""

from __future__ import annotations

from . import _lib
from .batch import Batch
from .client import Client
from .errors import ConfigError, DatagoError, LibraryLoadError
from .mapdataset import MapDataset
from .rust import DatagoClient, DatagoSample, ImagePayload, initialize_logging
from .sample import Sample
from .skips import SkipReport

__version__ = "0.1.0"

SourceTypeFileSystem = "filesystem"
SourceTypeDB = "db"

__all__ = [
    "Batch",
    "Client",
    "ConfigError",
    "DatagoClient",
    "DatagoSample",
    "DatagoError",
    "ImagePayload",
    "LibraryLoadError",
    "MapDataset",
    "Sample",
    "SkipReport",
    "SourceTypeDB",
    "SourceTypeFileSystem",
    "__version__",
    "aspect_ratio_buckets",
    "initialize_logging",
    "library_version",
]


def aspect_ratio_buckets(
    default_image_size: int,
    downsampling_ratio: int,
    min_aspect_ratio: float,
    max_aspect_ratio: float,
) -> list[tuple[int, int]]:
    """The (width, height) buckets images are resized to by ``crop_and_resize`` with these settings.

    Raises ConfigError for invalid settings.
    """
    return _lib.buckets(
        int(default_image_size), int(downsampling_ratio), float(min_aspect_ratio), float(max_aspect_ratio)
    )


def library_version() -> str:
    """The version string of the loaded libdatago.so (loads the library)."""
    return _lib.library_version()
