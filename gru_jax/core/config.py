"""Frozen dataclass configs: one tree that round-trips through JSON, typed overrides, stable hashes.

A checkpoint and a feature store each carry the config that made them, so every config serialises
to plain JSON and comes back equal. Values are coerced to their field's declared type when a config
is built (an int in a float field becomes a float, a list in a tuple field a tuple), so two configs
that mean the same thing are equal and hash alike; a value of the wrong kind (the string "False"
in a bool field) is a `ConfigError` naming the field. `--set section.field=value` strings are
parsed by the same field types.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


class ConfigError(ValueError):
    """A configuration a user asked for that cannot work (reported without a traceback)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every config dataclass: coerces fields to their types, then calls `validate`."""

    def __post_init__(self) -> None:
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = coerce(hints[f.name], value, f"{type(self).__name__}.{f.name}")
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` for values of the right type that cannot work together."""


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _union_members(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def coerce(hint: Any, value: Any, name: str) -> Any:
    """`value` as the type `hint` (JSON-decoded values and Python values alike), or ConfigError."""
    members = _union_members(hint)
    if members is not None:
        if value is None and type(None) in members:
            return None
        for member in (m for m in members if m is not type(None)):
            try:
                return coerce(member, value, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name} must be {_type_name(hint)}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return from_dict(hint, value, name)
        raise ConfigError(f"{name} must be a {hint.__name__} section, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value if type(value) is float else float(value)
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = tuple(coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
        else:
            if len(args) != len(value):
                raise ConfigError(f"{name} must have {len(args)} items, got {value!r}")
            items = tuple(
                coerce(a, v, f"{name}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        return value if items == value and type(value) is tuple else items
    raise TypeError(f"{name}: unsupported config field type {hint!r}")


def parse_value(hint: Any, raw: str, name: str) -> Any:
    """A command-line string as the type `hint`: bools take true/false/1/0/yes/no, tuples a JSON
    list or comma-separated items, optional fields `none`."""
    text = raw.strip()
    members = _union_members(hint)
    if members is not None:
        if text.lower() in _NONE and type(None) in members:
            return None
        for member in (m for m in members if m is not type(None)):
            try:
                return parse_value(member, text, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name}={raw!r}: expected {_type_name(hint)}")
    if dataclasses.is_dataclass(hint):
        fields = ", ".join(f.name for f in dataclasses.fields(hint))
        raise ConfigError(f"{name} is a section; set one of its fields ({fields})")
    if hint is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{name}={raw!r}: expected {kind}") from None
    if hint is str:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1]
        return text
    if typing.get_origin(hint) is tuple:
        try:
            items = json.loads(text) if text.startswith("[") else None
        except json.JSONDecodeError:
            items = None
        if items is None:
            items = [item.strip() for item in text.split(",") if item.strip()]
            args = typing.get_args(hint)
            item_hint = args[0]
            items = [parse_value(item_hint, item, f"{name}[{i}]") for i, item in enumerate(items)]
        return coerce(hint, items, name)
    raise TypeError(f"{name}: unsupported config field type {hint!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any], name: str | None = None) -> T:
    """Rebuild `cls` from `to_dict` output; unknown keys are an error, so typos are not ignored."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    name = name or cls.__name__
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown {name} field(s): {', '.join(unknown)}{_suggest(unknown[0], known)}"
        )
    hints = field_types(cls)
    kwargs = {key: coerce(hints[key], value, f"{name}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: {e}") from None


def replace(cfg: T, overrides: Mapping[str, str]) -> T:
    """`cfg` with dotted `section.field=value` overrides applied, each parsed by its field's type."""
    data = to_dict(cfg)
    for dotted, raw in overrides.items():
        node, cls = data, type(cfg)
        *sections, leaf = dotted.split(".")
        for i, section in enumerate(sections):
            hint = field_types(cls).get(section)
            if hint is None or not dataclasses.is_dataclass(hint):
                where = ".".join(sections[:i]) or "the config"
                names = [f.name for f in dataclasses.fields(cls)]
                raise ConfigError(
                    f"--set {dotted}: {where} has no section {section!r}{_suggest(section, names)}"
                )
            node, cls = node[section], hint
        hints = field_types(cls)
        if leaf not in hints:
            raise ConfigError(f"--set {dotted}: unknown field{_suggest(leaf, list(hints), dotted)}")
        node[leaf] = parse_value(hints[leaf], raw, dotted)
    return from_dict(type(cfg), data)


def _suggest(word: str, names: list[str], dotted: str | None = None) -> str:
    close = difflib.get_close_matches(word, names, n=1)
    if not close:
        return f" (known: {', '.join(names)})"
    if dotted is not None:
        return (
            f"; did you mean {dotted.rsplit('.', 1)[0] + '.' if '.' in dotted else ''}{close[0]}?"
        )
    return f"; did you mean {close[0]!r}?"


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True, indent=2)


def config_hash(cfg: Any, length: int = 12) -> str:
    """Stable short hash of a config's content (field order and formatting do not matter)."""
    canonical = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]
