"""Pareto-front figures: energy per token against latency, and against each quality figure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.compare import front_mask, pareto_metrics
from runner.report.data import ReportData
from runner.report.figure_kit import (
    NoData,
    Plot,
    figure,
    log_scale_if_wide,
    place_labels,
    save,
    short_labels,
    slug,
    wrapped,
)
from runner.report.metrics import UNRESOLVED, Metric, energy_metric, quality_metrics
from runner.report.quality_section import comparable_parts


def plot_pareto(
    df: pd.DataFrame,
    x: Metric,
    y: Metric,
    path: Path,
    factors: Sequence[str] = (),
    baseline_index: object = None,
    x_ci: bool = True,
    unit: str = "runs",
) -> Path:
    """Every ok row of ``df`` (``unit``: runs, or points with their means over repeats) as
    a grey point, the Pareto front of ``x`` against ``y`` (each in its own direction) in
    red, labelled by its factors where the labels fit; ``x_ci``: the front's CIs of ``x``
    as bars (a run's own, or a point's over repeats)."""
    data = df[(df["status"] == "ok") & df[x.column].notna() & df[y.column].notna()]
    if data.empty:
        raise NoData(f"no ok run has both {x.column} and {y.column}")
    if len(comparable_parts(data, x)) > 1:
        raise NoData(f"{x.title} of runs that are not comparable ({x.comparable_by} differs)")
    on_front = front_mask(data, x, y)
    front = data[on_front].sort_values(x.column, kind="stable")
    fig = figure(9, 6.5)
    ax = fig.subplots()
    rest = data[~on_front]
    ax.scatter(
        rest[x.column],
        rest[y.column],
        s=10 if len(data) > 50 else 30,
        c="tab:gray",
        alpha=0.5,
        lw=0,
        label=f"other {unit} ({len(rest)})",
    )
    shown_ci = False
    if x_ci and x.ci_columns:
        lo, hi = x.ci_columns
        has = front[lo].notna() & front[hi].notna()
        if has.any():
            shown_ci = True
            bars = front[has]
            ax.errorbar(
                bars[x.column],
                bars[y.column],
                xerr=[bars[x.column] - bars[lo], bars[hi] - bars[x.column]],
                fmt="none",
                ecolor="salmon",
                lw=1,
                zorder=2,
                label="95% CI over repeats" if unit == "points" else "95% CI within the run",
            )
    ax.step(front[x.column], front[y.column], where="post", color="tab:red", lw=1, zorder=3)
    ax.scatter(
        front[x.column],
        front[y.column],
        s=28,
        c="tab:red",
        zorder=4,
        label=f"Pareto front ({len(front)})",
    )
    if baseline_index is not None and baseline_index in data.index:
        base = data.loc[baseline_index]
        ax.scatter(
            [base[x.column]],
            [base[y.column]],
            marker="*",
            s=140,
            c="black",
            zorder=5,
            label="baseline",
        )
    log_scale_if_wide(ax, data[x.column], "x")
    log_scale_if_wide(ax, data[y.column], "y")
    ax.set_xlabel(x.axis_label)
    ax.set_ylabel(y.axis_label)
    if x.lower_is_better == y.lower_is_better:
        better = f"{x.best_word.removesuffix('est')}er is better on both axes"
    else:
        better = f"better: {x.best_word} {x.title}, {y.best_word} {y.title}"
    ax.set_title(wrapped(fig, f"{y.title.capitalize()} vs {x.title} ({better})", 10), fontsize=10)
    ax.grid(alpha=0.3)
    # Below the axes: a legend inside would hide points or labels.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=8, frameon=False)
    labels = short_labels(front, factors) if len(front) > 1 else list(front["label"])
    points = list(zip(front[x.column], front[y.column], labels, strict=True))
    notes = []
    if x_ci and x.ci_columns and not shown_ci:
        notes.append(f"no front point has a CI of its own (fewer than {MIN_CI_UNITS} units)")
    if not x_ci and x.ci_columns:
        notes.append(
            f"each run's {x.title} CI is left out: runs scored the same text, so compare "
            "them by the paired ratio in report.md"
        )
    note = fig.suptitle(" ", fontsize=8)  # its room is part of the layout labels are placed in
    placed = place_labels(fig, ax, points)
    if placed < len(front):
        notes.append(
            f"{placed} of {len(front)} front points labelled (the others would overlap); "
            "all are listed in report.md"
        )
    note.set_text("\n".join(notes) or " ")
    return save(fig, path)


def pareto_figures(data: ReportData) -> list[Plot]:
    """The energy/latency front of what report.md ranks: runs, or with repeats points."""
    metrics = pareto_metrics(data.ranking)
    if metrics is None:
        return [Plot("pareto", "pareto_energy_latency.png", _no(_no_energy(data)))]
    x, y = metrics
    base, unit = data.ranking_baseline_index, "points" if data.repeats else "runs"
    return [
        Plot(
            "pareto",
            "pareto_energy_latency.png",
            lambda p: plot_pareto(data.ranking, x, y, p, data.factors, base, unit=unit),
        )
    ]


def quality_pareto_figures(data: ReportData) -> list[Plot]:
    """Energy per token against each quality figure the runs have (perplexity, token
    agreement with the baseline), the front of lower energy and better quality in red."""
    table = data.ranking
    quality = quality_metrics(table)
    energy = energy_metric(table)
    base, unit = data.ranking_baseline_index, "points" if data.repeats else "runs"
    return [
        Plot(
            f"energy/{m.column} pareto",
            f"pareto_energy_{slug(m.column)}.png",
            _no(_no_energy(data))
            if energy is None
            else lambda p, m=m: plot_pareto(
                table, m, energy, p, data.factors, base, x_ci=not m.paired, unit=unit
            ),
        )
        for m in quality
    ]


def _no_energy(data: ReportData) -> str:
    """Why no ok run has an energy figure to draw."""
    if UNRESOLVED in data.ok.columns and data.ok[UNRESOLVED].notna().any():
        return "the energy of every ok run is unresolved (report.md says why)"
    return "no ok run has energy per token (energy off or not measured)"


def _no(reason: str) -> Callable[[Path], Path]:
    def draw(path: Path) -> Path:
        raise NoData(reason)

    return draw
