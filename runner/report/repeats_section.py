"""The report's "Repeats" section (a sweep with ``repeat.count`` > 1): each point's figures
over its repeats beside what one run claims, the ratios to the baseline paired by repeat,
and the drift of each figure over the sweep (:mod:`runner.report.repeats`)."""

from __future__ import annotations

import math

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.data import ReportData
from runner.report.format import fmt_ci, fmt_num, fmt_ratio, markdown_table
from runner.report.metrics import THROUGHPUT, Metric, energy_metric
from runner.report.repeats import PointStats, drift, paired_ratios, point_stats


def _metrics(data: ReportData) -> list[Metric]:
    """The figures the section is about: the primary latency, throughput, energy."""
    wanted = [data.latency, THROUGHPUT, energy_metric(data.table)]
    return [m for m in wanted if m is not None and m.has_data(data.table)]


def _share(stats: PointStats) -> str:
    return "" if math.isnan(stats.between_share) else f"{stats.between_share:.0%}"


def _stats_table(data: ReportData, metric: Metric) -> tuple[str, int, int]:
    """The table of one metric; how many points it has, how many have too narrow a
    within-run CI."""
    rows, narrow = [], 0
    for s in point_stats(data.table, metric):
        narrow += s.within_too_narrow
        rows.append(
            {
                "point": s.point,
                "repeats": str(s.repeats),
                f"{metric.header} over repeats": fmt_ci(
                    s.mean, s.ci95_low, s.ci95_high, " (no CI)"
                ),
                "within one run": (
                    f"[{fmt_num(s.within_ci95_low)}, {fmt_num(s.within_ci95_high)}]"
                    if not math.isnan(s.within_ci95_low)
                    else "none"
                ),
                "between-repeat share": _share(s),
                "own CIs missing the mean": f"{s.missed} of {s.repeats}",
            }
        )
    return markdown_table(pd.DataFrame(rows)), len(rows), narrow


def _paired(data: ReportData, metrics: list[Metric]) -> str | None:
    if data.baseline is None:
        return None
    base = str(data.baseline.row["point"])
    columns: dict[str, dict[str, str]] = {}
    for metric in metrics:
        for r in paired_ratios(data.table, metric, base):
            cell = f"×{fmt_ratio(r.ratio)}"
            if not math.isnan(r.ratio_ci95_low):
                cell += f" [{fmt_ratio(r.ratio_ci95_low)}, {fmt_ratio(r.ratio_ci95_high)}]"
            else:
                cell += f" (no CI: {r.repeats} repeats)"
            columns.setdefault(r.point, {"point": r.point})[f"{metric.header} ×"] = cell
    if not columns:
        return None
    return (
        f"### Ratios to the baseline ({base}), paired by repeat\n\n"
        "Each point's run of a repeat ÷ the baseline's run of the same repeat, geometric "
        f"mean over repeats with a t-interval over them ({MIN_CI_UNITS} or more): what "
        "changed between repeats hits both runs of a pair and cancels.\n\n"
        + markdown_table(pd.DataFrame(list(columns.values())).fillna(""))
    )


def _drift(data: ReportData, metrics: list[Metric]) -> str:
    lines = []
    for metric in metrics:
        d = drift(data.table, metric)
        if d is None:
            continue
        if d.significant:
            lines.append(
                f"- **{metric.title}: a drift of {d.over_sweep:+.1%} from the first run to the "
                f"last** ({d.per_run:+.2%} per run, p = {d.p:.2g}, {d.runs} runs, each against "
                "its point's mean): the machine changed during the sweep (heat, a "
                "neighbour's load). Interleaved repeats spread it over every point; grouped "
                "ones would have put it into the factors' effects."
            )
        else:
            lines.append(
                f"- {metric.title}: no significant drift ({d.over_sweep:+.1%} over the sweep, "
                f"p = {d.p:.2g}, {d.runs} runs)."
            )
    if not lines:
        return ""
    return (
        "### Drift\n\nEach figure against the order the runs ran in, each run measured "
        "against its own point's mean (so the factors drop out):\n\n" + "\n".join(lines)
    )


def repeats_section(data: ReportData) -> str | None:
    if not data.repeats:
        return None
    metrics = _metrics(data)
    ok = data.table[data.table["status"] == "ok"]
    order = data.repeat_order.get("order")
    how = f", {order}" if order else ""
    parts = [
        "## Repeats",
        f"{ok['point'].nunique()} points ran up to {int(ok['repeat'].max()) + 1} times each"
        f"{how} ({len(ok)} ok runs; the launch order is in `repeat_order.json`). A CI "
        "over a point's repeats is what a rerun would show (Student t on repeats − 1 degrees "
        f"of freedom, none under {MIN_CI_UNITS}); the within-run CI beside it is what one run "
        "alone claims (the geometric mean of the repeats' own). The between-repeat share is "
        "the part of the repeats' variance their own CIs do not explain; about 5% of the "
        "repeats' own 95% CIs should miss the mean. Every figure of every point: "
        "`repeats.csv`.",
    ]
    for metric in metrics:
        table, points, narrow = _stats_table(data, metric)
        parts.append(f"### {metric.title.capitalize()} ({metric.unit})\n\n{table}")
        if narrow:
            parts.append(
                f"For {narrow} of {points} points the within-run CI is too narrow: the repeats "
                "vary between themselves at least as much as within. Compare them by the "
                "CIs over repeats (the effects above pair runs within a repeat)."
            )
    parts.append(_paired(data, metrics) or "")
    parts.append(_drift(data, metrics))
    return "\n\n".join(p for p in parts if p)
