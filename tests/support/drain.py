"""Draining a client in a test: everything it delivers, with a guard against hangs."""

from __future__ import annotations

from typing import Any


def load_all(config: dict[str, Any]) -> list[Any]:
    import datago

    with datago.Client(config) as client:
        return list(client)
