"""Map-style access to a filesystem source: ``len``, indexing, and whole lists processed in Go."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from . import _config, _lib
from .errors import DatagoError
from .sample import Sample
from .skips import SkipLog, SkipReport

__all__ = ["MapDataset"]


class MapDataset:
    """The images under ``source_config.root_path``, sorted by path, processed on demand.

    ``config`` is a client configuration with the filesystem source (rank and world size are
    ignored: a sampler splits a map-style dataset). ``ds[i]`` returns the :class:`~datago.Sample` of
    file ``i``; :meth:`get_many` processes a whole list of indices in parallel in Go (``concurrency``
    workers), off the GIL, which is what a ``BatchSampler`` wants. Like a client, it belongs to the
    process that created it.
    """

    def __init__(self, config: Mapping[str, Any] | str) -> None:
        text = _config.to_json(config)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._handle = _lib.catalog_new(text)
        self._finalizer = weakref.finalize(self, _lib.catalog_free, self._handle, self._pid)
        self._len = _lib.catalog_len(self._handle)
        self._ids: list[str] | None = None
        self._reports: list[SkipReport] = []  # of the last get_many
        self._skips = SkipLog()

    def _usable(self) -> None:
        _lib.check_pid(self._pid, "this datago.MapDataset")
        if not self._finalizer.alive:
            raise DatagoError("this datago.MapDataset is closed")

    def __len__(self) -> int:
        return self._len

    @property
    def ids(self) -> list[str]:
        """The files, in index order."""
        if self._ids is None:
            self._usable()
            self._ids = _lib.catalog_ids(self._handle)
        return list(self._ids)

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
        self._usable()
        normalised = []
        for i in indices:
            i = int(i)
            j = i + self._len if i < 0 else i
            if not 0 <= j < self._len:
                raise IndexError(f"datago.MapDataset index {i} out of range for {self._len} files")
            normalised.append(j)
        owners = _lib.catalog_get(self._handle, normalised)
        samples = [None if owner is None else Sample(owner) for owner in owners]
        self._reports = []
        if any(s is None for s in samples):
            self._reports = self._skips.add(_lib.catalog_skips(self._handle))
        return samples

    def skipped(self) -> list[SkipReport]:
        """The files that could not be read or decoded, one report per failed request, oldest first.

        At most the last ``datago.skips.MAX_SKIP_REPORTS`` (10,000) are kept.
        """
        return self._skips.all()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters of every request so far (``served``, ``skipped``, ...)."""
        self._usable()
        return _lib.catalog_stats(self._handle)

    def close(self) -> None:
        """Release the file list. Samples already returned stay valid. Idempotent."""
        with self._lock:
            self._finalizer()

    def __enter__(self) -> MapDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
