"""Summary statistics for one metric: every number comes with its spread."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Two-sided 95% Student t quantiles for small samples; above 30 the normal
# quantile is within 2% and is used instead (no scipy dependency for one table).
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
}

STAT_KEYS = (
    "count",
    "mean",
    "median",
    "std",
    "min",
    "max",
    "p90",
    "p95",
    "p99",
    "ci95_low",
    "ci95_high",
    "cv",
)


def t_quantile_95(dof: int) -> float:
    """Two-sided 95% quantile of Student's t with ``dof`` degrees of freedom."""
    return _T95.get(dof, 1.960) if dof >= 1 else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), ``q`` in [0, 100]."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, median, sample std (ddof=1), min, max, p90/p95/p99, 95% CI, CV.

    Units are those of ``values``. With one value, std/CI/CV are ``None``
    (undefined) rather than a misleading zero; with none, only ``count`` is 0.
    """
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n == 0:
        return {k: (0 if k == "count" else None) for k in STAT_KEYS}
    mean = statistics.fmean(xs)
    out: dict[str, float | int | None] = {
        "count": n,
        "mean": mean,
        "median": statistics.median(xs),
        "std": None,
        "min": xs[0],
        "max": xs[-1],
        "p90": percentile(xs, 90),
        "p95": percentile(xs, 95),
        "p99": percentile(xs, 99),
        "ci95_low": None,
        "ci95_high": None,
        "cv": None,
    }
    if n >= 2:
        std = statistics.stdev(xs)
        half = t_quantile_95(n - 1) * std / math.sqrt(n)
        out.update(
            std=std,
            ci95_low=mean - half,
            ci95_high=mean + half,
            cv=(std / mean) if mean else None,
        )
    return out
