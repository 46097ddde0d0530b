"""Statistics across a sweep's repeats (``repeat.count``): what a rerun would show.

A run's own CI says how much its calls varied. Repeats of a point (each its own job, in
interleaved order) say how much the whole run moves when it runs again: clocks, heat, a
neighbour's load, the state the machine was in. This module works on the report table
(one row per run, a ``point`` and a ``repeat`` column):

- :func:`point_stats`: per point and metric, the mean over its repeats with a 95% CI whose
  unit is the repeat (exact t on n - 1 degrees of freedom, on the log scale for positive
  figures; none under 3 repeats), the repeats' own within-run CIs beside it, the share of
  the repeats' variance that their within-run CIs do not explain, and how many of those
  CIs miss the mean over repeats (about 5% of them should);
- :func:`paired_ratios`: each point against the baseline point, repeat by repeat (the
  ratio of the two runs of one repeat, so a drift across the sweep cancels), geometric
  mean with a t-interval over repeats;
- :func:`drift`: each metric against execution order across the whole sweep, every run
  measured against its own point's mean (so the factors' effects drop out): a slope and
  its two-sided p-value.

Pure functions of the table; the report's "Repeats" section and ``repeats.csv`` read them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from runner.measure.stats import MIN_CI_UNITS, summarize, t_quantile_95
from runner.report.compare import log_half_width
from runner.report.metrics import UNRESOLVED, Metric, unresolved_figures, unresolved_text
from runner.sections.figures import FIGURES

Z95 = 1.959964  # a run's own CI is read as mean * exp(+-1.96 SE) on the log scale
ALPHA = 0.05


def has_repeats(df: pd.DataFrame) -> bool:
    """Some point ran more than once (``repeat.count`` > 1)."""
    if "repeat" not in df.columns:
        return False
    ok = df[(df["status"] == "ok") & df["repeat"].notna()]
    return bool(len(ok)) and bool(ok.groupby("point")["repeat"].nunique().max() > 1)


def _ok(df: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df[metric.column] > 0)]  # NaN compares False


@dataclass(frozen=True)
class PointStats:
    """One point's ``metric`` over its repeats (in the metric's unit; shares are fractions).

    ``ci95_low/high``: over repeats (NaN under 3). ``within_ci95_low/high``: the repeats'
    own CIs, as their geometric mean about ``mean`` (what one run alone would claim).
    ``between_share``: of the variance of the repeats' logs, the part their within-run
    CIs do not explain (0: they explain it all; NaN: too few repeats or no own CIs).
    ``missed``: how many repeats' own CIs exclude the mean over repeats.
    """

    point: str
    metric: str
    repeats: int
    mean: float
    ci95_low: float
    ci95_high: float
    within_ci95_low: float
    within_ci95_high: float
    between_share: float
    missed: int

    @property
    def within_too_narrow(self) -> bool:
        """The repeats vary at least as much between themselves as within: a within-run CI
        understates what a rerun would show (never said on fewer than 3 repeats)."""
        return self.repeats >= MIN_CI_UNITS and self.between_share >= 0.5


def point_stats(df: pd.DataFrame, metric: Metric) -> list[PointStats]:
    """:class:`PointStats` of every point with an ok run, in table order."""
    ok = _ok(df, metric)
    out = []
    for point, runs in ok.groupby("point", sort=False):
        values = runs[metric.column].astype(float)
        stats = summarize(list(values), unit="repeat", positive=True)
        widths = np.array([log_half_width(r, metric) for _, r in runs.iterrows()])
        has_own = bool(len(widths)) and bool(np.isfinite(widths).all())
        within = float(np.sqrt(np.mean(widths**2))) if has_own else math.nan
        mean = float(stats.mean)
        share = math.nan
        if has_own and len(values) >= 2:
            observed = float(np.var(np.log(values), ddof=1))
            expected = float(np.mean((widths / Z95) ** 2))
            share = max(0.0, observed - expected) / observed if observed > 0 else 0.0
        missed = 0
        if has_own:
            lows, highs = (runs[c].astype(float) for c in metric.ci_columns or ())
            missed = int(((lows > mean) | (highs < mean)).sum())
        out.append(
            PointStats(
                point=str(point),
                metric=metric.column,
                repeats=len(values),
                mean=mean,
                ci95_low=math.nan if stats.ci95_low is None else stats.ci95_low,
                ci95_high=math.nan if stats.ci95_high is None else stats.ci95_high,
                within_ci95_low=mean * math.exp(-within),
                within_ci95_high=mean * math.exp(within),
                between_share=share,
                missed=missed,
            )
        )
    return out


@dataclass(frozen=True)
class PairedRatio:
    """``point`` / the baseline point for ``metric``, paired by repeat: the geometric mean
    of the ``repeats`` ratios, a t-interval over them (NaN under 3)."""

    point: str
    metric: str
    repeats: int
    ratio: float
    ratio_ci95_low: float
    ratio_ci95_high: float


def paired_ratios(df: pd.DataFrame, metric: Metric, baseline_point: str) -> list[PairedRatio]:
    """Every other point against ``baseline_point``, repeat by repeat."""
    ok = _ok(df, metric)
    logs = ok.assign(log=np.log(ok[metric.column].astype(float)))
    by = logs.pivot_table(index="repeat", columns="point", values="log", aggfunc="mean")
    if baseline_point not in by.columns:
        return []
    out = []
    for point in dict.fromkeys(ok["point"]):
        if point == baseline_point:
            continue
        diffs = (by[point] - by[baseline_point]).dropna()
        n = len(diffs)
        if n == 0:
            continue
        mean = float(diffs.mean())
        low = high = math.nan
        if n >= MIN_CI_UNITS:
            half = t_quantile_95(n - 1) * float(diffs.std(ddof=1)) / math.sqrt(n)
            low, high = math.exp(mean - half), math.exp(mean + half)
        out.append(PairedRatio(str(point), metric.column, n, math.exp(mean), low, high))
    return out


@dataclass(frozen=True)
class Drift:
    """``metric`` against execution order: ``per_run`` is the relative change per run
    position (exp(slope) - 1), ``over_sweep`` from the first run to the last; ``p`` the
    two-sided p-value of the slope (t on runs - points - 1 degrees of freedom: a mean per
    point, and the slope)."""

    metric: str
    runs: int
    per_run: float
    over_sweep: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def drift(df: pd.DataFrame, metric: Metric) -> Drift | None:
    """The trend of ``metric`` in execution order (``started_at``), each run against its
    point's mean on the log scale; None without repeats (one run per point leaves nothing)
    or with fewer than 6 runs."""
    ok = _ok(df, metric)
    ok = ok[ok["started_at"].notna()]
    if len(ok) < 6 or ok.groupby("point").size().max() < 2:
        return None
    from scipy.stats import t as student

    started = pd.to_datetime(ok["started_at"], utc=True, format="ISO8601", errors="coerce")
    ordered = ok.assign(_t=started).dropna(subset="_t")
    ordered = ordered.sort_values("_t", kind="stable").reset_index(drop=True)
    point = ordered["point"]
    logs = np.log(ordered[metric.column].astype(float))
    y = (logs - logs.groupby(point).transform("mean")).to_numpy()
    position = pd.Series(np.arange(len(ordered), dtype=float))
    x = (position - position.groupby(point).transform("mean")).to_numpy()
    sxx = float((x**2).sum())
    if sxx == 0:
        return None
    slope = float((x * y).sum() / sxx)
    residuals = y - slope * x
    points = ordered["point"].nunique()
    dof = len(y) - points - 1  # a mean per point, and the slope
    if dof < 1:
        return None
    se = math.sqrt(float((residuals**2).sum()) / dof / sxx)
    if se > 0:
        p = 2 * float(student.sf(abs(slope / se), dof))
    else:  # an exact fit: a slope is certain, no slope is none
        p = 0.0 if abs(slope) > 1e-12 else 1.0
    return Drift(metric.column, len(y), math.exp(slope) - 1, math.exp(slope * (len(y) - 1)) - 1, p)


def repeats_frame(df: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """``repeats.csv``: :class:`PointStats` of every point for every metric."""
    rows = [asdict(s) for m in metrics for s in point_stats(df, m)]
    columns = list(PointStats.__dataclass_fields__)
    return pd.DataFrame(rows, columns=columns)


def points_table(df: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """One row per point, for ranking points rather than single repeats: the factor
    columns, ``label`` = the point, ``runs`` (ok repeats), each metric's mean over its ok
    repeats with the CI over repeats in its CI columns (where it has them), energy
    unresolved where any repeat's is (with how many), ``energy_is_estimate`` where any is.
    """
    rows = []
    for point, runs in df.groupby("point", sort=False):
        ok = runs[runs["status"] == "ok"]
        first = (ok if len(ok) else runs).iloc[0]
        row = first.to_dict()
        row.update(label=point, status="ok" if len(ok) else first["status"], repeat=pd.NA)
        row["runs"] = len(ok)
        for metric in metrics:
            if metric.column not in df.columns:
                continue
            stats = point_stats(ok, metric)
            row[metric.column] = stats[0].mean if stats else math.nan
            if metric.ci_columns:
                low, high = metric.ci_columns
                row[low] = stats[0].ci95_low if stats else math.nan
                row[high] = stats[0].ci95_high if stats else math.nan
        said = ok[UNRESOLVED].dropna() if UNRESOLVED in ok.columns else pd.Series(dtype=object)
        # A point whose energy is unresolved in any repeat has no energy figure: a mean over
        # the other repeats would be chosen by the failure.
        reasons = {
            figure: f"in {len(said)} of {len(ok)} repeats, {reason}"
            for figure, reason in unresolved_figures(said.iloc[0] if len(said) else None).items()
        }
        row[UNRESOLVED] = unresolved_text(reasons)
        for name, figure in FIGURES.items():
            if figure.follows in reasons and name in row:
                row[name] = math.nan
        if "energy_is_estimate" in ok.columns:
            row["energy_is_estimate"] = bool((ok["energy_is_estimate"] == True).any())  # noqa: E712
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs = dict(df.attrs)
    return out
