"""``## Against the hardware's limit`` of report.md: the measured peaks of each device, then
per run its decode bandwidth and prefill rate with their shares of those peaks
(runner.report.roofline), and a link to ``plots/roofline.png``. Only when some ok run has a
roofline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from runner.report.collect import swept_factors
from runner.report.data import FULL_TABLE_MAX_RUNS, ReportData
from runner.report.format import factor_cells, fmt_num, markdown_table
from runner.report.roofline import (
    DECODE_GBS,
    DECODE_UTIL,
    DECODE_UTIL_THEORETICAL,
    PREFILL_TFLOPS,
    PREFILL_UTIL,
    device_of,
    roofs,
    with_roofline,
)

FIGURE = "roofline.png"
COLUMNS = [
    ("decode GB/s", DECODE_GBS, False),
    ("decode % of peak", DECODE_UTIL, True),
    ("decode % of theoretical", DECODE_UTIL_THEORETICAL, True),
    ("prefill TFLOP/s", PREFILL_TFLOPS, False),
    ("prefill % of peak", PREFILL_UTIL, True),
]


def share(value: object) -> str:
    """A fraction as a percentage with one decimal (``""`` where absent)."""
    text = fmt_num(value)
    return f"{float(value):.1%}" if text else ""  # type: ignore[arg-type]


def _table(rows: pd.DataFrame, factors: list[str], devices: bool) -> pd.DataFrame:
    out = factor_cells(rows, factors)
    if rows["repeat"].notna().any():
        out["repeat"] = ["" if pd.isna(r) else str(r) for r in rows["repeat"]]
    if devices:
        out["device"] = [device_of(r) for _, r in rows.iterrows()]
    for header, column, fraction in COLUMNS:
        if column in rows.columns and rows[column].notna().any():
            out[header] = [share(v) if fraction else fmt_num(v) for v in rows[column]]
    return out


def _peaks(data: ReportData) -> list[str]:
    lines = []
    for roof in roofs(data.table):
        theoretical = (
            f" (theoretical bandwidth {fmt_num(roof.theoretical_gbs)} GB/s)"
            if fmt_num(roof.theoretical_gbs)
            else ""
        )
        of = f", the median of {roof.runs} runs' probes" if roof.runs > 1 else ""
        lines.append(
            f"- {roof.name}: {fmt_num(roof.peak_gbs)} GB/s, "
            f"{fmt_num(roof.peak_tflops)} TFLOP/s measured{of}{theoretical}"
        )
    return lines


def roofline_section(data: ReportData) -> str | None:
    rows = with_roofline(data.table)
    if rows.empty:
        return None
    shown = rows.iloc[:FULL_TABLE_MAX_RUNS]
    devices = shown.apply(device_of, axis=1).nunique() > 1
    lines = ["## Against the hardware's limit", ""]
    peaks = _peaks(data)
    if peaks:
        lines += ["Peaks measured on each device, in the run's dtype:", "", *peaks, ""]
    lines += [markdown_table(_table(shown, swept_factors(data.table), devices).fillna("")), ""]
    if len(rows) > len(shown):
        lines += [
            f"{len(rows) - len(shown)} more runs: `summary.csv`, columns `{DECODE_UTIL}`, "
            f"`{PREFILL_UTIL}` and `metrics.roofline.*`.",
            "",
        ]
    figure = next((p for p in data.plots if Path(p).name == FIGURE), None)
    link = (
        f" Figure: [{Path(figure).as_posix()}]({Path(figure).as_posix()}) (log-log, "
        "arithmetic intensity against TFLOP/s, under each device's roof)."
        if figure is not None
        else ""
    )
    lines.append(
        "Decode GB/s: the bytes one decode step reads (weights and the KV cache at the mean "
        "context) over the median inter-token latency; prefill TFLOP/s: a call's prefill "
        "FLOPs over the median time to first token. `% of peak`: the share of the run's own "
        f"machine's measured peak (`{DECODE_UTIL}`, `{PREFILL_UTIL}` in `summary.csv`); "
        "`% of theoretical`: of the bandwidth the GPU's bus width and memory clock allow "
        "(docs/methodology.md)." + link
    )
    return "\n".join(lines)
