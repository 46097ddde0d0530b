"""``plots/timeseries.png``: one run's hardware over time, drawn from its
``timeseries.parquet`` (runner.report.timeseries).

Drawn only when the report covers exactly one run (``python -m runner.report <run dir>``):
a sweep's report reads no per-run time series, so a thousand runs stay fast. Panels share
the x axis (seconds since the run started); the phases are shaded bands, the measured
windows outlined. No file: no figure and no note; an unreadable one: a note under "Not
drawn", never an error.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.patches import Patch

from runner.report.data import ReportData
from runner.report.figure_kit import NoData, Plot, figure, save, suptitle
from runner.report.timeseries import (
    PHASE,
    TIME,
    Band,
    Panel,
    panels,
    phase_bands,
    read_timeseries,
    window_spans,
)
from runner.sections.hardware import TIMESERIES_FILE

FIGURE = "timeseries.png"
# The run's phases in the order they happen, each its own colour in every figure.
PHASES = (
    "config",
    "cooldown",
    "baseline",
    "load",
    "compile",
    "verify",
    "warmup",
    "measure",
    "quality",
    "energy",
    "write",
)
PALETTE = (  # Matplotlib's tab20 light shades, one per phase
    "#c7c7c7",
    "#9edae5",
    "#c5b0d5",
    "#aec7e8",
    "#ffbb78",
    "#f7b6d2",
    "#dbdb8d",
    "#98df8a",
    "#c49c94",
    "#ff9896",
    "#e7cb94",
)
COLOURS = dict(zip(PHASES, PALETTE, strict=True))


def _colour(phase: str) -> str:
    return COLOURS.get(phase, "#e0e0e0")


def _draw_panel(ax, table: pd.DataFrame, panel: Panel, bands, spans) -> None:
    for band in bands:
        ax.axvspan(band.start, band.end, color=_colour(band.phase), alpha=0.45, lw=0, zorder=0)
    for begin, end in spans:
        ax.axvspan(begin, end, fill=False, edgecolor="black", lw=1.0, ls="--", zorder=1)
    times = table[TIME]
    for i, series in enumerate(panel.series):
        values = pd.to_numeric(table[series.column], errors="coerce")
        ax.plot(times, values, lw=1.1, color=f"C{i % 10}", label=series.label, zorder=2)
    ax.set_ylabel(f"{panel.title} ({panel.unit})", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def plot_timeseries(path_in: Path, path: Path, title: str) -> Path:
    """Draw ``path_in`` (a run's ``timeseries.parquet``) into ``path``."""
    try:
        table, windows = read_timeseries(path_in)
    except Exception as exc:  # a broken table costs this figure only
        raise NoData(f"{path_in.name} unreadable ({type(exc).__name__}: {exc})") from exc
    if table.empty:
        raise NoData(f"{path_in.name} has no rows")
    found = panels(table)
    if not found:
        raise NoData(f"{path_in.name}: no sampled column has a value")
    phases = list(table[PHASE]) if PHASE in table.columns else [None] * len(table)
    bands: list[Band] = phase_bands(list(table[TIME]), phases)
    spans = window_spans(table, windows)
    fig = figure(12, 1.0 + 2.2 * len(found))
    axes = fig.subplots(len(found), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, found, strict=True):
        _draw_panel(ax, table, panel, bands, spans)
    axes[-1].set_xlabel("seconds since the run started")
    seen = list(dict.fromkeys(b.phase for b in bands))
    handles = [Patch(color=_colour(p), alpha=0.45, label=p) for p in seen]
    if spans:
        handles.append(Patch(fill=False, edgecolor="black", ls="--", label="measured window"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=7)
    suptitle(fig, f"{title}: phases shaded, measured windows outlined")
    return save(fig, path)


def timeseries_figures(data: ReportData) -> list[Plot]:
    """The time series of the report's one run, where it has a ``timeseries.parquet``."""
    if len(data.table) != 1:
        return []
    row = data.table.iloc[0]
    path_in = Path(row["run_dir"]) / TIMESERIES_FILE
    if not path_in.is_file():
        return []
    title = f"{row['label']}: the hardware over the run"
    return [Plot("time series", FIGURE, lambda p: plot_timeseries(path_in, p, title))]
