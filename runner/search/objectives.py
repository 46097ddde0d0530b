"""Objectives and constraints of a search, read from ``search.*`` and evaluated on results.

``search.objectives=[energy_per_token_mj_net:minimize,e2e_ms_mean:minimize]`` names result
metrics (:mod:`runner.sections.figures`) with a direction; ``search.constraints=
[e2e_ms_mean<=250]`` bounds them. Pure: parsing raises :class:`ConfigError` (one line), and
evaluation reads a result dict as ``result.json`` holds it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from runner.config.schema import RunConfig
from runner.config.schema_measure import EnergyBackend
from runner.config.schema_sweep import SearchConfig
from runner.config.validate import ConfigError
from runner.sections.figures import (
    RENAMED,
    is_metric,
    metric_names_text,
    metric_value,
    needs_energy,
    unresolved_reason,
)


class Direction(str, Enum):
    minimize = "minimize"
    maximize = "maximize"


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction.value}"


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float | None) -> float:
        """How far ``value`` is past the bound (<= 0: met; inf: no value to judge)."""
        if value is None or not math.isfinite(value):
            return math.inf
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def _metric(field: str, item: str, name: str) -> str:
    if name in RENAMED:
        raise ConfigError(field, item, f"{name!r} was renamed: use {RENAMED[name]}")
    if not is_metric(name):
        raise ConfigError(
            field, item, f"{name!r} names no result metric; valid: " + metric_names_text()
        )
    return name


def parse_objectives(items: Sequence[str]) -> list[Objective]:
    """``["e2e_ms_mean:minimize", ...]`` -> objectives (at least one, no metric twice)."""
    field = "search.objectives"
    if not items:
        raise ConfigError(field, "[]", "name at least one metric:direction")
    out: list[Objective] = []
    for item in items:
        name, sep, direction = str(item).rpartition(":")
        if not sep:
            raise ConfigError(field, item, "expected metric:direction, e.g. e2e_ms_mean:minimize")
        if direction not in Direction.__members__:
            raise ConfigError(field, item, f"direction {direction!r}: minimize or maximize")
        out.append(Objective(_metric(field, item, name.strip()), Direction(direction)))
    names = [o.metric for o in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(field, ",".join(map(str, items)), f"{twice[0]} is named twice")
    return out


_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|:max:|:min:)\s*(\S+)\s*$")
# metric:max:250 is metric<=250 and needs no quoting on a command line (Hydra's override
# grammar reads < and > only inside quotes).
_OPS = {"<=": "<=", ">=": ">=", ":max:": "<=", ":min:": ">="}


def parse_constraints(items: Sequence[str]) -> list[Constraint]:
    """``["e2e_ms_mean:max:250", "quality.accuracy>=0.6"]`` -> constraints."""
    field = "search.constraints"
    out: list[Constraint] = []
    for item in items:
        found = _CONSTRAINT.match(str(item))
        if not found:
            raise ConfigError(
                field,
                item,
                "expected metric:max:number or metric:min:number "
                "(or metric<=number, metric>=number)",
            )
        name, op, text = found.groups()
        op = _OPS[op]
        try:
            bound = float(text)
        except ValueError:
            bound = math.nan
        if not math.isfinite(bound):
            raise ConfigError(field, item, f"bound {text!r} is not a finite number")
        out.append(Constraint(_metric(field, item, name), op, bound))
    return out


def check_search(cfg: RunConfig, searching: bool) -> None:
    """The ``search`` section parses; when a search will use it (``searching``), its
    metrics can exist with this config. Raises :class:`ConfigError`."""
    objectives = parse_objectives(cfg.search.objectives)
    constraints = parse_constraints(cfg.search.constraints)
    if not searching:
        return
    interval = float(cfg.energy.measure_power_secs)
    for name in [o.metric for o in objectives] + [c.metric for c in constraints]:
        if not needs_energy(name):
            continue
        field = (
            "search.objectives" if name in {o.metric for o in objectives} else "search.constraints"
        )
        if cfg.energy.backend is EnergyBackend.off:
            raise ConfigError(
                field,
                name,
                "needs energy, and energy=off records none: choose energy=codecarbon "
                "or another metric",
            )
        # A measured time shorter than CodeCarbon's sampling interval leaves energy
        # unresolved, so every trial would fail: it is at least min_seconds (and at most
        # max_seconds).
        for key in ("min_seconds", "max_seconds"):
            seconds = getattr(cfg.measure, key)
            if seconds < interval:
                raise ConfigError(
                    f"measure.{key}",
                    seconds,
                    f"{name} needs a measured time of at least energy.measure_power_secs="
                    f"{interval:g} s (CodeCarbon's sampling interval; shorter leaves energy "
                    f"unresolved): set measure.{key}={interval:g} or more",
                )


def objective_values(
    objectives: Sequence[Objective], result: Mapping[str, Any] | None
) -> list[float] | None:
    """The objectives' values of an ``ok`` result, in order; None when the run did not end
    ``ok`` or lacks a value (a sweeper must record it as failed, never as a number)."""
    if not isinstance(result, Mapping) or result.get("status") != "ok":
        return None
    values = [metric_value(o.metric, result) for o in objectives]
    if any(v is None for v in values):
        return None
    return [float(v) for v in values if v is not None]


def missing_reason(objectives: Sequence[Objective], result: Mapping[str, Any] | None) -> str:
    """Why :func:`objective_values` gave None: the run's status, or which objective has no
    value and why (an unresolved energy figure says its reason). Told to the search with
    the FAIL, so a physically impossible value never looks like a number it lost."""
    if not isinstance(result, Mapping):
        return "no result"
    if result.get("status") != "ok":
        return f"the run ended {result.get('status')}"
    missing = []
    for o in objectives:
        if metric_value(o.metric, result) is not None:
            continue
        reason = unresolved_reason(o.metric, result)
        missing.append(f"{o.metric} unresolved: {reason}" if reason else f"{o.metric} has no value")
    return "; ".join(missing) or "no objective value"


def task_return(search: SearchConfig, result: Mapping[str, Any] | None) -> Any:
    """What the task function returns to Hydra's sweeper: a float for one objective (what
    hydra-optuna-sweeper expects then), a list for several, None for a failed trial."""
    values = objective_values(parse_objectives(search.objectives), result)
    if values is None:
        return None
    return values[0] if len(values) == 1 else values


def violations(constraints: Sequence[Constraint], result: Mapping[str, Any] | None) -> list[float]:
    """Each constraint's violation on a result (<= 0 met; see :meth:`Constraint.violation`)."""
    return [c.violation(metric_value(c.metric, result)) for c in constraints]
