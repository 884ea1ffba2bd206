"""The datago client: a handle on a loading pipeline running in the library's goroutines."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from . import _config, _lib
from .batch import Batch
from .errors import DatagoError
from .sample import Sample
from .skips import SkipLog, SkipReport

__all__ = ["Client"]

logger = logging.getLogger("datago")

# A blocking wait is split into calls of at most this many milliseconds; between two of them the
# interpreter runs signal handlers, so Ctrl-C interrupts a wait within about this delay.
_SLICE_MS = 100
# Skip reports are drained (and logged) every this many samples, on END/TIMEOUT, and in stats().
_DRAIN_EVERY = 64
# Samples taken from the ready queue per library call (datago_client_next_many), when that many are
# ready: the call into the Go runtime is the largest per-sample cost of small samples. The ones not
# yet returned wait in the client, counted in README's memory bound.
_TAKE_MANY = 8


def _default_source(config: Mapping[str, Any] | str) -> str | None:
    """The ``Sample.source`` of samples whose metadata has none: "filesystem" for files."""
    try:
        kind = _config.to_dict(config).get("source_type")
    except (DatagoError, TypeError):
        return None  # the library reports the mistake
    return "filesystem" if isinstance(kind, str) and kind.lower() in ("file", "filesystem") else None


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
        text = _config.to_json(config, state)
        self._source = _default_source(config)
        self._pid = _lib.current_pid()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._closed = False
        self._served = itertools.count(1)
        self._final_stats: dict[str, Any] | None = None  # kept by close() so stats() works after it
        self._final_state: dict[str, Any] | None = None
        self._skips = SkipLog()
        self._pending: collections.deque[Any] = collections.deque()  # taken, not yet returned
        self._many = _lib.next_many_buffers(_TAKE_MANY)
        self._many_lock = threading.Lock()
        self._held = 0  # samples of the last client_next_many calls not yet marked delivered
        self._handle = _lib.client_new(text)
        self._finalizer = weakref.finalize(self, _lib.client_free, self._handle, self._pid)
        # With batch_size the client delivers Batch objects: the library says which.
        self._batch_size = _lib.client_batch_size(self._handle)

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

    def _usable(self) -> None:
        _lib.check_pid(self._pid, "this datago.Client")
        if self._closed:
            raise DatagoError("this datago.Client is closed")

    def start(self) -> None:
        """Start the pipeline (no-op when already started)."""
        self._usable()
        with self._lock:
            if self._started:
                return
            if self._stopped:
                raise DatagoError("this datago.Client was stopped; create a new one")
            _lib.client_start(self._handle)
            self._started = True

    def stop(self) -> None:
        """Stop the pipeline and wait for its goroutines (at most about a second: a worker blocked in a
        read is abandoned). Idempotent, and a no-op once the client was closed or finalised, or in a
        forked child (which has no pipeline to stop): an owner's ``__del__`` may call it in any order
        with the client's own clean-up, as the garbage collector runs them."""
        if _lib.current_pid() != self._pid:
            return
        with self._lock:
            if self._closed or self._stopped or not self._finalizer.alive:
                return
            self._stopped = True
            _lib.client_stop(self._handle)
        with self._many_lock:  # taken from the queue but never returned: freed, and made again on resume
            self._held -= len(self._pending)
            self._pending.clear()
        self._drain_errors()

    def close(self) -> None:
        """Stop the pipeline and release the client. Idempotent; a no-op once finalised."""
        if self._closed:
            return
        if not self._finalizer.alive:  # collected in a cycle: the library's client is already freed
            self._closed = True
            return
        try:
            self.stop()
            if _lib.current_pid() == self._pid:
                self._final_stats = self.stats()
                self._final_state = self.state_dict()
        finally:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._finalizer()  # _lib.client_free(handle), at most once

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
        if self._batch_size:
            raise DatagoError("batch_size is set: this client delivers batches (get_batch, or iterate)")
        if self._pending:
            self._usable()
            try:
                owner = self._pending.popleft()
            except IndexError:  # another thread took the last one
                pass
            else:
                if next(self._served) % _DRAIN_EVERY == 0:
                    self._drain_errors()
                return Sample(owner, self._source)
        owner = self._next(self._take_many, timeout)
        return None if owner is None else Sample(owner, self._source)

    def _take_many(self, handle: int, timeout_ms: int) -> tuple[int, Any]:
        """client_next for several samples: the first is returned, the others wait in _pending."""
        with self._many_lock:  # the out buffers are shared by the client's threads
            if self._pending:  # another thread took some while this one waited for the lock
                return _lib.DATAGO_OK, self._pending.popleft()
            status, owners = _lib.client_next_many(handle, timeout_ms, *self._many)
            if status != _lib.DATAGO_OK:
                return status, None
            self._held = len(owners)  # the call marked the previous ones delivered
            self._pending.extend(owners[1:])
        return status, owners[0]

    def get_batch(self, timeout: float | None = None) -> Batch | None:
        """With ``batch_size`` in the config: the next :class:`~datago.Batch`, as :meth:`get_sample`."""
        if not self._batch_size:
            raise DatagoError("batch_size is not set: this client delivers samples (get_sample)")
        owner = self._next(_lib.client_next_batch, timeout)
        return None if owner is None else Batch(owner)

    def _next(self, call: Callable[[int, int], tuple[int, Any]], timeout: float | None) -> Any:
        self._usable()
        if not self._started:
            self.start()
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        handle = self._handle
        while True:
            if deadline is None:
                slice_ms = _SLICE_MS
            else:
                slice_ms = int(min(_SLICE_MS, max(0.0, (deadline - time.monotonic()) * 1000.0)))
            try:
                status, owner = call(handle, slice_ms)
            except DatagoError as exc:
                if exc.code == "STATE" and (self._stopped or not self._finalizer.alive):
                    return None  # stopped or closed by another thread while this one was waiting: the end
                raise
            if status == _lib.DATAGO_OK:
                if next(self._served) % _DRAIN_EVERY == 0:
                    self._drain_errors()
                return owner
            self._drain_errors()
            if status == _lib.DATAGO_END:
                return None
            if deadline is not None and time.monotonic() >= deadline:  # DATAGO_TIMEOUT
                raise TimeoutError(f"datago: nothing within {timeout} s")

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        """The next :class:`~datago.Sample`, or :class:`~datago.Batch` with ``batch_size``."""
        item = self.get_batch() if self._batch_size else self.get_sample()
        if item is None:
            raise StopIteration
        return item

    def state_dict(self) -> dict[str, Any]:
        """Where this client is: pass it as ``Client(config, state=...)`` to resume exactly.

        Samples delivered before and after the resume are exactly each epoch's samples, when the
        configuration (and the data) are the same. Samples not yet delivered when the state is taken
        (queued, in a partial batch) are made again by the resumed client.
        """
        if self._closed and self._final_state is not None and _lib.current_pid() == self._pid:
            return dict(self._final_state)
        self._usable()
        with self._many_lock:  # the samples handed out since the last take are delivered
            handed = self._held - len(self._pending)
            if handed > 0:
                _lib.client_delivered(self._handle, handed)
                self._held -= handed
            return _lib.client_state(self._handle)

    # -- statistics and skip reports --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters, as returned by the library (a JSON object); final after close()."""
        if self._closed and self._final_stats is not None and _lib.current_pid() == self._pid:
            return dict(self._final_stats)
        self._usable()
        self._drain_errors()
        return _lib.client_stats(self._handle)

    def _drain_errors(self) -> None:
        """Record (and log) the reports of the samples skipped since the last drain."""
        if self._closed or _lib.current_pid() != self._pid:
            return
        try:
            reports = _lib.client_skips(self._handle)
        except (DatagoError, ValueError) as exc:
            logger.debug("cannot read skip reports: %s", exc)
            return
        self._skips.add(reports)

    def skipped(self) -> list[SkipReport]:
        """The samples skipped since the client started, oldest first (also logged as warnings).

        At most the last ``datago.skips.MAX_SKIP_REPORTS`` (10,000) are kept; older ones are dropped.
        Works after :meth:`close` too.
        """
        self._drain_errors()
        return self._skips.all()
