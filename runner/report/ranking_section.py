"""report.md's rankings: the best point for each headline metric, the energy/latency
Pareto front, and the energy/quality fronts (listed by the quality section)."""

from __future__ import annotations

import math

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.collect import swept_factors
from runner.report.compare import front_mask, pareto_metrics
from runner.report.data import ReportData
from runner.report.format import NO_CI, factor_cells, fmt_ci, fmt_num, markdown_table
from runner.report.metrics import UNRESOLVED, Metric, energy_metric, unresolved_runs
from runner.report.quality_section import comparable_parts, section

PARETO_MAX_ROWS = 25  # front points listed in report.md (all are in summary.csv)


def _value(row: pd.Series, metric: Metric) -> str:
    """A run's value of ``metric`` with its own CI; ``*`` marks an estimated energy."""
    if metric.ci_columns:
        low, high = metric.ci_columns
        text = fmt_ci(row[metric.column], row[low], row[high], NO_CI)
    else:
        text = fmt_num(row[metric.column])
    flag = row.get("energy_is_estimate")
    estimate = metric.column.startswith("energy") and flag is not None and flag is not pd.NA
    estimate = estimate and bool(flag)  # True or numpy's True (a column of bools)
    return text + ("*" if estimate and text else "")


def _not_ranked(data: ReportData, metric: Metric) -> str | None:
    """Why some ok runs are missing from a ranking of ``metric`` (unresolved energy), or
    why energy is ranked gross."""
    if not metric.column.startswith("energy"):
        return None
    figure = "net" if metric.column.endswith("net") else "gross"
    left = unresolved_runs(data.ranking, figure)
    if left.empty:
        net_left = unresolved_runs(data.ranking, "net")
        if figure == "gross" and not net_left.empty:
            first = net_left.iloc[0]
            return (
                f"Energy is ranked gross: net energy is unresolved in {len(net_left)} ok "
                f"run(s), e.g. `{first['label']}` ({first[UNRESOLVED]})."
            )
        return None
    shown = "; ".join(f"`{r['label']}` ({r[UNRESOLVED]})" for _, r in left.head(5).iterrows())
    more = f" and {len(left) - 5} more" if len(left) > 5 else ""
    return f"Not ranked for {metric.title}, unresolved: {shown}{more}."


def _ranked_unit(data: ReportData) -> tuple[str, str]:
    """What best points and fronts rank, and what their values are: runs with their own CI,
    or (with repeats) points with a CI over their repeats."""
    if data.repeats:
        return "points", (
            "the mean over a point's repeats with a 95% CI over repeats (what a rerun would "
            f"show; `(no CI)`: fewer than {MIN_CI_UNITS} repeats)"
        )
    return "runs", (
        "the run's mean with its own 95% CI (within the run; `(no CI)`: fewer than "
        f"{MIN_CI_UNITS} calls or passes)"
    )


def best_section(data: ReportData) -> str | None:
    """The best ok run (with repeats: point) for each headline metric, with its factors."""
    if not data.metrics:
        return None
    table = data.ranking
    unit, values = _ranked_unit(data)
    factors = swept_factors(data.table)
    base = data.baseline_row
    rows, notes = [], []
    for metric in data.metrics:
        parts = comparable_parts(table, metric)
        for group, part in parts:
            ranked = metric.ranked(part)
            if ranked.empty:
                continue
            best = ranked.iloc[0]
            title = f"{metric.best_word} {metric.axis_label}"
            cells = {"best for": f"{title} ({group})" if group else title}
            cells.update(factor_cells(ranked.iloc[:1], factors).iloc[0].to_dict())
            cells["value"] = _value(best, metric)
            cells[f"{unit} ranked"] = str(len(ranked))
            column = metric.comparable_by
            comparable = group is None or base is None or base.get(column) == best.get(column)
            if base is not None:
                ratio = best[metric.column] / base[metric.column] if comparable else math.nan
                cells["× baseline"] = fmt_num(ratio)
            rows.append(cells)
        if len(parts) > 1:
            notes.append(
                f"{metric.title.capitalize()} is ranked within each `{metric.comparable_by}` "
                "(the same text read by the same tokenizer); across them it is not comparable."
            )
        notes.append(_not_ranked(data, metric) or "")
    text = markdown_table(pd.DataFrame(rows).fillna(""))
    tail = "".join(f"\n\n{n}" for n in notes if n)
    return (
        f"## Best points\n\n{text}\n\nValues: {values}; `*`: energy partly estimated. For the "
        "runners-up, sort `summary.csv` by the metric's column." + tail
    )


def pareto_section(data: ReportData) -> str:
    table = data.ranking
    unit, values = _ranked_unit(data)
    metrics = pareto_metrics(table)
    title = "## Energy/latency Pareto front\n\n"
    if metrics is None:
        left = unresolved_runs(table, "net")
        if not left.empty:
            return title + (
                f"No Pareto front: the energy of every ok {unit[:-1]} is unresolved "
                f"({len(left)} {unit}; e.g. `{left.iloc[0]['label']}`: "
                f"{left.iloc[0][UNRESOLVED]})."
            )
        return title + "No energy measured: no Pareto front."
    x, y = metrics
    front = table[front_mask(table, x, y)].sort_values(x.column, kind="stable")
    ok = int((table["status"] == "ok").sum())
    shown = front.iloc[:PARETO_MAX_ROWS]
    frame = factor_cells(shown, swept_factors(data.table))
    frame[x.header or x.column] = [_value(r, x) for _, r in shown.iterrows()]
    frame[y.header or y.column] = [_value(r, y) for _, r in shown.iterrows()]
    frame.insert(0, "#", [str(i) for i in range(1, len(shown) + 1)])
    more = len(front) - len(shown)
    tail = f"\n\n{more} more on the front: `summary.csv`, column `on_pareto_front`." if more else ""
    left = _not_ranked(data, y)
    if left:
        tail += "\n\n" + left.replace("Not ranked for", "Not on the front, for")
    return (
        f"{title}{x.title.capitalize()} (`{x.column}`) against {y.title} (`{y.column}`), "
        f"lower is better on both: {len(front)} of {ok} ok {unit} are on the front (no other "
        f"is at least as good on both and better on one), by increasing latency; values: "
        f"{values}:\n\n" + markdown_table(frame) + tail
    )


def quality_part(data: ReportData) -> str | None:
    # With repeats the fronts are of points (means over repeats), as the energy/latency one.
    table = data.ranking
    return section(table, energy_metric(table), fmt_num, PARETO_MAX_ROWS) or None
