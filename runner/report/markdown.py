"""``report.md`` and the terminal table: pure functions of :class:`~.data.ReportData`.

``report.md`` is the concatenation of :data:`SECTIONS`, each a function
``ReportData -> str | None`` (None: nothing to say) that writes its own ``## `` heading.
A new section is one more function in that list; the order of the list is the order of
the report. Output depends only on the inputs (no clock, no set order), so rebuilding a
report from the same runs gives the same file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.collect import STATUSES, has_values, swept_factors
from runner.report.compare import RATIO_METHOD, front_mask, pareto_metrics
from runner.report.data import ReportData
from runner.report.effects_section import effects_section
from runner.report.environment_section import environment_part, settings_part
from runner.report.failures import failure_groups
from runner.report.format import factor_cells, fmt_ci, fmt_num, markdown_table
from runner.report.metrics import (
    E2E,
    ITL,
    THROUGHPUT,
    TTFT,
    UNRESOLVED,
    Metric,
    energy_metric,
    unresolved_figures,
)
from runner.report.quality_section import comparable_parts, display_columns, section
from runner.report.repeats_section import repeats_section
from runner.report.roofline_section import roofline_section
from runner.report.serving_section import serving_section
from runner.report.timeseries_section import timeseries_section
from runner.report.warnings_section import warnings_section

# Figures shown as value with the run's own 95% CI
CI_METRICS = [TTFT, ITL, E2E, THROUGHPUT]
# (header, column, which energy figure it follows: unresolved when that one is)
PLAIN_COLUMNS = [
    ("peak MiB", "peak_mem_mib", None),
    ("mJ/tok gross", "energy_per_token_mj_gross", "gross"),
    ("mJ/tok net", "energy_per_token_mj_net", "net"),
    ("CO2 g", "emissions_g", "gross"),
]
NO_CI = " (no CI)"  # a figure whose run had too few units for an interval
UNRESOLVED_CELL = "unresolved"
RATIO_COLUMNS = [
    ("speed-up", "speedup_output_tok_s"),
    ("TTFT ×", "ttft_ratio"),
    ("energy ×", "energy_per_token_ratio"),
]
PARETO_MAX_ROWS = 25  # front points listed in report.md (all are in summary.csv)
FAILED_RUNS_LISTED = 10  # run directories listed per failure group


def display_table(df: pd.DataFrame, error_width: int | None = 60) -> pd.DataFrame:
    """Strings for people: swept factors, status, means with [95% CI], ratios, errors.

    Columns with no value in any row are left out; ``*`` marks estimated energy;
    ``error_width`` truncates the error column (None keeps it whole, 0 drops it).
    """
    factors = swept_factors(df)
    out = factor_cells(df, factors)
    out["status"] = df["status"]
    for metric in CI_METRICS:
        if has_values(df, metric.column):
            low, high = metric.ci_columns or ("", "")
            out[metric.header] = [
                fmt_ci(m, lo, hi, NO_CI)
                for m, lo, hi in zip(df[metric.column], df[low], df[high], strict=True)
            ]
    estimate = [v is True for v in df["energy_is_estimate"]]
    said = df[UNRESOLVED] if UNRESOLVED in df.columns else pd.Series(None, index=df.index)
    for header, column, figure in PLAIN_COLUMNS:
        if has_values(df, column) or (figure and said.notna().any()):
            out[header] = [
                UNRESOLVED_CELL
                if figure in unresolved_figures(reason)
                else fmt_num(v) + ("*" if figure and e and fmt_num(v) else "")
                for v, e, reason in zip(df[column], estimate, said, strict=True)
            ]
    for header, cells in display_columns(df, fmt_ci).items():
        out[header] = cells
    for header, column in RATIO_COLUMNS:
        if has_values(df, column):
            out[header] = [
                "baseline" if base else fmt_ci(r, lo, hi, NO_CI)
                for r, lo, hi, base in zip(
                    df[column],
                    df[f"{column}_ci95_low"],
                    df[f"{column}_ci95_high"],
                    df.get("is_baseline", pd.Series(False, index=df.index)),
                    strict=True,
                )
            ]
    if error_width != 0 and df["error"].notna().any():
        errors = ["" if pd.isna(e) else str(e) for e in df["error"]]
        if error_width:
            errors = [e if len(e) <= error_width else e[: error_width - 1] + "…" for e in errors]
        out["error"] = errors
    return out.reset_index(drop=True)


def unresolved_runs(df: pd.DataFrame, figure: str = "net") -> pd.DataFrame:
    """Ok runs whose energy ``figure`` is unresolved."""
    if UNRESOLVED not in df.columns:
        return df.iloc[:0]
    mask = (df["status"] == "ok") & df[UNRESOLVED].map(lambda r: figure in unresolved_figures(r))
    return df[mask]


METHODOLOGY = f"""\
- **Factors** are the runs' Hydra overrides; tables show those with more than one value,
  every override is a column of `summary.csv`; `—` or `(default)` means the run did not
  override that factor (the config default applied). Factors that change together in
  every run (`a = b`) are *aliased*: their effects cannot be told apart and are reported
  once.
- **TTFT**: time from the start of a `generate` call to each request's first token.
  **ITL** (inter-token latency): every gap between consecutive tokens of a request, pooled
  over requests. **E2E**: per-request end-to-end latency (until `generate` returned its
  batch). **out tok/s**: total output tokens / total measured time of the run
  (`output_tok_s`), never a mean of per-call rates, which would weight a fast call like a
  slow one (their distribution is `per_call_output_tok_s_*` in the CSV).
- **A run's 95% CI** (within the run): TTFT, ITL and E2E over the run's `generate` calls
  (the requests and token gaps of one call share its clock, so the unit is the call: a
  cluster-robust standard error), throughput over its complete measured passes (the
  ratio estimator of total tokens over total time). Intervals of these positive figures
  are on the log scale (`mean·exp(±t·SE/mean)`), so they stay positive and can be
  asymmetric; with fewer than {MIN_CI_UNITS} units there is none (`(no CI)`), rather than
  a t-interval on one degree of freedom. It describes the variability *within* a run:
  run-to-run variation (clocks, thermals, other tenants) is not in it, so repeat the
  sweep to see it. `repeat_cv` in the CSV is the coefficient of variation of throughput
  between the measured passes of a run.
- **Effects of a factor**: each level against the reference level (the baseline's, else
  the first level the command typed), as a ratio. Runs that agree on every other swept
  factor are matched (replicates averaged first); the ratio is the geometric mean of the
  matched ratios. Its CI: a Student-t interval on the logarithms over {MIN_CI_UNITS} or
  more pairs, simultaneous over the factor's levels (Bonferroni: 95% for a two-level
  factor); with 1 or 2 pairs, from the runs' own within-run CIs (marked †: run-to-run
  variation is not in it; perplexity pairs the two runs window by window); with no pair,
  the ratio of the level means over {MIN_CI_UNITS} or more runs per level (marked ‡: the
  other factors are not matched). *No detectable difference* means the CI includes 1;
  *not estimable* means there is no CI, and the cell says why. `effects.csv` has every
  level with `ci_basis` and `note`.
- **Main-effect figures**: per level, the mean over the ok runs at that level
  (marginalised over the other factors), with a 95% t-interval over runs where a level has
  {MIN_CI_UNITS} or more runs; otherwise the runs themselves are drawn as points, no bar.
  Coloured lines split it by a second factor of few levels when that factor matters.
  **Heatmaps**: the mean of each pair of levels of the two factors that matter most.
  **Box plots**: the spread of the runs' values at each level.
- **Peak memory** (MiB = 2^20 bytes): `cuda-max-allocated` (PyTorch's peak allocated CUDA
  memory) on GPU runs, `process-peak-rss` (peak resident set of the process) otherwise; the
  source of each run is in `peak_mem_source`.
- **Energy**: integrated once over the measured window by the energy backend (CodeCarbon:
  CPU, RAM and GPU components). *Gross* is all energy in the window, *net* is what
  `result.json` reports after removing the idle share; per token = energy / output tokens
  (mJ). Emissions (g CO2-eq) = energy × the carbon intensity the backend used. `*` marks
  runs where some component was estimated rather than measured (`energy_is_estimate`).
  Energy has no CI of its own (one integrated measurement per run). *Unresolved*: a
  measured time shorter than CodeCarbon's sampling interval (gross and net), or net
  energy at or below zero (net): not a number, never ranked, never on a front
  (`energy_unresolved` in the CSV says why).
- **Pareto front**: a run is on it when no other ok run has lower-or-equal latency *and*
  lower-or-equal energy per token (one of them strictly lower). Energy is net when every
  run has it (a number, or a reason it is unresolved) and some run has a number; else
  gross.
- **Perplexity** is ranked and compared only between runs that scored the same text with
  the same tokenizer (`perplexity_group`); across groups (another model) it is not.
- Failed, interrupted, partial and unreadable runs are listed, not drawn; an interrupted
  run's numbers cover only the part that was measured.
"""


def status_line(df: pd.DataFrame) -> str:
    """``3 ok, 1 failed``: the runs per status, in :data:`STATUSES` order."""
    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)


# --------------------------------------------------------------------------- sections


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


def summary_section(data: ReportData) -> str:
    df = data.table
    where = f" from {', '.join(f'`{s}`' for s in data.sources)}" if data.sources else ""
    lines = [
        "# Benchmark report",
        "",
        f"{len(df)} runs{where}: {status_line(df)}.",
    ]
    if data.copies:
        lines.append(
            f"Not counted: {len(data.copies)} `result.json` copies of these runs (they name "
            f"another run directory), e.g. `{data.copies[0]}`."
        )
    if data.small:
        lines.append("Every run is in the table below and in `summary.csv`, `summary.parquet`.")
    else:
        lines.append(
            f"The table of all {len(df)} runs (every column, one row per run) is in "
            "`summary.csv` and `summary.parquet`; the effect of every level of every factor "
            "in `effects.csv`. This report summarises them."
        )
    if data.baseline is not None:
        lines += [
            "",
            f"Baseline: **{data.baseline.label}**. Relative columns are run / baseline "
            "(speed-up > 1 is faster, ratios < 1 are lower TTFT or energy).",
        ]
    return "\n".join(lines)


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


def failures_section(data: ReportData) -> str | None:
    groups = failure_groups(data.table)
    if not groups:
        return None
    bad = sum(len(g.rows) for g in groups)
    lines = [
        "## Runs that did not complete",
        "",
        f"{bad} of {len(data.table)} runs: {status_line(data.table[data.table['status'] != 'ok'])}"
        ". They are not in the figures, the best points or the effects; each is in "
        "`summary.csv` with its `status` and `error`.",
    ]
    for group in groups:
        n = len(group.rows)
        lines += ["", f"### {group.status}: {group.cause} ({n} run{'s' if n > 1 else ''})", ""]
        if n > 1 or group.example != group.cause:
            lines += [f"Example: {group.example}", ""]
        listed = group.rows["run_dir"].iloc[:FAILED_RUNS_LISTED]
        lines += [f"- `{d}`" for d in listed]
        if n > len(listed):
            lines.append(f"- and {n - len(listed)} more")
        if group.commands:
            note = (
                " (once it has stopped: a run in progress holds its lock)"
                if (group.status == "partial")
                else ""
            )
            lines += [
                "",
                f"Rerun{note}; points already `ok` are skipped:",
                "",
                "```bash",
                *group.commands,
                "```",
            ]
    return "\n".join(lines)


def table_section(data: ReportData) -> str | None:
    if not data.small:
        return None
    said = unresolved_runs(data.table, "net")
    notes = "".join(f"\n- `{r['label']}`: energy {r[UNRESOLVED]}" for _, r in said.iterrows())
    unresolved_note = f"\n\n`unresolved`:{notes}" if notes else ""
    return (
        "## All runs\n\n"
        + markdown_table(display_table(data.table, error_width=0))
        + "\n\nValues: mean ± 95% CI half-width, or mean [95% CI] where the interval is "
        f"asymmetric (within the run); `(no CI)`: fewer than {MIN_CI_UNITS} calls or passes; "
        "ratios: value [95% CI]; `*`: energy partly estimated. Units: ms, output tokens/s "
        "(total tokens / total time), MiB, mJ per output token, g CO2-eq. Full table: "
        "`summary.csv`, `summary.parquet`." + unresolved_note
    )


def figures_section(data: ReportData) -> str:
    out = ["## Figures", ""]
    figures = [f"![{Path(p).stem}]({Path(p).as_posix()})\n" for p in data.plots]
    out += figures or ["No figure drawn."]
    if data.skipped_plots:
        out += ["", "Not drawn:", ""] + [f"- {reason}" for reason in data.skipped_plots]
    return "\n".join(out).rstrip()


def methodology_section(data: ReportData) -> str:
    text = "## Methodology\n\n" + METHODOLOGY.rstrip()
    if data.baseline is not None:
        text += (
            f"\n- **Ratios against the baseline**: {RATIO_METHOD}. Runs are assumed "
            "independent; `<column>_ci95_low/high` in the CSV hold the intervals."
        )
    return text


Section = Callable[[ReportData], "str | None"]


# The order of report.md: what a reader needs first, reference material last.
def quality_part(data: ReportData) -> str | None:
    # With repeats the fronts are of points (means over repeats), as the energy/latency one.
    table = data.ranking
    return section(table, energy_metric(table), fmt_num, PARETO_MAX_ROWS) or None


SECTIONS: list[Section] = [
    summary_section,
    serving_section,
    best_section,
    pareto_section,
    quality_part,
    roofline_section,
    timeseries_section,
    effects_section,
    repeats_section,
    failures_section,
    warnings_section,
    table_section,
    figures_section,
    environment_part,
    settings_part,
    methodology_section,
]


def render_report(data: ReportData, sections: Sequence[Section] = tuple(SECTIONS)) -> str:
    """The whole ``report.md``: the non-empty sections, separated by blank lines."""
    parts = [section(data) for section in sections]
    return "\n\n".join(p.strip("\n") for p in parts if p)
