"""PNG figures of a report (matplotlib Agg canvas, no pyplot state), readable at any size.

Figures aggregate instead of listing one mark per run, so a sweep of a thousand points
draws as clearly as one of four: main effects (mean and CI per level), an interaction
heatmap, box plots per level, the Pareto front with labels only where they fit, and the
per-request distributions of the few best runs only. Every PNG fits in :data:`MAX_PX`.

:data:`FIGURES` lists the figure makers, each ``ReportData -> list[Plot]``; a
:class:`Plot` draws one PNG or raises :class:`NoData` with the reason. A new figure is one
more maker in that list. :func:`make_plots` draws what it can, records why the others were
skipped, and never raises. Only ``ok`` runs are drawn.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.compare import front_mask, pareto_metrics
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
    place_labels,
    save,
    slug,
    suptitle,
    wrapped,
)
from runner.report.forked import map_forked
from runner.report.format import fmt_num
from runner.report.metrics import UNRESOLVED, Metric, energy_metric, quality_metrics
from runner.report.quality_section import comparable_parts
from runner.report.roofline_plot import roofline_figures
from runner.report.samples import LatencySamples, read_latency_samples
from runner.report.serving_plots import serving_figures
from runner.report.timeseries_plot import timeseries_figures

log = logging.getLogger(__name__)

MAX_PANELS = 8  # factors drawn in one figure (the ones that matter most)
MAX_FACET_LEVELS = 4  # a second factor splits the main effects only with this few levels
BEST_RUNS = 8  # runs whose per-request distributions are drawn (plus the baseline)
MIN_BOX_RUNS = 5  # box plots need about this many runs per level
ANNOTATE_CELLS = 80  # heatmaps with up to this many cells print their values

# ``vert=False`` is deprecated from matplotlib 3.10, which added ``orientation``.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2]) >= (3, 10)
    else {"vert": False}
)


# --------------------------------------------------------------------------- helpers


def _numeric(levels: Sequence[str]) -> bool:
    return all(level_key(lv)[0] == 0 for lv in levels)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """``workload.batch_size`` -> ``batch_size`` where the last part is unambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _short_labels(rows: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """Labels naming only the factors that differ among ``rows``."""
    varying = [f for f in factors if rows[f].astype(str).nunique() > 1]
    short = _short_keys(varying)
    if not varying:
        return [str(label) for label in rows["label"]]
    return [", ".join(f"{short[f]}={r[f]}" for f in varying) for _, r in rows.iterrows()]


# --------------------------------------------------------------------------- figures


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
    labels = _short_labels(front, factors) if len(front) > 1 else list(front["label"])
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


def plot_latency_distributions(
    samples: Mapping[str, LatencySamples], path: Path, title: str = "Per-request latency"
) -> Path:
    """Box plots of per-request TTFT and of every inter-token gap, one box per run."""
    panels = [
        ("time to first token (ms)", {k: s.ttft_ms for k, s in samples.items() if s.ttft_ms}),
        ("inter-token latency (ms)", {k: s.itl_ms for k, s in samples.items() if s.itl_ms}),
    ]
    panels = [(axis, d) for axis, d in panels if d]
    if not panels:
        raise NoData("no run has per-request latency samples (requests.parquet)")
    rows = max(len(d) for _, d in panels)
    fig = figure(6 * len(panels), max(3.0, 0.35 * rows + 1.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (axis, d) in zip(axes, panels, strict=True):
        labels = list(d)[::-1]
        ax.boxplot(
            [d[k] for k in labels], showmeans=True, flierprops={"markersize": 2}, **_HORIZONTAL
        )
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.set_xlabel(axis)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    suptitle(fig, f"{title} (box: quartiles, whiskers: 1.5 IQR, ▲: mean)")
    return save(fig, path)


# --------------------------------------------------------------------------- makers


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


def best_runs(data: ReportData, n: int = BEST_RUNS) -> pd.DataFrame:
    """The ``n`` best ok runs by the primary latency, and the baseline."""
    if data.latency is None:
        return data.ok.iloc[:n]
    chosen = data.latency.ranked(data.table).iloc[:n]
    base = data.baseline.index if data.baseline is not None else None
    if base is not None and base in data.table.index and base not in chosen.index:
        chosen = pd.concat([chosen, data.table.loc[[base]]])
    return chosen


def _samples_of(data: ReportData) -> dict[str, LatencySamples]:
    """Per-request samples of :func:`best_runs` only: the only per-request files read."""
    chosen = best_runs(data)
    labels = _short_labels(chosen, data.factors) if len(chosen) > 1 else list(chosen["label"])
    out: dict[str, LatencySamples] = {}
    for label, (_, row) in zip(labels, chosen.iterrows(), strict=True):
        if data.baseline is not None and row.name == data.baseline.index:
            label = f"{label} (baseline)"
        try:
            out[label] = read_latency_samples(Path(row["run_dir"]))
        except ValueError as exc:
            log.debug("latency distribution of %s skipped: %s", label, exc)
    return out


def _best_title(data: ReportData) -> str:
    if data.latency is None or len(data.ok) <= BEST_RUNS:
        return "Per-request latency of every ok run"
    base = " and the baseline" if data.baseline is not None else ""
    return f"Per-request latency of the {BEST_RUNS} runs with the lowest {data.latency.title}{base}"


def latency_distribution_figures(data: ReportData) -> list[Plot]:
    return [
        Plot(
            "latency distributions",
            "latency_distributions.png",
            lambda p: plot_latency_distributions(_samples_of(data), p, _best_title(data)),
        )
    ]


def _no(reason: str) -> Callable[[Path], Path]:
    def draw(path: Path) -> Path:
        raise NoData(reason)

    return draw


Maker = Callable[[ReportData], list[Plot]]
# In the order report.md shows them.
FIGURES: list[Maker] = [
    serving_figures,
    pareto_figures,
    quality_pareto_figures,
    roofline_figures,
    timeseries_figures,
    main_effect_figures,
    interaction_figures,
    distribution_figures,
    latency_distribution_figures,
]


@dataclass(frozen=True)
class _Drawn:
    """What drawing one figure gave (crosses back from a worker process, so plain data)."""

    path: Path | None = None
    skipped: str | None = None  # why not drawn: a NoData reason or a failure
    failed: bool = False


def _draw(plot: Plot, out_dir: Path) -> _Drawn:
    try:
        return _Drawn(path=plot.draw(out_dir / plot.filename))
    except NoData as exc:
        return _Drawn(skipped=str(exc))
    except Exception as exc:  # one broken figure must not lose the others
        return _Drawn(skipped=f"failed ({type(exc).__name__}: {exc})", failed=True)


def make_plots(
    data: ReportData,
    out_dir: Path,
    makers: Sequence[Maker] = tuple(FIGURES),
    workers: int | None = None,
) -> tuple[list[Path], list[str]]:
    """Every figure that can be drawn into ``out_dir``; returns (paths, skip reasons).

    The figures are drawn by up to ``workers`` forked processes (default: one per usable
    CPU, see :mod:`runner.report.forked`); paths and reasons come in the order of
    ``makers``, whichever process drew them.
    """
    skipped: list[str] = []
    # plots/ belongs to the report: figures of an earlier build that this one does not
    # draw would be stale, so they go.
    old = set(out_dir.glob("*.png")) if out_dir.is_dir() else set()
    plots: list[Plot] = []
    for maker in makers:
        try:
            plots += maker(data)
        except Exception as exc:  # one broken maker must not lose the other figures
            skipped.append(f"{maker.__name__}: failed ({type(exc).__name__}: {exc})")
            log.warning("figures of %s failed: %s: %s", maker.__name__, type(exc).__name__, exc)
    drawn = map_forked([lambda p=p: _draw(p, out_dir) for p in plots], workers)
    made: list[Path] = []
    for plot, outcome in zip(plots, drawn, strict=True):
        if outcome.path is not None:
            made.append(outcome.path)
            continue
        skipped.append(f"{plot.name}: {outcome.skipped}")
        if outcome.failed:
            log.warning("plot %s %s", plot.name, outcome.skipped)
        else:
            log.info("plot %s skipped: %s", plot.name, outcome.skipped)
    for path in old - set(made):
        path.unlink(missing_ok=True)
    return made, skipped
