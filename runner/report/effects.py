"""What each swept factor does to a metric, from the ok runs of the report table.

Two views, both generic over a :class:`~runner.report.metrics.Metric`:

- :func:`level_means`: per level of a factor (optionally per level of a second factor),
  the mean of the runs' values, marginalised over every other factor, with a 95%
  Student-t CI **over runs** (``runner.measure.stats.summarize``, unit ``run``, on the log
  scale: a positive figure's interval stays positive; none below 3 runs). This is what the
  main-effect figures draw. A level with a single run gets that run's own CI.
- :func:`factor_effects`: per level, the ratio to the factor's reference level (the
  baseline's level, else the first level the command typed), **paired** over the other
  factors: runs that agree on every other swept factor are matched (replicates averaged
  first), and the ratio is the geometric mean of the matched ratios. What the CI rests on
  (``ci_basis``) depends on what the data has:

  - ``paired``: 3 or more pairs: a t-interval on the log ratios, simultaneous over the
    factor's levels (Bonferroni: 95% for two levels). Pairing removes what the other
    factors do, so a factor that halves latency reads ×0.5 with a narrow interval even
    when the other factors move latency tenfold.
  - ``within run``: 1 or 2 pairs of single runs: from the runs' own CIs (delta method on
    the log; for perplexity, the paired per-window comparison of the two runs). It says
    how much the calls of each run varied, not how much a rerun would move: the report
    marks it.
  - ``unpaired``: no two runs differ in this factor alone (an incomplete grid, a
    search): the ratio of the level means, CI over 3 or more runs per level. The other
    factors are not matched, so the ratio can carry their effects too.
  - ``none``: no CI, and ``note`` says why (too few pairs, no within-run CI, not
    comparable). Such an effect is *not estimable*: never "no effect".

Factors that vary together in every run (``model`` with ``workload.num_prompts`` when two
sweeps are combined) are **aliased**: their effects cannot be told apart, so
:func:`aliased_groups` makes them one group, reported once under its first factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from runner.measure.stats import MIN_CI_UNITS, summarize
from runner.report.compare import log_half_width, ratio_ci
from runner.report.metrics import Metric

DEFAULT_LEVEL = "(default)"  # the level of runs that did not override the factor
ALPHA = 0.05
# (index of a run at the level, index of a run at the reference) -> log half-width of the
# 95% CI of log(level / reference) from the two runs alone (NaN: none)
Within = Callable[[object, object], float]


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


def ordered_levels(values: pd.Series, typed: Sequence[str] = ()) -> list[str]:
    """The distinct levels of a factor column: numbers in numeric order; text in the order
    ``typed`` (the command line's) gives, the others after in :func:`level_key` order."""
    present = sorted(levels_of(values).unique(), key=level_key)
    if all(level_key(v)[0] != 1 for v in present):
        return present
    first = [v for v in typed if v in present]
    return first + [v for v in present if v not in first]


def _ok(df: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df[metric.column].notna()]


def level_means(
    df: pd.DataFrame,
    factor: str,
    metric: Metric,
    by: str | None = None,
    typed: Sequence[str] = (),
) -> pd.DataFrame:
    """Per level of ``factor`` (and of ``by``): ``runs``, ``mean``, ``ci95_low``,
    ``ci95_high`` and ``ci_basis``: a 95% t-CI over the ok runs (``runs``; NaN with fewer
    than 3), or for a level with a single run that run's own CI (``within run``; NaN when
    it has none). Levels in :func:`ordered_levels` order."""
    ok = _ok(df, metric)
    keys = [factor] if by is None else [factor, by]
    frame = pd.DataFrame({k: levels_of(ok[k]) for k in keys})
    frame["value"] = ok[metric.column].astype(float)
    rows = []
    for key, values in frame.groupby(keys, sort=False)["value"]:
        key = key if isinstance(key, tuple) else (key,)
        stats = summarize(list(values), unit="run", positive=bool((values > 0).all()))
        low, high, basis = stats.ci95_low, stats.ci95_high, "runs"
        if stats.count == 1:
            basis = "within run"
            run = ok.loc[values.index[0]]
            columns = metric.ci_columns
            low, high = (run[c] for c in columns) if columns else (math.nan, math.nan)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "runs": stats.count,
                "mean": stats.mean,
                "ci95_low": math.nan if low is None else low,
                "ci95_high": math.nan if high is None else high,
                "ci_basis": basis,
            }
        )
    columns = [*keys, "runs", "mean", "ci95_low", "ci95_high", "ci_basis"]
    out = pd.DataFrame(rows, columns=columns)
    if len(out):
        rank = {v: i for i, v in enumerate(ordered_levels(ok[factor], typed))}
        second = {v: i for i, v in enumerate(ordered_levels(ok[by]))} if by else {}
        order = [
            (rank.get(r[0], len(rank)), second.get(r[1], 0) if by else 0)
            for r in out[keys].itertuples(index=False)
        ]
        out = out.iloc[sorted(range(len(out)), key=order.__getitem__)]
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Effect:
    """One level of one factor against the factor's reference level, for one metric.

    ``ratio`` = level / reference: the geometric mean of the ratios of the ``pairs``
    matched cells, or with no match the ratio of the level means. ``ci_basis``: see the
    module docstring (``paired``, ``within run``, ``unpaired``, ``none``); ``note``: why
    there is no CI, or what the CI leaves out. ``aliases``: the factors that vary with this
    one in every run ("; "-joined), whose effects are the same numbers.
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
    note: str = ""
    aliases: str = ""

    @property
    def estimable(self) -> bool:
        """A ratio with an interval."""
        return all(map(math.isfinite, (self.ratio, self.ratio_ci95_low, self.ratio_ci95_high)))

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


def metric_within(df: pd.DataFrame, metric: Metric) -> Within:
    """Two runs compared from their own CIs of ``metric`` (independent: in quadrature)."""

    def within(a: object, b: object) -> float:
        return math.hypot(log_half_width(df.loc[a], metric), log_half_width(df.loc[b], metric))

    return within


def aliased_groups(df: pd.DataFrame, factors: Sequence[str]) -> list[list[str]]:
    """``factors`` grouped by the runs they split alike: factors whose levels change
    together in every run of ``df`` (same partition of the runs) form one group, in the
    order of ``factors``; a factor that varies on its own is a group of one."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for factor in factors:
        codes = pd.factorize(levels_of(df[factor]))[0] if len(df) else np.array([], int)
        groups.setdefault(tuple(int(c) for c in codes), []).append(factor)
    return list(groups.values())


def _unpaired(
    runs: pd.DataFrame, level: str, reference: str
) -> tuple[float, float, float, str, str]:
    """Ratio of the level means; CI over 3 or more runs on each side (log scale)."""
    sides = [runs.loc[runs["level"] == lv, "value"] for lv in (level, reference)]
    if any(s.empty for s in sides):
        return math.nan, math.nan, math.nan, "none", "no run at one of the two levels"
    means = [float(s.mean()) for s in sides]
    ratio = means[0] / means[1]
    if all(len(s) >= MIN_CI_UNITS for s in sides):
        stats = [summarize(list(s), unit="run", positive=True) for s in sides]
        h = [
            (math.log(st.ci95_high) - math.log(st.ci95_low)) / 2
            if st.ci95_low and st.ci95_high
            else math.nan
            for st in stats
        ]
        _, low, high = ratio_ci(means[0], h[0], means[1], h[1])
        note = "no pair: level means, other factors unmatched"
        return ratio, low, high, "unpaired", note
    note = f"no pair, and under {MIN_CI_UNITS} runs per level"
    return ratio, math.nan, math.nan, "none", note


def factor_effects(
    df: pd.DataFrame,
    factor: str,
    others: Sequence[str],
    metric: Metric,
    reference: str | None = None,
    *,
    within: Within | None = None,
    typed: Sequence[str] = (),
    aliases: Sequence[str] = (),
    blocks: Sequence[str] = (),
) -> list[Effect]:
    """Every level of ``factor`` against ``reference`` (default: its first level, in
    :func:`ordered_levels` order with ``typed``) for ``metric``, paired over the ``others``
    (the other factors, one per aliased group); the reference itself is left out.

    ``within`` compares two single runs from their own data (default: their CIs of
    ``metric``, :func:`metric_within`). With ``metric.comparable_by``, runs are matched only
    within one value of that column, and levels that share none are not comparable.
    ``blocks``: columns a pair must also share (``repeat``: runs are compared within one
    repeat, so what changed between repeats cancels and the pairs hold it).
    """
    ok = _ok(df, metric)
    ok = ok[ok[metric.column] > 0]
    if ok.empty:
        return []
    within = within or metric_within(df, metric)
    levels = ordered_levels(ok[factor], typed)
    reference = reference if reference in levels else levels[0]
    keys = [*others, *(b for b in blocks if b in ok.columns)]
    comparable = metric.comparable_by if metric.comparable_by in ok.columns else None
    if comparable:
        keys.append(comparable)
    runs = pd.DataFrame({"level": levels_of(ok[factor]), "value": ok[metric.column].astype(float)})
    # A cell: one combination of the other factors' levels (all runs when there are none).
    if keys:
        cells = pd.DataFrame({f: levels_of(ok[f]) for f in keys})
        runs["cell"] = cells.groupby(keys, sort=True).ngroup()
    else:
        runs["cell"] = 0
    if comparable:
        runs["group"] = levels_of(ok[comparable])
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
        note = ""
        if n >= MIN_CI_UNITS:
            half = _t_half(n, float(sds[j]), comparisons)
            ratio, low, high = (math.exp(means[j] + d) for d in (0.0, -half, half))
            basis = "paired"
        elif n >= 1:
            ratio, low, high, basis = math.exp(means[j]), math.nan, math.nan, "none"
            cells = logs.index[np.flatnonzero(matched[:, j])]
            single = all(counts.loc[c, level] == 1 and counts.loc[c, reference] == 1 for c in cells)
            widths = []
            if single:
                for cell in cells:
                    in_cell = runs[runs["cell"] == cell]
                    a, b = (in_cell.index[in_cell["level"] == lv][0] for lv in (level, reference))
                    widths.append(within(a, b))
            if widths and all(map(math.isfinite, widths)):
                h = math.sqrt(sum(w * w for w in widths)) / n
                low, high = ratio * math.exp(-h), ratio * math.exp(h)
                basis = "within run"
                note = f"{n} pair{'s' if n > 1 else ''}: CI within runs"
            else:
                why = (
                    "no within-run CI"
                    if metric.ci_columns is None
                    else "a run lacks a positive CI of its own"
                    if single
                    else "replicates in a cell"
                )
                note = f"{n} pair{'s' if n > 1 else ''} of {MIN_CI_UNITS} needed, {why}"
        elif comparable and not set(runs.loc[runs["level"] == level, "group"]) & set(
            runs.loc[runs["level"] == reference, "group"]
        ):
            ratio, low, high, basis = math.nan, math.nan, math.nan, "none"
            note = f"not comparable: {comparable} differs"
        else:
            ratio, low, high, basis, note = _unpaired(runs, level, reference)
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
                note=note,
                aliases="; ".join(aliases),
            )
        )
    return out


def strongest(effects: list[Effect]) -> Effect | None:
    """The level whose ratio is farthest from 1 (first in level order on ties)."""
    return max(effects, key=lambda e: e.strength, default=None)


def headline(effects: list[Effect]) -> Effect | None:
    """The level that says what the factor does (detectable, no detectable difference, or
    not estimable): the strongest detectable level; else, when every level has a CI, the
    strongest (no detectable difference); else the strongest level without a CI (not
    estimable: a factor is never said to have no effect while a level is unknown)."""
    detectable = [e for e in effects if e.detectable]
    if detectable:
        return strongest(detectable)
    if all(e.estimable for e in effects):
        return strongest(effects)
    return strongest([e for e in effects if not e.estimable])


def effects_frame(effects: list[Effect]) -> pd.DataFrame:
    """The effects as a table (``effects.csv``)."""
    columns = list(Effect.__dataclass_fields__)
    return pd.DataFrame([asdict(e) for e in effects], columns=columns)


def interaction_means(
    df: pd.DataFrame,
    rows: str,
    columns: str,
    metric: Metric,
    typed: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Mean of ``metric`` over the ok runs of each (row level, column level) cell,
    marginalised over the other factors; levels in :func:`ordered_levels` order (with the
    command's ``typed`` order)."""
    typed = typed or {}
    ok = _ok(df, metric)
    frame = pd.DataFrame({"r": levels_of(ok[rows]), "c": levels_of(ok[columns])})
    frame["value"] = ok[metric.column].astype(float)
    table = frame.pivot_table(index="r", columns="c", values="value", aggfunc="mean")
    row_order = ordered_levels(ok[rows], typed.get(rows, ()))
    column_order = ordered_levels(ok[columns], typed.get(columns, ()))
    table = table.loc[
        [r for r in row_order if r in table.index], [c for c in column_order if c in table.columns]
    ]
    table.index.name, table.columns.name = rows, columns
    return table
