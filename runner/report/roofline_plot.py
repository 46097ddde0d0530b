"""``plots/roofline.png``: every run's decode and prefill against its machine's limit.

Log-log: arithmetic intensity (FLOP/byte) across, achieved TFLOP/s up; one roof per device
and dtype, min(peak TFLOP/s, intensity x peak GB/s / 1000), from the peaks the runs
measured (runner.report.roofline). Each run is two points: decode (its bandwidth turned
into a FLOP rate at its intensity) and prefill; the marker says which, the colour which
configuration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from runner.report.data import ReportData
from runner.report.figure_kit import NoData, Plot, figure, save, suptitle
from runner.report.format import fmt_num
from runner.report.roofline import Point, Roof, points, roofs

MARKERS = {"decode": "o", "prefill": "^"}
MAX_COLOURED = 10  # configurations told apart by colour (and named in the legend)
ROOF_STYLES = ("-", "--", "-.", ":")


def _colours(configurations: list[str]) -> dict[str, str]:
    if len(configurations) <= MAX_COLOURED:
        return {c: f"C{i}" for i, c in enumerate(configurations)}
    return dict.fromkeys(configurations, "tab:blue")


def _x_range(found: list[Point], all_roofs: list[Roof]) -> tuple[float, float]:
    xs = [p.intensity for p in found] + [r.ridge for r in all_roofs]
    return min(xs) / 4, max(xs) * 4


def plot_roofline(found: list[Point], all_roofs: list[Roof], path: Path) -> Path:
    """The roofs and the runs' points (see the module docstring)."""
    if not found:
        raise NoData("no ok run has a roofline (metrics.roofline) with an intensity and a rate")
    fig = figure(9, 6.5)
    ax = fig.subplots()
    low, high = _x_range(found, all_roofs)
    xs = np.geomspace(low, high, 200)
    handles = []
    for i, roof in enumerate(all_roofs):
        style = ROOF_STYLES[i % len(ROOF_STYLES)]
        ax.plot(xs, [roof.tflops_at(x) for x in xs], style, color="black", lw=1.2)
        label = (
            f"{roof.name}: {fmt_num(roof.peak_tflops)} TFLOP/s, {fmt_num(roof.peak_gbs)} GB/s"
            + (f" (median of {roof.runs} runs)" if roof.runs > 1 else "")
        )
        handles.append(Line2D([], [], color="black", linestyle=style, label=label))
    configurations = list(dict.fromkeys(p.configuration for p in found))
    colours = _colours(configurations)
    for phase, marker in MARKERS.items():
        mine = [p for p in found if p.phase == phase]
        if mine:
            ax.scatter(
                [p.intensity for p in mine],
                [p.tflops for p in mine],
                c=[colours[p.configuration] for p in mine],
                marker=marker,
                s=36 if len(found) <= 50 else 12,
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
            )
            handles.append(Line2D([], [], marker=marker, color="grey", linestyle="", label=phase))
    if len(configurations) <= MAX_COLOURED:
        handles += [
            Line2D([], [], marker="s", color=colours[c], linestyle="", label=c)
            for c in configurations
        ]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    tops = [p.tflops for p in found] + [r.peak_tflops for r in all_roofs]
    bottoms = [p.tflops for p in found] + [r.tflops_at(low) for r in all_roofs]
    ax.set_ylim(min(bottoms) / 2, max(tops) * 2)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.grid(which="both", alpha=0.25)
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    what = (
        f"colour: configuration ({len(configurations)})"
        if len(configurations) <= MAX_COLOURED
        else f"{len(configurations)} configurations, one colour (report.md lists them)"
    )
    if not all_roofs:
        what += "; no roof: no run measured both peaks"
    suptitle(
        fig,
        "Runs against the hardware's limit: roof = min(peak TFLOP/s, intensity × peak GB/s), "
        f"from the peaks measured on each device; ● decode, ▲ prefill; {what}",
    )
    return save(fig, path)


def roofline_figures(data: ReportData) -> list[Plot]:
    """The roofline figure, when some ok run has a roofline (else none, and no note)."""
    found = points(data.table)
    if not found:
        return []
    all_roofs = roofs(data.table)
    return [Plot("roofline", "roofline.png", lambda p: plot_roofline(found, all_roofs, p))]
