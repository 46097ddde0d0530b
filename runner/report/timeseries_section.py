"""``## The run over time`` of report.md: a link to the one run's ``plots/timeseries.png``
(runner.report.timeseries_plot) and how to read it; absent where none was drawn (a sweep's
report, a run without ``timeseries.parquet``)."""

from __future__ import annotations

from pathlib import Path

from runner.report.data import ReportData
from runner.report.timeseries_plot import FIGURE


def timeseries_section(data: ReportData) -> str | None:
    figure = next((Path(p) for p in data.plots if Path(p).name == FIGURE), None)
    if figure is None:
        return None
    link = figure.as_posix()
    return (
        "## The run over time\n\n"
        f"[{link}]({link}): what the machine did from the run's start to its end, from "
        "the run's `timeseries.parquet`: power (per GPU and RAPL domain; the CPU cores "
        "busy where neither is measured), clocks and temperatures, one panel each where "
        "the machine has the source (the ones it lacks are listed in `result.json`, "
        "`metrics.timeseries.absent`). Shaded bands: the run's phases; dashed outlines: the "
        "measured windows. Throttling, clock drops and other processes' load inside a "
        "window are named warnings (`hardware.*`)."
    )
