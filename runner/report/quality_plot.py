"""The energy-versus-quality Pareto plot: energy per token against perplexity, and against
token agreement with the reference where the report has it (one panel each)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from runner.report.compare import pareto_axes, pareto_front
from runner.report.plots import AXIS_LABELS, NoData, _save
from runner.report.quality import quality_axes

FILE = "pareto_energy_quality.png"


def plot_energy_quality(df: pd.DataFrame, path: Path) -> Path:
    """Energy per output token against each quality figure; the front (lower energy, better
    quality) in red. Only ok runs with both figures are drawn."""
    energy = pareto_axes(df)
    if energy is None:
        raise NoData("no ok run has energy per token (energy off or not measured)")
    ycol = energy[1]
    panels = []
    for xcol, higher in quality_axes(df):
        data = df[(df["status"] == "ok") & df[xcol].notna() & df[ycol].notna()]
        if len(data):
            panels.append((xcol, higher, data))
    if not panels:
        raise NoData("no ok run has both a quality figure and energy per token")
    fig = Figure(figsize=(7 * len(panels), 5.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (xcol, higher, data) in zip(axes, panels, strict=True):
        xs = [-v if higher else v for v in data[xcol]]
        front = pareto_front(xs, list(data[ycol]))
        colors = ["tab:red" if f else "tab:gray" for f in front]
        ax.scatter(data[xcol], data[ycol], c=colors, zorder=2)
        on = data[front].sort_values(xcol, ascending=not higher)
        if len(on) > 1:
            ax.step(on[xcol], on[ycol], where="post", color="tab:red", lw=1, label="Pareto front")
            ax.legend(loc="best", fontsize=8)
        for (_, row), is_front in zip(data.iterrows(), front, strict=True):
            ax.annotate(
                row["label"],
                (row[xcol], row[ycol]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="tab:red" if is_front else "black",
            )
        better = "higher" if higher else "lower"
        ax.set_xlabel(f"{AXIS_LABELS[xcol]} ({better} is better)")
        ax.set_ylabel(AXIS_LABELS[ycol])
        ax.grid(alpha=0.3)
    fig.suptitle("Energy per token vs output quality (red: Pareto front)")
    return _save(fig, path)
