"""Configurations as the library takes them: JSON text, with errors that name the key."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["to_dict", "to_json"]


def _plain(value: Any) -> Any:
    """JSON form of NumPy scalars and other number-like values found in configs."""
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


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config: invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError("config: must be a JSON object")
    return value


def _dumps(config: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(config), allow_nan=False, default=_plain)
    except (TypeError, ValueError) as exc:
        key = _bad_value(config, "") or "config"
        raise ConfigError(f"{key}: cannot be written as JSON: {exc}") from exc


def to_json(config: Mapping[str, Any] | str, state: Mapping[str, Any] | None = None) -> str:
    """The JSON text of ``config`` (a dict, or JSON text), with ``state`` as its ``resume_state`` when
    given. Raises ConfigError naming the key of a value JSON cannot carry; TypeError when ``config``
    is neither a dict nor a string. Text without a state is passed on unparsed: the library
    validates it (and names the key of what is wrong)."""
    if isinstance(config, str):
        return config if state is None else _dumps({**_parse(config), "resume_state": dict(state)})
    if isinstance(config, Mapping):
        return _dumps(config if state is None else {**config, "resume_state": dict(state)})
    raise TypeError(f"config must be a dict or a JSON string, not {type(config).__name__}")


def to_dict(config: Mapping[str, Any] | str) -> dict[str, Any]:
    """A private deep copy of ``config`` (a dict or its JSON text), as the library will read it."""
    return _parse(to_json(config))
