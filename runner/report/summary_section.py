"""report.md's opening: how many runs, from where, by status, and the baseline."""

from __future__ import annotations

import pandas as pd

from runner.report.collect import STATUSES
from runner.report.data import ReportData


def status_line(df: pd.DataFrame) -> str:
    """``3 ok, 1 failed``: the runs per status, in :data:`STATUSES` order."""
    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)


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
