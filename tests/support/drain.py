"""Reading a client to its end in a test: what it delivered, its final stats and skip reports, no hang."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import datago


@dataclass
class Drained:
    """What one client delivered, in delivery order: samples, or batches when the config batches."""

    samples: list[Any] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    skips: list[datago.SkipReport] = field(default_factory=list)
    error: datago.DatagoError | None = None  # only with drain(..., keep_error=True)

    @property
    def ids(self) -> list[str]:
        """Every delivered id in delivery order (a batch's ids in stack order)."""
        return [
            i for item in self.samples for i in (item.ids if isinstance(item, datago.Batch) else [item.id])
        ]

    def by_id(self) -> dict[str, datago.Sample]:
        """The samples by id; fails the test when an id was delivered twice."""
        twice = [i for i, n in Counter(self.ids).items() if n > 1]
        assert not twice, f"delivered twice: {twice}"
        return {s.id: s for s in self.samples}

    def skipped_ids(self, reason: str | None = None) -> list[str]:
        """The ids of the skip reports (of one reason), in report order."""
        return [r.id for r in self.skips if reason is None or r.reason == reason]


def drain(
    client: datago.Client | Mapping[str, Any],
    timeout: float = 60.0,
    sample_timeout: float | None = None,
    keep_error: bool = False,
    batches: bool | None = None,
) -> Drained:
    """Everything ``client`` delivers until its end, then its stats and skip reports.

    A configuration is opened as a new client and closed at the end (stats and skips are read after
    that); a client is drained (and started if needed) but left open. The test fails when the whole
    drain takes over ``timeout`` seconds, or one wait over ``sample_timeout``: a hang, not a slow
    machine, at the defaults. With ``keep_error``, a DatagoError ends the drain and is returned in
    ``error`` instead of raised. ``batches`` says whether to read batches; by default, whether a
    configuration has a ``batch_size``.
    """
    if isinstance(client, Mapping):
        if batches is None:
            batches = bool(client.get("batch_size"))
        owned = datago.Client(client)
        try:
            got = drain(owned, timeout, sample_timeout, keep_error, batches)
        finally:
            owned.close()
        # Read again after close(): stop() waited for every goroutine, so these are final.
        got.stats, got.skips = owned.stats(), owned.skipped()
        return got
    get = client.get_batch if batches else client.get_sample
    got = Drained()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the client hangs: no end after {timeout} s ({len(got.samples)} delivered)")
        wait = remaining if sample_timeout is None else min(remaining, sample_timeout)
        try:
            item = get(timeout=wait)
        except TimeoutError:
            pytest.fail(f"the client hangs: nothing within {wait:.1f} s ({len(got.samples)} delivered)")
        except datago.DatagoError as exc:
            if not keep_error:
                raise
            got.error = exc
            break
        if item is None:
            break
        got.samples.append(item)
    got.stats = client.stats()
    got.skips = client.skipped()
    return got
