"""The secret-leak check of the storage tests: every text a user or a log sees of a run, and the assertion
that no secret is in any of them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import datago
from support.drain import drain


def run_texts(shards: Mapping[str, Any], prefix: Mapping[str, Any]) -> list[str]:
    """What a run shows: ``shards`` (a WebDataset config naming a missing shard among present ones) drained,
    with its reprs, stats, skip reports and resume state; a client over the image ``prefix`` stopped midway,
    with its resume state; a MapDataset over it, with its repr, stats and skip reports."""
    texts: list[str] = []
    c = datago.Client(shards)
    try:
        texts.append(repr(c))
        d = drain(c)
        assert d.ids and d.skips, "the run must deliver samples and skip the missing shard"
        texts += [repr(c), json.dumps(d.stats), json.dumps(c.state_dict())]
        texts += [repr(r) for r in d.skips] + [str(r) for r in d.skips] + [r.message for r in d.skips]
    finally:
        c.close()
    with datago.Client(prefix) as c:
        texts += [repr(next(c)), repr(next(c)), json.dumps(c.state_dict()), repr(c), json.dumps(c.stats())]
    with datago.MapDataset(prefix) as ds:
        texts += [repr(ds), json.dumps(ds.stats), repr(ds[0]), repr(ds.skipped())]
    return texts


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    """No secret (each at least 8 characters: a short one would match ordinary text) in any text."""
    secrets = [s for s in secrets if s]
    assert secrets and all(len(s) >= 8 for s in secrets), "the check needs real secrets"
    n = 0
    for text in texts:
        n += 1
        for s in secrets:
            assert s not in text, f"a secret ({s[:4]}…) appears in: {text[:500]}"
    assert n >= 10, "too few texts checked"
