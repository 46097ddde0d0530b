"""What each swept factor does to a metric, from the ok runs of the report table.

Two views, both generic over a :class:`~runner.report.metrics.Metric`:

- :func:`level_means`: per level of a factor (optionally per level of a second factor),
  the mean of the runs' values, marginalised over every other factor, with a 95%
  Student-t CI **over runs** (``runner.measure.stats.summarize``, unit ``run``). This is
  what the main-effect figures draw. A level with a single run gets that run's own CI.
- :func:`effects`: per level, the ratio to the factor's reference level (the baseline's
  level, else the first level), **paired** over the other factors: runs that agree on
  every other swept factor are matched (replicates averaged first), and the ratio is the
  geometric mean of the matched ratios with a t-interval on their logarithms. Pairing
  removes what the other factors do, so a factor that halves latency reads ×0.5 with a
  narrow interval even when the other factors move latency tenfold. The intervals of one
  factor's levels are simultaneous (Bonferroni over its L-1 comparisons: 95% for two
  levels). Where fewer than two pairs exist (an incomplete grid, a search), the ratio
  of the level means is used instead, with a CI from the CIs over runs (delta method on
  the log), or from the runs' own CIs when each level has a single run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from runner.measure.stats import summarize
from runner.report.compare import ratio_ci, relative_half_width
from runner.report.metrics import Metric

DEFAULT_LEVEL = "(default)"  # the level of runs that did not override the factor
ALPHA = 0.05


def level_key(value: object) -> tuple[int, float, str]:
    """Sort key of factor levels: numbers in numeric order, then text, the default last."""
    if value is None or value == DEFAULT_LEVEL or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    try:
        return (0, float(str(value)), "")
    except ValueError:
        return (1, 0.0, str(value))


def levels_of(values: pd.Series) -> pd.Series:
    """A factor column as level strings (``(default)`` where the run did not set it)."""
    return values.astype(object).where(values.notna(), DEFAULT_LEVEL).astype(str)


def ordered_levels(values: pd.Series) -> list[str]:
    """The distinct levels of a factor column, in :func:`level_key` order."""
    return sorted(levels_of(values).unique(), key=level_key)


def _ok(df: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df[metric.column].notna()]


def level_means(
    df: pd.DataFrame, factor: str, metric: Metric, by: str | None = None
) -> pd.DataFrame:
    """Per level of ``factor`` (and of ``by``): ``runs``, ``mean``, ``ci95_low``,
    ``ci95_high`` and ``ci_basis``: a 95% t-CI over the ok runs (``runs``), or for a level
    with a single run that run's own CI (``within run``; NaN when it has none)."""
    ok = _ok(df, metric)
    keys = [factor] if by is None else [factor, by]
    frame = pd.DataFrame({k: levels_of(ok[k]) for k in keys})
    frame["value"] = ok[metric.column].astype(float)
    rows = []
    for key, values in frame.groupby(keys, sort=False)["value"]:
        key = key if isinstance(key, tuple) else (key,)
        stats = summarize(list(values), unit="run")
        low, high, basis = stats.ci95_low, stats.ci95_high, "runs"
        if stats.count == 1:
            basis = "within run"
            run = ok.loc[values.index[0]]
            p = metric.ci_prefix
            low, high = (run[f"{p}_ci95_{s}"] if p else math.nan for s in ("low", "high"))
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "runs": stats.count,
                "mean": stats.mean,
                "ci95_low": low,
                "ci95_high": high,
                "ci_basis": basis,
            }
        )
    columns = [*keys, "runs", "mean", "ci95_low", "ci95_high", "ci_basis"]
    out = pd.DataFrame(rows, columns=columns)
    if len(out):
        order = [tuple(level_key(v) for v in r) for r in out[keys].itertuples(index=False)]
        out = out.iloc[sorted(range(len(out)), key=order.__getitem__)]
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Effect:
    """One level of one factor against the factor's reference level, for one metric.

    ``ratio`` = level / reference: the geometric mean of the ratios of the ``pairs``
    matched cells, or with no match the ratio of the level means. ``ci_basis``: ``paired``
    (t over the matched log ratios, Bonferroni over the factor's levels; two or more
    pairs), ``runs`` (no pair: delta method from the CIs over runs), ``within run`` (one
    run on each side: from the two runs' own CIs), or ``none`` (no CI).
    """

    factor: str
    level: str
    reference: str
    metric: str
    runs: int
    mean: float
    ratio: float
    ratio_ci95_low: float
    ratio_ci95_high: float
    pairs: int
    ci_basis: str

    @property
    def detectable(self) -> bool:
        """The ratio's interval excludes 1 (False without an interval)."""
        return self.ratio_ci95_low > 1 or self.ratio_ci95_high < 1  # False for NaN

    @property
    def strength(self) -> float:
        """``|log ratio|``: how far from "no effect" (0 for an unknown ratio)."""
        return abs(math.log(self.ratio)) if self.ratio > 0 else 0.0


def _t_half(n: int, sd: float, comparisons: int) -> float:
    """Half-width of a Bonferroni t-interval of a mean of ``n`` values with std ``sd``."""
    return float(stdtrit(n - 1, 1 - ALPHA / comparisons / 2)) * sd / math.sqrt(n)


def _within_runs(rows: list[pd.Series], metric: Metric) -> tuple[float, float, float] | None:
    """Ratio of two single runs with a CI from their own CIs (delta method), if finite."""
    if not metric.ci_prefix:
        return None
    num, den = (float(r[metric.column]) for r in rows)
    rel = [relative_half_width(r, metric.ci_prefix) for r in rows]
    ratio = ratio_ci(num, rel[0], den, rel[1])
    return ratio if all(map(math.isfinite, ratio)) else None


def _unpaired(
    ok: pd.DataFrame, runs: pd.DataFrame, level: str, reference: str, metric: Metric
) -> tuple[float, float, float, str]:
    """Ratio of the level means; CI over runs, or within-run for single runs."""
    sides = [runs[runs["level"] == lv] for lv in (level, reference)]
    means = [float(s["value"].mean()) for s in sides]
    if all(len(s) >= 2 for s in sides):
        stats = [summarize(list(s["value"]), unit="run") for s in sides]
        rel = [
            (st.ci95_high - st.mean) / st.mean if st.mean and st.ci95_high is not None else math.nan
            for st in stats
        ]
        return (*ratio_ci(means[0], abs(rel[0]), means[1], abs(rel[1])), "runs")
    if all(len(s) == 1 for s in sides):
        within = _within_runs([ok.loc[s.index[0]] for s in sides], metric)
        if within is not None:
            return (*within, "within run")
    ratio = means[0] / means[1] if means[0] > 0 and means[1] > 0 else math.nan
    return ratio, math.nan, math.nan, "none"


def factor_effects(
    df: pd.DataFrame,
    factor: str,
    factors: list[str],
    metric: Metric,
    reference: str | None = None,
) -> list[Effect]:
    """Every level of ``factor`` against ``reference`` (default: its first level) for
    ``metric``, paired over the other ``factors``; the reference itself is left out."""
    ok = _ok(df, metric)
    ok = ok[ok[metric.column] > 0]
    if ok.empty:
        return []
    levels = ordered_levels(ok[factor])
    reference = reference if reference in levels else levels[0]
    others = [f for f in factors if f != factor]
    runs = pd.DataFrame({"level": levels_of(ok[factor]), "value": ok[metric.column].astype(float)})
    # A cell: one combination of the other factors' levels (all runs when there are none).
    if others:
        keys = pd.DataFrame({f: levels_of(ok[f]) for f in others})
        runs["cell"] = keys.groupby(others, sort=True).ngroup()
    else:
        runs["cell"] = 0
    runs["log"] = np.log(runs["value"])
    by_cell = runs.groupby(["cell", "level"])
    logs = by_cell["log"].mean().unstack("level")[levels]  # cells x levels (NaN: no run)
    counts = by_cell.size().unstack("level")[levels]
    # Every level against the reference at once: matched cells hold both.
    diffs = logs.to_numpy() - logs[reference].to_numpy()[:, None]
    matched = ~np.isnan(diffs)
    pairs = matched.sum(axis=0)
    sums = np.where(matched, diffs, 0.0).sum(axis=0)
    means = np.divide(sums, pairs, out=np.full(len(levels), np.nan), where=pairs > 0)
    squares = np.where(matched, (diffs - means) ** 2, 0.0).sum(axis=0)
    sds = np.sqrt(np.divide(squares, pairs - 1, out=np.full(len(levels), np.nan), where=pairs > 1))
    level_runs = runs["level"].value_counts()
    level_means = runs.groupby("level")["value"].mean()
    comparisons = max(len(levels) - 1, 1)
    out = []
    for j, level in enumerate(levels):
        if level == reference:
            continue
        n = int(pairs[j])
        if n >= 2:
            half = _t_half(n, float(sds[j]), comparisons)
            ratio, low, high = (math.exp(means[j] + d) for d in (0.0, -half, half))
            basis = "paired"
        elif n == 1:
            cell = logs.index[np.flatnonzero(matched[:, j])[0]]
            ratio, low, high, basis = math.exp(means[j]), math.nan, math.nan, "none"
            if counts.loc[cell, level] == 1 and counts.loc[cell, reference] == 1:
                in_cell = runs[runs["cell"] == cell]
                rows = [
                    ok.loc[in_cell.index[in_cell["level"] == lv][0]] for lv in (level, reference)
                ]
                within = _within_runs(rows, metric)
                if within is not None:
                    (ratio, low, high), basis = within, "within run"
        else:
            ratio, low, high, basis = _unpaired(ok, runs, level, reference, metric)
        out.append(
            Effect(
                factor=factor,
                level=level,
                reference=reference,
                metric=metric.column,
                runs=int(level_runs[level]),
                mean=float(level_means[level]),
                ratio=ratio,
                ratio_ci95_low=low,
                ratio_ci95_high=high,
                pairs=n,
                ci_basis=basis,
            )
        )
    return out


def strongest(effects: list[Effect]) -> Effect | None:
    """The level whose ratio is farthest from 1 (first in level order on ties)."""
    return max(effects, key=lambda e: e.strength, default=None)


def effects_frame(effects: list[Effect]) -> pd.DataFrame:
    """The effects as a table (``effects.csv``)."""
    columns = list(Effect.__dataclass_fields__)
    return pd.DataFrame([asdict(e) for e in effects], columns=columns)


def interaction_means(df: pd.DataFrame, rows: str, columns: str, metric: Metric) -> pd.DataFrame:
    """Mean of ``metric`` over the ok runs of each (row level, column level) cell,
    marginalised over the other factors; levels in :func:`level_key` order."""
    ok = _ok(df, metric)
    frame = pd.DataFrame({"r": levels_of(ok[rows]), "c": levels_of(ok[columns])})
    frame["value"] = ok[metric.column].astype(float)
    table = frame.pivot_table(index="r", columns="c", values="value", aggfunc="mean")
    table = table.loc[sorted(table.index, key=level_key), sorted(table.columns, key=level_key)]
    table.index.name, table.columns.name = rows, columns
    return table
