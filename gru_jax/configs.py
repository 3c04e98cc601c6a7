"""Frozen dataclass configs that round-trip through JSON.

A checkpoint and a feature store each carry the config that made them, so every config must
serialise to plain JSON and come back equal; `config_hash` identifies artefacts built with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration a user asked for that cannot work (reported without a traceback)."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild `cls` from `to_dict` output; unknown keys are an error, so typos are not ignored."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True, indent=2)


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable short hash of a config's content (field order and formatting do not matter)."""
    canonical = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]
