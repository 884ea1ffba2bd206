"""The datago client: a handle on a loading pipeline running in the library's goroutines."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from . import _lib
from .batch import Batch
from .errors import ConfigError, DatagoError
from .sample import Sample
from .skips import SkipLog, SkipReport

__all__ = ["Client"]

logger = logging.getLogger("datago")

# A blocking wait is split into calls of at most this many milliseconds; between two of them the
# interpreter runs signal handlers, so Ctrl-C interrupts a wait within about this delay.
_SLICE_MS = 100
# Skip reports are drained (and logged) every this many samples, on END/TIMEOUT, and in stats().
_DRAIN_EVERY = 64


def _free_handle(handle: int, pid: int) -> None:
    """Finalizer of a client: stop its pipeline and release its handle, unless in a forked child."""
    if os.getpid() != pid or not _lib.loaded():
        return
    with contextlib.suppress(Exception):  # never raise from a finalizer
        _lib.get_lib().datago_client_free(handle)


def _plain(value: Any) -> Any:
    """JSON form of NumPy scalars and other numbers-like values found in configs."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _bad_value(value: Any, path: str) -> str | None:
    """The key path of the first value JSON cannot carry (NaN, infinity, other objects)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _bad_value(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _bad_value(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path
    return None


def _parse_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config: invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError("config: must be a JSON object")
    return value


def _config_json(config: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(config), allow_nan=False, default=_plain)
    except (TypeError, ValueError) as exc:
        key = _bad_value(config, "") or "config"
        raise ConfigError(f"{key}: cannot be written as JSON: {exc}") from exc


class Client:
    """Loads samples as configured by ``config`` (a dict, or its JSON text).

    Construction validates the configuration (raising :class:`~datago.ConfigError`); :meth:`start`
    starts the pipeline (iteration and :meth:`get_sample` start it when needed). Use it as a context
    manager, or call :meth:`close`, to stop the pipeline and release its memory; a client that is
    garbage collected is closed too.

    Every method may be called from several threads at once. A client belongs to the process that
    created it: after ``fork()`` it cannot be used in the child (create a new one there).
    """

    def __init__(self, config: Mapping[str, Any] | str, state: Mapping[str, Any] | None = None) -> None:
        if isinstance(config, str):
            text = config
            if state is not None:
                text = _config_json({**_parse_json(text), "resume_state": dict(state)})
        elif isinstance(config, Mapping):
            text = _config_json(config if state is None else {**config, "resume_state": dict(state)})
        else:
            raise TypeError(f"config must be a dict or a JSON string, not {type(config).__name__}")
        # With batch_size the client yields Batch objects (the library validates the value).
        self._batched = bool(_parse_json(text).get("batch_size") or 0) if "batch_size" in text else False
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._closed = False
        self._served = itertools.count(1)
        self._final_stats: dict[str, Any] | None = None  # kept by close() so stats() works after it
        self._final_state: dict[str, Any] | None = None
        self._skips = SkipLog()
        lib = _lib.get_lib()
        out = _lib.ffi.new("datago_client *")
        err = _lib.ffi.new("char **")
        _lib.check(lib.datago_client_new(text.encode("utf-8"), out, err), err, "datago_client_new")
        self._handle = int(out[0])
        self._free_sample = _lib.free_sample_in(self._pid)
        self._finalizer = weakref.finalize(self, _free_handle, self._handle, self._pid)

    @classmethod
    def from_json(cls, text: str) -> Client:
        """A client configured by the JSON text ``text``."""
        return cls(text)

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        else:
            state = "stopped" if self._stopped else "started" if self._started else "new"
        return f"<datago.Client handle={self._handle} {state}>"

    # -- state ------------------------------------------------------------------------------------

    def _lib(self) -> Any:
        _lib.check_pid(self._pid, "this datago.Client")
        if self._closed:
            raise DatagoError("this datago.Client is closed")
        return _lib.get_lib()

    def start(self) -> None:
        """Start the pipeline (no-op when already started)."""
        lib = self._lib()
        with self._lock:
            if self._started:
                return
            if self._stopped:
                raise DatagoError("this datago.Client was stopped; create a new one")
            err = _lib.ffi.new("char **")
            _lib.check(lib.datago_client_start(self._handle, err), err, "datago_client_start")
            self._started = True

    def stop(self) -> None:
        """Stop the pipeline and wait for its goroutines. Idempotent."""
        _lib.check_pid(self._pid, "this datago.Client")
        with self._lock:
            if self._closed or self._stopped:
                return
            self._stopped = True
            lib = _lib.get_lib()
            err = _lib.ffi.new("char **")
            _lib.check(lib.datago_client_stop(self._handle, err), err, "datago_client_stop")
        self._drain_errors()

    def close(self) -> None:
        """Stop the pipeline and release the client. Idempotent."""
        if self._closed:
            return
        try:
            self.stop()
            if os.getpid() == self._pid:
                self._final_stats = self.stats()
                self._final_state = self.state_dict()
        finally:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._finalizer()  # datago_client_free(handle), at most once

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- samples ----------------------------------------------------------------------------------

    def get_sample(self, timeout: float | None = None) -> Sample | None:
        """The next sample, or None once the source is exhausted (or the limit reached).

        Waits at most ``timeout`` seconds (forever when None) and raises :class:`TimeoutError` when
        nothing came in time. Raises :class:`~datago.DatagoError` if the pipeline failed.
        """
        if self._batched:
            raise DatagoError("batch_size is set: this client delivers batches (get_batch, or iterate)")
        ptr = self._next("datago_client_next", "datago_sample **", timeout)
        return None if ptr is None else Sample(_lib.ffi.gc(ptr, self._free_sample))

    def get_batch(self, timeout: float | None = None) -> Batch | None:
        """With ``batch_size`` in the config: the next :class:`~datago.Batch`, as :meth:`get_sample`."""
        if not self._batched:
            raise DatagoError("batch_size is not set: this client delivers samples (get_sample)")
        ptr = self._next("datago_client_next_batch", "datago_batch **", timeout)
        return None if ptr is None else Batch(_lib.ffi.gc(ptr, _lib.free_batch_in(self._pid)))

    def _next(self, function: str, out_type: str, timeout: float | None) -> Any:
        lib = self._lib()
        if not self._started:
            self.start()
        ffi = _lib.ffi
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        out = ffi.new(out_type)
        err = ffi.new("char **")
        handle = self._handle
        call = getattr(lib, function)
        while True:
            if deadline is None:
                slice_ms = _SLICE_MS
            else:
                slice_ms = int(min(_SLICE_MS, max(0.0, (deadline - time.monotonic()) * 1000.0)))
            # cffi releases the GIL during the call: other Python threads keep running.
            status = call(handle, slice_ms, out, err)
            if status == _lib.DATAGO_OK:
                if next(self._served) % _DRAIN_EVERY == 0:
                    self._drain_errors()
                return out[0]
            if status == _lib.DATAGO_END:
                self._drain_errors()
                return None
            if status == _lib.DATAGO_TIMEOUT:
                self._drain_errors()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"datago: nothing within {timeout} s")
                continue
            if status == _lib.DATAGO_ERR_STATE and (self._stopped or not self._finalizer.alive):
                # Stopped or closed by another thread while this one was waiting: the end.
                _lib.check(_lib.DATAGO_OK, err)  # frees the message
                return None
            _lib.check(status, err, "datago")

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        """The next :class:`~datago.Sample`, or :class:`~datago.Batch` with ``batch_size``."""
        item = self.get_batch() if self._batched else self.get_sample()
        if item is None:
            raise StopIteration
        return item

    def state_dict(self) -> dict[str, Any]:
        """Where this client is: pass it as ``Client(config, state=...)`` to resume exactly.

        Samples delivered before and after the resume are exactly each epoch's samples, when the
        configuration (and the data) are the same. Samples not yet delivered when the state is taken
        (queued, in a partial batch) are made again by the resumed client.
        """
        if self._closed and self._final_state is not None and os.getpid() == self._pid:
            return dict(self._final_state)
        lib = self._lib()
        out = _lib.ffi.new("char **")
        err = _lib.ffi.new("char **")
        _lib.check(lib.datago_client_state(self._handle, out, err), err, "datago_client_state")
        state: dict[str, Any] = json.loads(_lib.take_string(out[0]))
        return state

    # -- statistics and skip reports --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters, as returned by the library (a JSON object); final after close()."""
        if self._closed and self._final_stats is not None and os.getpid() == self._pid:
            return dict(self._final_stats)
        lib = self._lib()
        self._drain_errors()
        out = _lib.ffi.new("char **")
        err = _lib.ffi.new("char **")
        _lib.check(lib.datago_client_stats(self._handle, out, err), err, "datago_client_stats")
        result: dict[str, Any] = json.loads(_lib.take_string(out[0])) if out[0] != _lib.ffi.NULL else {}
        return result

    def _drain_errors(self) -> None:
        """Log the reports of the samples skipped since the last drain (logger "datago")."""
        if self._closed or os.getpid() != self._pid:
            return
        lib = _lib.get_lib()
        out = _lib.ffi.new("char **")
        err = _lib.ffi.new("char **")
        try:
            _lib.check(lib.datago_client_errors(self._handle, out, err), err, "datago_client_errors")
        except DatagoError as exc:
            logger.debug("cannot read skip reports: %s", exc)
            return
        if out[0] == _lib.ffi.NULL:
            return
        try:
            reports = json.loads(_lib.take_string(out[0]))
        except ValueError as exc:
            logger.debug("cannot parse skip reports: %s", exc)
            return
        self._skips.add(reports or ())

    def skipped(self) -> list[SkipReport]:
        """The samples skipped since the client started, oldest first (also logged as warnings).

        At most the last ``datago.skips.MAX_SKIP_REPORTS`` (10,000) are kept; older ones are dropped.
        Works after :meth:`close` too.
        """
        self._drain_errors()
        return self._skips.all()
