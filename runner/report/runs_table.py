"""The table of runs as people read it: :func:`display_table` (the terminal, report.md)
and report.md's "All runs" section, shown for a small sweep."""

from __future__ import annotations

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.collect import has_values, swept_factors
from runner.report.data import ReportData
from runner.report.format import NO_CI, factor_cells, fmt_ci, fmt_num, markdown_table
from runner.report.metrics import (
    E2E,
    ITL,
    THROUGHPUT,
    TTFT,
    UNRESOLVED,
    unresolved_figures,
    unresolved_runs,
)
from runner.report.quality_section import display_columns

# Figures shown as value with the run's own 95% CI
CI_METRICS = [TTFT, ITL, E2E, THROUGHPUT]
# (header, column, which energy figure it follows: unresolved when that one is)
PLAIN_COLUMNS = [
    ("peak MiB", "peak_mem_mib", None),
    ("mJ/tok gross", "energy_per_token_mj_gross", "gross"),
    ("mJ/tok net", "energy_per_token_mj_net", "net"),
    ("CO2 g", "emissions_g", "gross"),
]
UNRESOLVED_CELL = "unresolved"
RATIO_COLUMNS = [
    ("speed-up", "speedup_output_tok_s"),
    ("TTFT ×", "ttft_ratio"),
    ("energy ×", "energy_per_token_ratio"),
]


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
