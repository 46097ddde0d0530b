"""The search space: Hydra sweep overrides as Optuna distributions.

- ``choice(a,b)`` (and ``key=a,b``, and a shuffled range): a categorical distribution;
- ``range(start,stop[,step])``: the numbers Hydra's grid would run, ``stop`` excluded
  (``range(1,9)`` is 1 to 8), as an int distribution or a stepped float one;
- ``interval(low,high)``: any number in between (``tag(log,interval(...))`` on a log
  scale), an int distribution when both ends are ints;
- any other override is a fixed value, given to every trial.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def distribution(override: Override) -> BaseDistribution | str:
    """The override's distribution, or its value as text when it is not a sweep."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    key = override.get_key_element()
    sweep = override.value()
    if override.is_interval_sweep():
        log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise ValueError(f"{key}: {override.get_value_element_as_str()} has no value")
    if override.is_range_sweep() and not sweep.shuffle:
        if all(isinstance(v, int) for v in values) and isinstance(sweep.step, int):
            return IntDistribution(values[0], values[-1], step=sweep.step)
        # The last value as a decimal sum, so that (high - low) is a multiple of step.
        step = Decimal(str(sweep.step))
        high = Decimal(str(values[0])) + (len(values) - 1) * step
        return FloatDistribution(float(values[0]), float(high), step=float(step))
    return CategoricalDistribution(values)


def search_space(overrides: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """The distributions of the swept keys, and the fixed values of the others."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        value = distribution(override)
        if isinstance(value, BaseDistribution):
            space[override.get_key_element()] = value
        else:
            fixed[override.get_key_element()] = value
    return space, fixed


def space_size(space: dict[str, BaseDistribution]) -> int | None:
    """How many points the space has; None when a distribution is continuous."""
    size = 1
    for dist in space.values():
        if isinstance(dist, CategoricalDistribution):
            size *= len(dist.choices)
        elif isinstance(dist, IntDistribution):
            size *= (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            size *= round((dist.high - dist.low) / dist.step) + 1
        else:
            return None
    return size


def point(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A trial's params as a hashable key: the same point, the same key (floats rounded
    past a stepped distribution's float noise)."""
    return tuple(
        sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items())
    )
