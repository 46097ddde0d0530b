"""Summary statistics for one metric: every number comes with its spread.

The descriptive statistics (mean, median, std, percentiles) are over every observation;
the 95% confidence interval of the mean is over *independent units*. Observations that
share a unit (the token gaps of one ``generate`` call, the requests of one batch, which
share one clock) are correlated, and counting each as independent makes the interval far
too narrow. The interval therefore uses a cluster-robust (CR1) standard error over the
units, with a Student-t quantile on (units - 1) degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import fields

from runner.sections.metrics import Stats

# The keys of one distribution in result.json; what each means is on Stats.
STAT_KEYS = tuple(f.name for f in fields(Stats))


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
    values: Sequence[float], clusters: Sequence[Hashable] | None = None
) -> tuple[float, float, int] | None:
    """``(low, high, units)``: 95% CI of the pooled mean of ``values`` over independent units.

    ``clusters[i]`` names the unit of ``values[i]``; without ``clusters`` every value is
    its own unit. Mean = sum(x) / n; SE^2 = G/(G-1) * sum_g (S_g - mean * n_g)^2 / n^2
    (CR1; S_g, n_g the sum and count of unit g, G units); t quantile on G - 1 dof. With
    equal unit sizes this is the t interval over the unit means; with one value per unit,
    the textbook s / sqrt(n) interval. ``None`` with fewer than two units.
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
    if units < 2:
        return None
    mean = math.fsum(xs) / n
    scatter = math.fsum((sums[g] - mean * counts[g]) ** 2 for g in sums)
    se = math.sqrt(units / (units - 1) * scatter) / n
    half = t_quantile_95(units - 1) * se
    return mean - half, mean + half, units


def summarize(
    values: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    unit: str = "value",
) -> Stats:
    """The :class:`Stats` of ``values``; units of the numbers are those of ``values``.

    Descriptive statistics are over all observations (sample std, ddof=1); the 95% CI of
    the mean is over the independent units named by ``clusters`` (see :func:`cluster_ci95`),
    called ``unit`` in ``ci_unit``. With one value std/CV are ``None``, with one unit the
    CI is ``None`` (undefined, rather than a misleading zero); with no value ``count`` is 0.
    """
    if clusters is not None:
        clusters = list(clusters)
    ci = cluster_ci95(values, clusters)
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
