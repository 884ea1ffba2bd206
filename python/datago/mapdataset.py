"""Map-style access to a filesystem source: ``len``, indexing, and whole lists processed in Go."""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from . import _lib
from .client import _config_json, _parse_json
from .errors import DatagoError
from .sample import Sample
from .skips import SkipLog, SkipReport

__all__ = ["MapDataset"]


def _free_catalog(handle: int, pid: int) -> None:
    if os.getpid() == pid and _lib.loaded():
        _lib.get_lib().datago_catalog_free(handle)


class MapDataset:
    """The images under ``source_config.root_path``, sorted by path, processed on demand.

    ``config`` is a client configuration with the filesystem source (rank and world size are
    ignored: a sampler splits a map-style dataset). ``ds[i]`` returns the :class:`~datago.Sample` of
    file ``i``; :meth:`get_many` processes a whole list of indices in parallel in Go (``concurrency``
    workers), off the GIL, which is what a ``BatchSampler`` wants. Like a client, it belongs to the
    process that created it.
    """

    def __init__(self, config: Mapping[str, Any] | str) -> None:
        text = config if isinstance(config, str) else _config_json(config)
        _parse_json(text)  # a clear error for text that is not a JSON object
        self._pid = os.getpid()
        self._lock = threading.Lock()
        lib = _lib.get_lib()
        out = _lib.ffi.new("datago_catalog *")
        err = _lib.ffi.new("char **")
        _lib.check(lib.datago_catalog_new(text.encode("utf-8"), out, err), err, "datago_catalog_new")
        self._handle = int(out[0])
        self._finalizer = weakref.finalize(self, _free_catalog, self._handle, self._pid)
        self._free_sample = _lib.free_sample_in(self._pid)
        self._len = int(lib.datago_catalog_len(self._handle))
        self._ids: list[str] | None = None
        self._reports: list[SkipReport] = []  # of the last get_many
        self._skips = SkipLog()

    def _lib(self) -> Any:
        _lib.check_pid(self._pid, "this datago.MapDataset")
        if not self._finalizer.alive:
            raise DatagoError("this datago.MapDataset is closed")
        return _lib.get_lib()

    def __len__(self) -> int:
        return self._len

    @property
    def ids(self) -> list[str]:
        """The files, in index order."""
        if self._ids is None:
            self._ids = self._json("datago_catalog_ids")
        return list(self._ids)

    def _json(self, function: str) -> Any:
        lib = self._lib()
        out = _lib.ffi.new("char **")
        err = _lib.ffi.new("char **")
        _lib.check(getattr(lib, function)(self._handle, out, err), err, function)
        return json.loads(_lib.take_string(out[0]))

    def __getitem__(self, index: int) -> Sample:
        """The sample of file ``index``; raises DatagoError naming the file if it cannot be decoded."""
        sample = self.get_many([index])[0]
        if sample is None:
            if self._reports:
                last = self._reports[-1]
                raise DatagoError(f"{last.id}: {last.reason}: {last.message}")
            raise DatagoError(f"{self.ids[int(index)]}: skipped: ")
        return sample

    def get_many(self, indices: Sequence[int]) -> list[Sample | None]:
        """The samples of files ``indices`` (in that order, repeats allowed), processed in parallel.

        A file that cannot be read or decoded gives None; it is counted in :attr:`stats` and logged.
        Negative indices count from the end, as for lists.
        """
        lib = self._lib()
        n = len(indices)
        normalised = []
        for i in indices:
            i = int(i)
            j = i + self._len if i < 0 else i
            if not 0 <= j < self._len:
                raise IndexError(f"datago.MapDataset index {i} out of range for {self._len} files")
            normalised.append(j)
        c_indices = _lib.ffi.new("int64_t[]", normalised)
        out = _lib.ffi.new("datago_sample *[]", max(n, 1))
        err = _lib.ffi.new("char **")
        _lib.check(lib.datago_catalog_get(self._handle, c_indices, n, out, err), err, "datago_catalog_get")
        samples: list[Sample | None] = []
        for k in range(n):
            ptr = out[k]
            samples.append(None if ptr == _lib.ffi.NULL else Sample(_lib.ffi.gc(ptr, self._free_sample)))
        self._reports = []
        if any(s is None for s in samples):
            self._reports = self._skips.add(self._json("datago_catalog_errors"))
        return samples

    def skipped(self) -> list[SkipReport]:
        """The files that could not be read or decoded, one report per failed request, oldest first.

        At most the last ``datago.skips.MAX_SKIP_REPORTS`` (10,000) are kept.
        """
        return self._skips.all()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters of every request so far (``served``, ``skipped``, ...)."""
        stats: dict[str, Any] = self._json("datago_catalog_stats")
        return stats

    def close(self) -> None:
        """Release the file list. Samples already returned stay valid. Idempotent."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> MapDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
