"""Summary statistics for one metric: every number comes with its spread.

The descriptive statistics (mean, median, std, percentiles) are over every observation;
the 95% confidence interval of the mean is over *independent units*. Observations that
share a unit (the token gaps of one ``generate`` call, the requests of one batch, which
share one clock) are correlated, and counting each as independent makes the interval far
too narrow. The interval therefore uses a cluster-robust (CR1) standard error over the
units, with a Student-t quantile on (units - 1) degrees of freedom.

Two rules keep an interval honest:

- fewer than :data:`MIN_CI_UNITS` units give no interval at all: with two units a
  t-interval has one degree of freedom (t = 12.7) and says nothing a reader can use;
- a positive quantity (a latency, a rate) gets an interval that stays positive: the
  delta method on its logarithm, ``mean * exp(+-t * SE / mean)``. It is asymmetric,
  contains the mean, and agrees with the linear interval when SE is small against the
  mean; where the linear one would cross zero it does not.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import fields

from runner.sections.metrics import Stats

# The keys of one distribution in result.json; what each means is on Stats.
STAT_KEYS = tuple(f.name for f in fields(Stats))
# Fewest independent units an interval is computed from (below: none, and the reason said).
MIN_CI_UNITS = 3


def too_few_units(units: int | None, unit: str | None = None) -> str:
    """Why there is no interval: ``"2 calls, 3 needed for a CI"``."""
    name = unit or "unit"
    count = units if units is not None else 0
    plural = name if count == 1 else name + ("es" if name.endswith("s") else "s")
    return f"{count} {plural}, {MIN_CI_UNITS} needed for a CI"


def t_quantile_95(dof: int) -> float:
    """Two-sided 95% quantile of Student's t with ``dof`` degrees of freedom (exact)."""
    # What scipy.stats.t.ppf calls, without importing stats; imported here so that the
    # command's pre-flight (which reaches this module) does not pay for scipy.
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975)) if dof >= 1 else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), ``q`` in [0, 100]."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def cluster_ci95(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    positive: bool = False,
) -> tuple[float, float, int] | None:
    """``(low, high, units)``: 95% CI of the pooled mean of ``values`` over independent units.

    ``clusters[i]`` names the unit of ``values[i]``; without ``clusters`` every value is
    its own unit. Mean = sum(x) / n; SE^2 = G/(G-1) * sum_g (S_g - mean * n_g)^2 / n^2
    (CR1; S_g, n_g the sum and count of unit g, G units); t quantile on G - 1 dof. With
    equal unit sizes this is the t interval over the unit means; with one value per unit,
    the textbook s / sqrt(n) interval. ``positive``: the log-scale interval
    ``mean * exp(+-t * SE / mean)`` of a positive quantity (see the module docstring).
    ``None`` with fewer than :data:`MIN_CI_UNITS` units (or, ``positive``, a mean <= 0).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if clusters is None:
        clusters = range(n)
    elif len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster labels for {n} values")
    sums: dict[Hashable, float] = {}
    counts: dict[Hashable, int] = {}
    for x, g in zip(xs, clusters, strict=True):
        sums[g] = sums.get(g, 0.0) + x
        counts[g] = counts.get(g, 0) + 1
    units = len(sums)
    if units < MIN_CI_UNITS:
        return None
    mean = math.fsum(xs) / n
    scatter = math.fsum((sums[g] - mean * counts[g]) ** 2 for g in sums)
    se = math.sqrt(units / (units - 1) * scatter) / n
    half = t_quantile_95(units - 1) * se
    if positive:
        if not mean > 0:
            return None
        return mean * math.exp(-half / mean), mean * math.exp(half / mean), units
    return mean - half, mean + half, units


def ratio_ci95(
    numerators: Sequence[float], denominators: Sequence[float]
) -> tuple[float, float, float, int] | None:
    """``(ratio, low, high, units)``: the ratio estimator ``R = sum(y) / sum(x)`` over
    independent units (a pass's output tokens ``y`` over its seconds ``x``) with a 95% CI.

    Linearised: residuals ``e = y - R x``, ``SE^2 = G/(G-1) * sum(e^2) / sum(x)^2``, t on
    G - 1 dof, on the log scale (``R * exp(+-t * SE / R)``: a rate stays positive). This is
    the right unit for a total rate: a mean of the units' own rates would weight a short
    unit like a long one. ``None`` with fewer than :data:`MIN_CI_UNITS` units or no positive
    total.
    """
    ys = [float(v) for v in numerators]
    xs = [float(v) for v in denominators]
    if len(ys) != len(xs):
        raise ValueError(f"{len(ys)} numerators for {len(xs)} denominators")
    units = len(xs)
    total_x, total_y = math.fsum(xs), math.fsum(ys)
    if units < MIN_CI_UNITS or not (total_x > 0 and total_y > 0):
        return None
    ratio = total_y / total_x
    scatter = math.fsum((y - ratio * x) ** 2 for y, x in zip(ys, xs, strict=True))
    se = math.sqrt(units / (units - 1) * scatter) / total_x
    h = t_quantile_95(units - 1) * se / ratio
    return ratio, ratio * math.exp(-h), ratio * math.exp(h), units


def summarize(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    unit: str = "value",
    positive: bool = False,
) -> Stats:
    """The :class:`Stats` of ``values``; units of the numbers are those of ``values``.

    Descriptive statistics are over all observations (sample std, ddof=1); the 95% CI of
    the mean is over the independent units named by ``clusters`` (see :func:`cluster_ci95`),
    called ``unit`` in ``ci_unit``; ``positive`` for a quantity that is positive by nature
    (its interval stays positive). With one value std/CV are ``None``; with fewer than
    :data:`MIN_CI_UNITS` units the CI is ``None`` (``ci_units`` says why, rather than a
    misleading zero or a 1-dof interval); with no value ``count`` is 0.
    """
    if clusters is not None:
        clusters = list(clusters)
    ci = cluster_ci95(values, clusters, positive)
    xs = sorted(float(v) for v in values)
    n = len(xs)
    units = len(set(clusters)) if clusters else n
    if n == 0:
        return Stats(count=0, ci_unit=unit, ci_units=units)
    mean = statistics.fmean(xs)
    out: dict[str, float | None] = dict(
        mean=mean,
        median=statistics.median(xs),
        min=xs[0],
        max=xs[-1],
        p90=percentile(xs, 90),
        p95=percentile(xs, 95),
        p99=percentile(xs, 99),
    )
    if n >= 2:
        std = statistics.stdev(xs)
        out.update(std=std, cv=(std / mean) if mean else None)
    if ci is not None:
        out.update(ci95_low=ci[0], ci95_high=ci[1])
    return Stats(count=n, ci_unit=unit, ci_units=units, **out)
