"""Skip reports: the samples the library skipped (unreadable, undecodable, too large, ...)."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_SKIP_REPORTS", "SkipReport"]

logger = logging.getLogger("datago")

# Reports kept per client or map dataset; the oldest are dropped beyond it. The library itself keeps
# up to 1024 between two reads, and Python reads far more often than that.
MAX_SKIP_REPORTS = 10_000


@dataclass(frozen=True)
class SkipReport:
    """One skipped sample: its id, the reason (``decode_error``, ``too_large``, ...) and the detail."""

    id: str
    reason: str
    message: str


class SkipLog:
    """The reports of one client or map dataset, oldest first, bounded by MAX_SKIP_REPORTS; each one is
    also logged as a warning on the "datago" logger when it arrives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: collections.deque[SkipReport] = collections.deque(maxlen=MAX_SKIP_REPORTS)

    def add(self, raw: Iterable[Any]) -> list[SkipReport]:
        """Record (and log) the library's JSON reports ``raw``; return them as SkipReports."""
        new = [
            SkipReport(str(r.get("id", "")), str(r.get("reason", "")), str(r.get("message", "")))
            for r in raw
            if isinstance(r, dict)
        ]
        with self._lock:
            self._reports.extend(new)
        for report in new:
            logger.warning("skipped %s (%s): %s", report.id, report.reason, report.message)
        return new

    def all(self) -> list[SkipReport]:
        with self._lock:
            return list(self._reports)
