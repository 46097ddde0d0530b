"""``## Serving under load`` of report.md: per configuration, its runs by load, the knee
and the capacity at the SLO (runner.report.serving)."""

from __future__ import annotations

import pandas as pd

from runner.report.data import ReportData
from runner.report.format import fmt_num, markdown_table
from runner.report.serving import KNEE_SHARE, Curve, curves, slo_text

COLUMNS = [
    ("offered req/s", "offered_rps"),
    ("achieved req/s", "achieved_rps"),
    ("goodput req/s", "goodput_rps"),
    ("SLO met", "slo_attainment"),
    ("out tok/s", "output_tok_s"),
    ("TTFT p50", "ttft_ms_p50"),
    ("TTFT p99", "ttft_ms_p99"),
    ("ITL p99", "itl_ms_p99"),
    ("E2E p50", "e2e_ms_p50"),
    ("E2E p99", "e2e_ms_p99"),
    ("J/req gross", "energy_per_request_j_gross"),
    ("J/req net", "energy_per_request_j_net"),
]


def _table(curve: Curve) -> pd.DataFrame:
    pts = curve.points
    marks = [" †" if bool(flagged) else "" for flagged in pts["flagged"]]
    loads = [fmt_num(v) + mark for v, mark in zip(pts["load"], marks, strict=True)]
    out = pd.DataFrame({curve.load_factor: loads})
    for header, column in COLUMNS:
        if column in pts and pts[column].notna().any():
            if column == "slo_attainment":
                out[header] = ["" if pd.isna(v) else f"{v:.0%}" for v in pts[column]]
            else:
                out[header] = [fmt_num(v) for v in pts[column]]
    if (pts["runs"] > 1).any():
        out["runs"] = list(pts["runs"])
    return out


def serving_section(data: ReportData) -> str | None:
    found = curves(data.table, data.factors)
    if not found:
        return None
    slo = slo_text(data.ok)
    lines = ["## Serving under load", ""]
    for curve in found:
        knee = "none within the loads run" if curve.knee is None else fmt_num(curve.knee)
        if slo:
            capacity = "no load met it" if curve.capacity is None else f"{fmt_num(curve.capacity)}"
            capacity = f"; **capacity at the SLO** ({slo}): {capacity}"
        else:
            capacity = "; no SLO set (scenario.slo_*_ms), so no capacity"
        lines += [
            f"### {curve.label}",
            "",
            f"**Knee** ({curve.load_factor}): {knee}{capacity}.",
            "",
            markdown_table(_table(curve)),
            "",
        ]
    lines.append(
        "Rates, throughput, goodput and energy are over each run's steady-state window "
        "(ramp-up and drain excluded, docs/serving.md); latencies in ms. Knee: the highest "
        f"load whose achieved rate is at least {KNEE_SHARE:.0%} of the offered one. "
        "Capacity: the highest load whose share of requests meeting every objective reached "
        "scenario.slo_attainment (its goodput covers the load). With repeats, means over "
        "a load's runs. †: a run of that load carries a serving warning (Warnings below): "
        "its figures are not those of the load asked for, or not of a steady state."
    )
    return "\n".join(lines)
