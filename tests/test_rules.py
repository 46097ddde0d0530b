"""The per-field rules the schema carries: their arithmetic, and that validation enforces
every one of them with the message the table gives."""

from __future__ import annotations

import copy
from dataclasses import fields
from enum import Enum
from typing import get_args, get_origin, get_type_hints

import pytest

from runner.config.rules import AT_LEAST_1, POSITIVE, Range, only_with_of, range_of
from runner.config.store import GROUP_SCHEMAS
from runner.config.validate import ConfigError, Facts, validate


@pytest.mark.parametrize(
    ("rule", "inside", "outside", "text"),
    [
        (AT_LEAST_1, [1, 7], [0, -1], ">= 1"),
        (POSITIVE, [1e-9, 3.5], [0, -2], "> 0"),
        (Range(0, 1, low_open=True), [1e-9, 1], [0, 1.5], "in (0, 1]"),
        (Range(0, 1), [0, 1], [-0.1, 1.01], "in [0, 1]"),
        (Range(high=10, high_open=True), [-5, 9.99], [10, 11], "< 10"),
        (Range(low=0.5), [0.5], [0.49], ">= 0.5"),
    ],
)
def test_range_bounds_and_text(rule, inside, outside, text):
    assert all(rule.allows(v) for v in inside)
    assert not any(rule.allows(v) for v in outside)
    assert rule.text() == text and rule.refusal() == f"must be {text}"


def _rules(kind):
    for group, schema in GROUP_SCHEMAS.items():
        for f in fields(schema):
            rule = kind(f)
            if rule is not None:
                yield group, f.name, rule


RANGES = list(_rules(range_of))
CONDITIONS = list(_rules(only_with_of))


@pytest.fixture(scope="module")
def composed():
    """The default config, with and without quality, composed once: each test below sets
    one field of a copy (the schema's types, as composition would give them), since what
    it checks is validation, and composing costs a quarter of a second."""
    from runner.preflight_compose import compose_typed

    return {"default": compose_typed([]), "quality=off": compose_typed(["quality=off"])}


def _with(cfg, group: str, name: str, value):
    cfg = copy.deepcopy(cfg)
    setattr(getattr(cfg, group), name, value)
    return cfg


@pytest.mark.parametrize(("group", "name", "rule"), RANGES, ids=[f"{g}.{n}" for g, n, _ in RANGES])
def test_every_range_is_enforced(composed, group, name, rule):
    below = rule.low - 1 if rule.low is not None else rule.high + 1
    cfg = _with(composed["default"], group, name, below)
    with pytest.raises(ConfigError) as info:
        validate(cfg, Facts())
    assert info.value.field == f"{group}.{name}"
    assert str(info.value).endswith(f": {rule.refusal()}")


def _valid_value(schema: type, name: str):
    """A value of the field's type that is fine in itself (only its context is wrong)."""
    tp = next(a for a in get_args(get_type_hints(schema)[name]) if a is not type(None))
    if get_origin(tp) is list:
        return ["x"]
    if issubclass(tp, Enum):
        return next(iter(tp))
    value = {int: 2, float: 0.5, bool: True, str: "x"}[tp]
    allowed = range_of(next(f for f in fields(schema) if f.name == name))
    if allowed is not None and not allowed.allows(float(value)):
        value = tp(allowed.low or 0)  # e.g. trim_fraction in [0, 0.5)
    return value


@pytest.mark.parametrize(
    ("group", "name", "rule"), CONDITIONS, ids=[f"{g}.{n}" for g, n, _ in CONDITIONS]
)
def test_every_condition_is_enforced_in_the_default_config(composed, group, name, rule):
    # No condition holds in the default config with quality off (smollm2, no quant, no
    # compile, greedy, built-in prompts), so every conditional field set there must be refused.
    value = _valid_value(GROUP_SCHEMAS[group], name)
    cfg = _with(composed["quality=off"], group, name, value)
    assert not rule.holds(getattr(cfg, group))
    with pytest.raises(ConfigError) as info:
        validate(cfg, Facts())
    assert info.value.field == f"{group}.{name}"
    assert str(info.value).endswith(f": only applies with {rule.label}")
