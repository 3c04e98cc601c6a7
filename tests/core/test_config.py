"""Config machinery: coercion by field type, typed `--set` parsing, canonical hashes, JSON round trips."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gru_jax.core.config import Config, ConfigError, config_hash, from_dict, replace, to_dict


@dataclass(frozen=True)
class Inner(Config):
    rate: float = 0.5
    flag: bool = False
    name: str = "x"


@dataclass(frozen=True)
class Outer(Config):
    inner: Inner = field(default_factory=Inner)
    count: int = 3
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None


def test_values_are_coerced_to_the_field_type():
    cfg = Outer(inner=Inner(rate=8000), sizes=[4, 5])
    assert cfg.inner.rate == 8000.0 and type(cfg.inner.rate) is float
    assert cfg.sizes == (4, 5)
    assert Outer(count=7.0).count == 7
    assert config_hash(Inner(rate=8000)) == config_hash(Inner(rate=8000.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flag": "False"}, "Inner.flag must be true or false"),
        ({"rate": "0.1"}, "Inner.rate must be a number"),
        ({"flag": 1}, "Inner.flag must be true or false"),
        ({"name": 3}, "Inner.name must be a string"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Inner(**kwargs)


def test_count_cannot_be_fractional():
    with pytest.raises(ConfigError, match=r"Outer\.count must be an integer"):
        Outer(count=2.5)


@pytest.mark.parametrize(
    "raw, expected", [("False", False), ("false", False), ("0", False), ("True", True), ("1", True)]
)
def test_set_parses_bools_by_the_field_type(raw, expected):
    """The bug this replaces: "False" became the (truthy) string "False"."""
    assert replace(Outer(), {"inner.flag": raw}).inner.flag is expected


def test_set_parses_every_field_type():
    cfg = replace(
        Outer(),
        {
            "inner.rate": "8000",
            "count": "12",
            "sizes": "3,4,5",
            "limit": "none",
            "inner.name": "a b",
        },
    )
    assert cfg == Outer(inner=Inner(rate=8000.0, name="a b"), count=12, sizes=(3, 4, 5))
    assert replace(cfg, {"sizes": "[6]", "limit": "9"}).sizes == (6,)
    assert config_hash(replace(Outer(), {"inner.rate": "8000"})) == config_hash(
        replace(Outer(), {"inner.rate": "8000.0"})
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"inner.flag": "maybe"}, r"inner.flag='maybe': expected true or false"),
        ({"count": "1.5"}, "count='1.5': expected an integer"),
        ({"inner.rat": "1"}, "did you mean inner.rate"),
        ({"iner.rate": "1"}, "no section 'iner'; did you mean 'inner'"),
        ({"inner": "1"}, "inner is a section"),
        ({"sizes": "a,b"}, r"sizes\[0\]='a': expected an integer"),
    ],
)
def test_set_errors_name_the_field_and_the_expected_type(overrides, message):
    with pytest.raises(ConfigError, match=message):
        replace(Outer(), overrides)


def test_round_trip_through_json_dict_and_unknown_keys():
    cfg = Outer(inner=Inner(rate=1.0, flag=True), sizes=(9,), limit=4)
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"unknown Outer.inner field"):
        from_dict(Outer, {"inner": {"rte": 1.0}})
