"""Exceptions raised by datago."""

from __future__ import annotations

__all__ = ["ConfigError", "DatagoError", "LibraryLoadError"]


class DatagoError(Exception):
    """Base class of every error raised by datago.

    ``code`` names the library's status when the error comes from a call into it: ``"CONFIG"``,
    ``"RUNTIME"`` (the pipeline failed, e.g. its source broke), ``"STATE"`` (misuse: unknown or freed
    handle...) or ``"INTERNAL"`` (a bug in datago; the library then refuses every later call); None
    for errors found on the Python side.
    """

    code: str | None

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(DatagoError, ValueError):
    """An invalid configuration.

    ``key`` is the path of the offending key (for example ``"source_config.rank"``), taken from the
    message, which starts with that path followed by ``": "``; ``None`` when the message names none.
    """

    key: str | None

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message, "CONFIG")
        if key is None:
            head, sep, _ = message.partition(": ")
            key = head if sep and head else None
        self.key = key


class LibraryLoadError(DatagoError, ImportError):
    """The native library ``libdatago.so`` (or one of its runtime dependencies) could not be loaded."""
