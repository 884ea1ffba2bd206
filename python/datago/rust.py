"""Drop-in for Photoroom's Rust loader (``datago`` 2026.10.1 on the package index): its Python API.

    from datago import DatagoClient, initialize_logging
    client = DatagoClient(json.dumps(config))   # the Rust loader's config, as it is
    sample = client.get_sample()                # image, masks, ... as ImagePayload; None at the end

:class:`DatagoClient` runs a :class:`datago.Client` underneath. It gives a Rust config the Rust
loader's defaults, logs (and otherwise ignores) keys it does not know, and delivers samples with the
Rust loader's field types. README "Coming from the Rust loader" lists what still differs, and why.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from . import _config, _lib
from .client import Client
from .errors import ConfigError
from .sample import Sample, _pil

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["DatagoClient", "DatagoSample", "ImagePayload", "LatentPayload", "Payload", "initialize_logging"]

logger = logging.getLogger("datago")

# Environment variables giving the log level of initialize_logging(): datago's own, then the one
# the Rust loader reads (env_logger's).
LOG_LEVEL_ENV = ("DATAGO_LOG", "RUST_LOG")
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_logging_lock = threading.Lock()
_handler: logging.Handler | None = None

# What a Rust config leaves out takes the Rust loader's value (image_config only; the other keys
# have the same defaults in both): native modes, and with image_to_rgb8 the grey it composites
# alpha onto (RUST_RGB8_DEFAULTS). A config without image_config gets one, since the Rust loader
# delivers native modes then too.
RUST_IMAGE_DEFAULTS: dict[str, Any] = {"encode_format": "png", "jpeg_quality": 92, "image_to_rgb8": False}
RUST_RGB8_DEFAULTS: dict[str, Any] = {"alpha_background": "gray"}
RUST_DEFAULT_SOURCE_TYPE = "db"  # the Rust loader's dataroom example has no source_type

# Rust keys that datago does not implement yet and that change WHICH samples (or whether any)
# arrive: ignoring them would silently deliver other data, so they raise even here.
UNSUPPORTED: dict[str, tuple[str, ...]] = {}
_CANONICAL_SOURCE = {"file": "filesystem", "filesystem": "filesystem", "db": "db", "wds": "webdataset"}


def initialize_logging(log_level: str | None = None) -> bool:
    """Configure the ``datago`` logger: a stream handler on stderr at ``log_level`` ("trace",
    "debug", "info", "warn", "error", "off"; default: ``$DATAGO_LOG``, then ``$RUST_LOG``, then
    "warn"). Returns False (and changes nothing) when it was already configured."""
    global _handler
    with _logging_lock:
        if _handler is not None:
            return False
        name = log_level
        if name is None:
            name = next((os.environ[v] for v in LOG_LEVEL_ENV if os.environ.get(v)), "warn")
        # RUST_LOG may be "info" or "datago=info,other=warn": the datago part, else the default part.
        parts = [p.strip() for p in str(name).split(",") if p.strip()]
        chosen = next((p.split("=", 1)[1] for p in parts if p.startswith("datago=")), None)
        chosen = chosen or next((p for p in parts if "=" not in p), "warn")
        level = _LEVELS.get(chosen.lower())
        if level is None:
            raise ValueError(f"log_level: unknown level {chosen!r} (valid: {', '.join(_LEVELS)})")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        _handler = handler
        return True


# -- payloads ------------------------------------------------------------------------------------


class Payload:
    """What ``ImagePayload.get_payload()`` returns: the buffer and its geometry."""

    __slots__ = (
        "bit_depth",
        "channels",
        "data",
        "height",
        "is_encoded",
        "original_height",
        "original_width",
        "width",
    )

    def __init__(
        self,
        data: bytes,
        width: int,
        height: int,
        original: tuple[int, int],
        channels: int,
        bit_depth: int = 8,
    ) -> None:
        self.data = data
        self.width = width
        self.height = height
        self.original_width, self.original_height = original
        self.channels = channels  # -1 when encoded
        # 8 or 16 (16-bit samples in data, in host byte order); of the encoded pixels when encoded.
        self.bit_depth = bit_depth
        self.is_encoded = channels < 0

    def __repr__(self) -> str:
        kind = "encoded" if self.is_encoded else f"{self.channels} channels"
        return f"<datago.Payload {self.width}x{self.height} {kind}, {len(self.data)} bytes>"


class ImagePayload:
    """An image of a :class:`DatagoSample`: call it (or ``to_pil_image()``) for the PIL image, read
    PIL's attributes on it directly (``.width``, ``.mode``, ``.size`` ...), ``to_numpy_array()`` for
    a zero-copy array over the library's memory, ``get_payload()`` for the raw buffer."""

    __slots__ = ("_buf", "_owner", "_pil", "_sample", "_what", "original_size")

    def __init__(self, sample: Sample, buf: Any, original_size: tuple[int, int], what: str) -> None:
        self._sample = sample  # keeps the library memory alive
        self._owner = sample._owner
        self._buf = buf
        self._what = what
        self._pil: PILImage.Image | None = None
        self.original_size = original_size

    @property
    def is_encoded(self) -> bool:
        return int(self._buf.channels) <= 0

    def to_pil_image(self) -> PILImage.Image:
        """The PIL image (a copy of the pixels, or the decoded bytes when encoded); cached."""
        if self._pil is None:
            width, height, channels, _ = _lib.check_buffer(self._buf, self._what)
            if channels <= 0:
                image = PILImage.open(io.BytesIO(_lib.buffer_bytes(self._buf)))
                image.load()
            else:
                image = _pil(self._buf, self._what)
            self._pil = image
        return self._pil

    def __call__(self) -> PILImage.Image:
        return self.to_pil_image()

    def to_numpy_array(self) -> npt.NDArray[Any]:
        """Height x width x channels pixels viewing the library's memory (no copy), uint8 or, for
        16-bit images, uint16; an encoded image is decoded (a copy)."""
        width, height, channels, _ = _lib.check_buffer(self._buf, self._what)
        if channels <= 0:
            return np.asarray(self.to_pil_image())
        return _lib.buffer_view(self._owner, self._buf, (height, width, channels))

    def get_payload(self) -> Payload:
        width, height, channels, _ = _lib.check_buffer(self._buf, self._what)
        return Payload(
            _lib.buffer_bytes(self._buf),
            width,
            height,
            self.original_size,
            channels if channels > 0 else -1,
            int(self._buf.bit_depth) or 8,
        )

    def __getattr__(self, name: str) -> Any:
        # Only called for names the payload itself lacks: the PIL image's attributes and methods.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.to_pil_image(), name)

    def __repr__(self) -> str:
        buf = self._buf
        shape = (
            f"{buf.len} encoded bytes" if buf.channels <= 0 else f"{buf.width}x{buf.height}x{buf.channels}"
        )
        return f"<datago.ImagePayload {self._what} {shape}>"


class LatentPayload:
    """A latent (or other raw member) of a :class:`DatagoSample`: ``data`` (bytes) and ``len``."""

    __slots__ = ("data", "len")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.len = len(data)

    def __repr__(self) -> str:
        return f"<datago.LatentPayload {self.len} bytes>"


# -- samples -------------------------------------------------------------------------------------


class DatagoSample:
    """A sample with the Rust loader's field types: ``id`` and ``source`` strings, ``attributes`` a
    JSON string, ``duplicate_state`` an int (-1 when unknown), ``coca_embedding`` a list of floats,
    ``tags`` a list, ``image`` an :class:`ImagePayload` (None without a main image), ``masks`` and
    ``additional_images`` dicts of them, ``latents`` a dict of :class:`LatentPayload`. ``sample`` is
    the underlying :class:`datago.Sample`."""

    __slots__ = ("id", "sample")

    def __init__(self, sample: Sample) -> None:
        self.sample = sample
        self.id: str = sample.id

    @property
    def source(self) -> str:
        return self.sample.source or ""

    @property
    def attributes(self) -> str:
        return json.dumps(self.sample.attributes)

    @property
    def duplicate_state(self) -> int:
        value = self.sample.duplicate_state
        return int(value) if isinstance(value, int | float) else -1

    @property
    def coca_embedding(self) -> list[float]:
        value = self.sample.metadata.get("embedding")
        return [float(x) for x in value] if isinstance(value, list) else []

    @property
    def tags(self) -> list[str]:
        return list(self.sample.tags)

    @property
    def image(self) -> ImagePayload | None:
        s = self.sample
        if not s.has_image:
            return None
        return ImagePayload(s, s._owner.image, s.original_size, f"sample {s.id!r}")

    def _payloads(self, kind: int, what: str) -> dict[str, ImagePayload]:
        s = self.sample
        sizes = s.metadata.get("item_original_sizes") or {}
        out = {}
        for name, buf in s._items(kind):
            w, h = sizes.get(name) or (int(buf.width), int(buf.height))
            out[name] = ImagePayload(s, buf, (int(w), int(h)), f"{what} {name!r} of {s.id!r}")
        return out

    @property
    def masks(self) -> dict[str, ImagePayload]:
        return self._payloads(_lib.DATAGO_ITEM_MASK, "mask")

    @property
    def additional_images(self) -> dict[str, ImagePayload]:
        return self._payloads(_lib.DATAGO_ITEM_ADDITIONAL_IMAGE, "image")

    @property
    def latents(self) -> dict[str, LatentPayload]:
        return {name: LatentPayload(data) for name, data in self.sample.latents.items()}

    def to_dict(self) -> dict[str, Any]:
        """The dict of ``DatagoClient.get_sample_auto_convert()``: images as PIL, attributes as a
        dict, latents as ``{"data": bytes, "len": int}``."""
        image = self.image
        return {
            "id": self.id,
            "source": self.source,
            "duplicate_state": self.duplicate_state,
            "attributes": dict(self.sample.attributes),
            "tags": self.tags,
            "coca_embedding": self.coca_embedding,
            "latents": {k: {"data": v.data, "len": v.len} for k, v in self.latents.items()},
            "image": None if image is None else image.to_pil_image(),
            "masks": {k: v.to_pil_image() for k, v in self.masks.items()},
            "additional_images": {k: v.to_pil_image() for k, v in self.additional_images.items()},
        }

    def __repr__(self) -> str:
        return f"<datago.DatagoSample id={self.id!r}>"


# -- the client ----------------------------------------------------------------------------------


def _apply_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the Rust loader's defaults for what it leaves out."""
    config.setdefault("source_type", RUST_DEFAULT_SOURCE_TYPE)
    kind = _CANONICAL_SOURCE.get(str(config["source_type"]).lower(), str(config["source_type"]).lower())
    source = config.get("source_config")
    if isinstance(source, dict):
        for key in UNSUPPORTED.get(kind, ()):
            if key in source:
                raise ConfigError(
                    f"source_config.{key}: not supported by datago yet "
                    "(ignoring it would deliver other samples)"
                )
    image = config.setdefault("image_config", {})
    if isinstance(image, dict):
        for key, value in RUST_IMAGE_DEFAULTS.items():
            image.setdefault(key, value)
        if image.get("image_to_rgb8") is True:
            for key, value in RUST_RGB8_DEFAULTS.items():
                image.setdefault(key, value)
    return config


def _drop(config: dict[str, Any], path: str) -> bool:
    """Remove the key at ``path`` ("a.b.c") from ``config``; False when there is none."""
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


def _client(config: dict[str, Any]) -> tuple[Client, dict[str, Any]]:
    """A Client for ``config``, after dropping (with a warning) each key the library does not know."""
    config = copy.deepcopy(config)
    for _ in range(1000):
        try:
            return Client(config), config
        except ConfigError as exc:
            message = str(exc)
            if exc.key is None or "unknown key" not in message or not _drop(config, exc.key):
                raise
            logger.warning("%s; ignored, as the Rust loader ignores it", message)
    raise ConfigError("config: too many unknown keys")


class DatagoClient:
    """The Rust loader's client, on datago: ``DatagoClient(json_text)`` (a dict works too).

    ``start()`` starts a pass over the source (and a new pass once the previous one ended or was
    stopped); ``get_sample()`` starts the first pass when needed and returns the next
    :class:`DatagoSample`, or None at the end of the pass or after ``stop()``.
    ``get_sample_auto_convert()`` returns the same sample as a dict of Python types.

    Configuration mistakes raise :class:`~datago.ConfigError` when the client is created; a key
    the library does not know is logged as a warning naming the closest valid key, then ignored.
    """

    def __init__(self, config: str | Mapping[str, Any]) -> None:
        parsed = _config.to_dict(config)
        self._config = _apply_defaults(parsed)
        self._lock = threading.Lock()
        # The first pass's client is made now, so that a mistake raises here.
        self._client: Client | None
        self._client, self._config = _client(self._config)
        self._ended = False  # the current pass ended, or was stopped

    def __repr__(self) -> str:
        return f"<datago.DatagoClient {self._client!r}>"

    @property
    def client(self) -> Client | None:
        """The :class:`datago.Client` of the current pass (its ``stats()``, ``skipped()``)."""
        return self._client

    def start(self) -> None:
        """Start a pass: no-op while one is running; a new one after the end or ``stop()``."""
        with self._lock:
            if self._client is not None and not self._ended:
                self._client.start()
                return
            old, self._client = self._client, None
            if old is not None:
                old.close()
            self._client = Client(self._config)
            self._ended = False
            self._client.start()

    def stop(self) -> None:
        """Stop the current pass and release its memory; later ``get_sample()`` calls return None
        until ``start()``. Idempotent, and safe from ``__del__`` and during garbage collection."""
        client = self._client
        self._ended = True
        if client is not None:
            client.close()

    def get_sample(self) -> DatagoSample | None:
        """The next sample of the pass (starting the first pass when needed), None at its end."""
        if self._ended:
            return None
        client = self._client
        if client is None:
            self.start()
            client = self._client
        assert client is not None
        sample = client.get_sample()
        if sample is None:
            self._ended = True
            return None
        return DatagoSample(sample)

    def get_sample_auto_convert(self) -> dict[str, Any] | None:
        """The next sample as a dict (``DatagoSample.to_dict``), None at the end of the pass."""
        sample = self.get_sample()
        return None if sample is None else sample.to_dict()

    def __iter__(self) -> DatagoClient:
        return self

    def __next__(self) -> DatagoSample:
        sample = self.get_sample()
        if sample is None:
            raise StopIteration
        return sample
