"""Figures of what each factor does: main effects per level, the interaction heatmap of the
two factors that matter most, and box plots of the runs at each level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.data import ReportData
from runner.report.effects import (
    interaction_means,
    level_key,
    level_means,
    levels_of,
    strongest,
)
from runner.report.figure_kit import (
    NoData,
    Plot,
    figure,
    grid,
    level_ticks,
    log_scale_if_wide,
    save,
    slug,
    suptitle,
    wrapped,
)
from runner.report.format import fmt_num
from runner.report.metrics import Metric, energy_metric
from runner.report.quality_section import comparable_parts

MAX_PANELS = 8  # factors drawn in one figure (the ones that matter most)
MAX_FACET_LEVELS = 4  # a second factor splits the main effects only with this few levels
MIN_BOX_RUNS = 5  # box plots need about this many runs per level
ANNOTATE_CELLS = 80  # heatmaps with up to this many cells print their values


def _numeric(levels: Sequence[str]) -> bool:
    return all(level_key(lv)[0] == 0 for lv in levels)


def _facet(data: ReportData, metric: Metric, factor: str) -> str | None:
    """The factor splitting ``factor``'s panel: the one that matters most for ``metric``
    among those with few levels, if its effect is detectable (in a small sweep, where
    little is detectable, always: the lines then show the runs themselves)."""
    for other in data.ranked_factors(metric):
        if other == factor or data.ok[other].astype(str).nunique() > MAX_FACET_LEVELS:
            continue
        top = strongest(data.effects(metric, other))
        return other if data.small or (top is not None and top.detectable) else None
    return None


def _mean_ci(ax, xs: Sequence[float], stats: pd.DataFrame, joined: bool, **style) -> None:
    """Means as markers (joined by a line for numeric levels), with a bar only where the
    level has a CI (3 or more runs, or one run's own)."""
    xs = list(xs)
    label = style.pop("label", None)
    ax.plot(xs, stats["mean"], "o-" if joined else "o", markersize=4, label=label, **style)
    has = (stats["ci95_low"].notna() & stats["ci95_high"].notna()).to_numpy()
    if has.any():
        part = stats[has]
        ax.errorbar(
            [x for x, h in zip(xs, has, strict=True) if h],
            part["mean"],
            yerr=[part["mean"] - part["ci95_low"], part["ci95_high"] - part["mean"]],
            fmt="none",
            capsize=2,
            ecolor=style.get("color"),
            lw=style.get("lw", 1),
        )


def _runs_as_points(
    ax, data: ReportData, factor: str, metric: Metric, stats: pd.DataFrame, position
) -> bool:
    """The runs of levels with too few runs for a CI over runs (2), as small points;
    ``stats``: the factor's :func:`level_means`."""
    few = stats[(stats["runs"] > 1) & (stats["runs"] < MIN_CI_UNITS)][factor]
    if few.empty:
        return False
    ok = data.ok[data.ok[metric.column].notna()]
    levels = levels_of(ok[factor])
    for level in few:
        values = ok.loc[levels == level, metric.column]
        ax.scatter([position[level]] * len(values), values, s=14, c="0.55", zorder=1, lw=0)
    return True


def plot_main_effects(data: ReportData, metric: Metric, path: Path) -> Path:
    """One panel per factor (those that matter most first): ``metric``'s mean per level
    over the runs at that level, with a 95% CI over runs where a level has 3 or more (one
    run: its own CI; two: the runs themselves as points); split by a second factor with
    few levels when that one matters."""
    if not data.effect_factors:
        raise NoData("fewer than two values of any factor among ok runs")
    if len(comparable_parts(data.table, metric)) > 1:
        raise NoData(f"{metric.title} of runs that are not comparable ({metric.comparable_by})")
    factors = data.ranked_factors(metric)[:MAX_PANELS]
    fig = figure(3.6 * min(len(factors), 4) + 0.5, 3.0 * math.ceil(len(factors) / 4) + 1.2)
    # A run's own CI of a paired figure (perplexity: the same windows in every run) hides
    # differences the paired comparison resolves: not drawn.
    own_ci = not metric.paired
    shown_bases: set[str] = set()
    facets: list[str] = []
    spans: list = []
    two_run_level = False
    for ax, factor in zip(grid(fig, len(factors)), factors, strict=True):
        typed = data.typed.get(factor, ())
        overall = _drawable(level_means(data.table, factor, metric, typed=typed), own_ci)
        levels = list(overall[factor])
        position = {lv: i for i, lv in enumerate(levels)}
        joined = _numeric(levels)
        facet = _facet(data, metric, factor)
        if facet is not None:
            facets.append(facet)
            split = _drawable(
                level_means(data.table, factor, metric, by=facet, typed=typed), own_ci
            )
            shown_bases |= _bases(split)
            facet_levels = sorted(split[facet].unique(), key=level_key)
            width = 0.3 / max(len(facet_levels) - 1, 1)
            for j, lv in enumerate(facet_levels):
                part = split[split[facet] == lv]
                xs = [position[v] - 0.15 + j * width for v in part[factor]]
                _mean_ci(ax, xs, part, joined, color=f"C{j}", lw=1, label=f"{facet}={lv}")
        else:
            two_run_level |= _runs_as_points(ax, data, factor, metric, overall, position)
        shown_bases |= _bases(overall)
        _mean_ci(
            ax,
            range(len(levels)),
            overall,
            joined,
            color="black",
            lw=1.5,
            label="mean over the level's runs",
        )
        ax.legend(fontsize=6, loc="best")
        # Intervals over runs that differ in other factors by a lot: a log axis keeps the
        # means readable (the intervals are log-scale ones, symmetric there).
        spans.append((ax, pd.concat([overall["mean"], overall["ci95_low"], overall["ci95_high"]])))
        level_ticks(ax, levels)
        ax.set_xlabel(data.factor_name(factor), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(metric.axis_label, fontsize=8)
    values = pd.concat([v for _, v in spans]).dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() > 20:
        for ax, _ in spans:
            log_scale_if_wide(ax, values, "y")
    shown = (
        ""
        if len(factors) == len(data.effect_factors)
        else f" ({len(factors)} of {len(data.effect_factors)} factors)"
    )
    parts = ["black: the mean over each level's runs"]
    if facets:
        parts.append(f"coloured: split by {', '.join(dict.fromkeys(facets))}")
    bars = []
    if "runs" in shown_bases:
        bars.append(f"95% CI over the runs ({MIN_CI_UNITS} or more)")
    if "within run" in shown_bases:
        bars.append("a single run's own CI")
    parts.append("bars: " + " or ".join(bars) if bars else "no bars: too few runs for a CI")
    if not own_ci:
        parts.append("runs' own CIs left out (paired figure)")
    if two_run_level:
        parts.append("grey points: the runs of a level with two")
    suptitle(fig, f"Main effects on {metric.title}{shown}. " + "; ".join(parts))
    return save(fig, path)


def _drawable(stats: pd.DataFrame, own_ci: bool) -> pd.DataFrame:
    """``stats`` with the single runs' own CIs blanked unless ``own_ci``."""
    if own_ci:
        return stats
    out = stats.copy()
    within = out["ci_basis"] == "within run"
    out.loc[within, ["ci95_low", "ci95_high"]] = math.nan
    return out


def _bases(stats: pd.DataFrame) -> set[str]:
    """The kinds of CI that are drawn for ``stats`` (``runs``, ``within run``)."""
    has = stats["ci95_low"].notna() & stats["ci95_high"].notna()
    return set(stats.loc[has, "ci_basis"])


def plot_interaction(data: ReportData, metric: Metric, path: Path) -> Path:
    """Heatmap of ``metric``'s mean for each pair of levels of the two factors that
    matter most for it (the one with more levels across)."""
    if len(data.effect_factors) < 2:
        raise NoData("fewer than two swept factors among ok runs (aliased ones count once)")
    a, b = data.ranked_factors(metric)[:2]
    if data.ok[a].astype(str).nunique() > data.ok[b].astype(str).nunique():
        a, b = b, a
    table = interaction_means(data.table, a, b, metric, data.typed)
    rows, cols = len(table.index), len(table.columns)
    fig = figure(max(6.0, min(2.5 + 0.4 * cols, 14)), max(3.0, min(1.5 + 0.4 * rows, 9)))
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=metric.axis_label)
    level_ticks(ax, [str(c) for c in table.columns], "x")
    level_ticks(ax, [str(r) for r in table.index], "y")
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    if rows * cols <= ANNOTATE_CELLS:
        values = table.to_numpy(dtype=float)
        middle = (pd.Series(values.ravel()).max() + pd.Series(values.ravel()).min()) / 2
        for i in range(rows):
            for j in range(cols):
                if math.isfinite(values[i, j]):
                    ax.text(
                        j,
                        i,
                        fmt_num(values[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if values[i, j] > middle else "white",
                    )
    ax.set_title(wrapped(fig, f"{metric.title.capitalize()}, mean per cell: {a} × {b}", 10))
    return save(fig, path)


def plot_distributions(data: ReportData, metric: Metric, path: Path) -> Path:
    """One panel per factor: a box of the runs' ``metric`` values at each level."""
    if not data.effect_factors:
        raise NoData("fewer than two values of any factor among ok runs")
    ok = data.ok[data.ok[metric.column].notna()]
    if len(ok) < MIN_BOX_RUNS * min(ok[f].astype(str).nunique() for f in data.effect_factors):
        raise NoData(f"fewer than {MIN_BOX_RUNS} runs per level: the main effects show them")
    factors = data.ranked_factors(metric)[:MAX_PANELS]
    fig = figure(3.6 * min(len(factors), 4) + 0.5, 3.0 * math.ceil(len(factors) / 4) + 0.8)
    for ax, factor in zip(grid(fig, len(factors)), factors, strict=True):
        levels = data.levels(factor)
        values = levels_of(ok[factor])
        boxes = [list(ok.loc[values == lv, metric.column]) for lv in levels]
        ax.boxplot(
            boxes,
            positions=range(len(levels)),
            widths=0.6,
            showmeans=True,
            flierprops={"markersize": 2},
            meanprops={"markersize": 4},
        )
        level_ticks(ax, levels)
        ax.set_xlabel(data.factor_name(factor), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(metric.axis_label, fontsize=8)
    suptitle(
        fig,
        f"{metric.title.capitalize()} of the runs at each level (box: quartiles, whiskers: "
        "1.5 IQR, ▲: mean)",
    )
    return save(fig, path)


def main_effect_figures(data: ReportData) -> list[Plot]:
    return [
        Plot(
            f"main effects on {m.column}",
            f"main_effects_{slug(m.column)}.png",
            lambda p, m=m: plot_main_effects(data, m, p),
        )
        for m in data.summary_metrics
        if m.column != "peak_mem_mib"
    ]


def interaction_figures(data: ReportData) -> list[Plot]:
    metrics = [m for m in (data.latency, energy_metric(data.table)) if m is not None]
    return [
        Plot(
            f"interaction on {m.column}",
            f"interaction_{slug(m.column)}.png",
            lambda p, m=m: plot_interaction(data, m, p),
        )
        for m in metrics
    ]


def distribution_figures(data: ReportData) -> list[Plot]:
    if data.latency is None:
        return []
    m = data.latency
    return [
        Plot(
            f"distribution of {m.column}",
            f"distribution_{slug(m.column)}.png",
            lambda p: plot_distributions(data, m, p),
        )
    ]
