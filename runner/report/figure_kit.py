"""What every report figure is drawn with: a size-capped Matplotlib figure (Agg canvas, no
pyplot state), titles wrapped to its width, level ticks that thin out, run labels naming
only the factors that differ, labels placed only where they fit, plain tick labels on log
axes."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox


class NoData(Exception):
    """Nothing to draw; the message says why."""


@dataclass(frozen=True)
class Plot:
    """One figure: its name in messages, its file name, and how to draw it there."""

    name: str
    filename: str
    draw: Callable[[Path], Path]


MAX_TICKS = 12  # level labels on an axis; more levels: every k-th labelled
MAX_LABELS = 30  # points labelled at most
DPI = 100
MAX_PX = (1600, 1200)  # width, height: no PNG is larger


def figure(width_in: float, height_in: float) -> Figure:
    """A figure no larger than :data:`MAX_PX` at :data:`DPI`."""
    width = min(width_in, MAX_PX[0] / DPI)
    height = min(height_in, MAX_PX[1] / DPI)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def wrapped(fig: Figure, text: str, fontsize: float) -> str:
    """``text`` in lines that fit the figure's width at ``fontsize`` (with a margin)."""
    width_px = fig.get_size_inches()[0] * DPI * 0.9
    chars = max(30, int(width_px / (0.6 * fontsize * DPI / 72)))
    return "\n".join(textwrap.wrap(text, chars))


def suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped to the figure's width, so no title is ever cut off."""
    fig.suptitle(wrapped(fig, text, fontsize), fontsize=fontsize)


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG within :data:`MAX_PX`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = fig.get_size_inches()
    dpi = min(DPI, MAX_PX[0] / width, MAX_PX[1] / height)
    fig.savefig(path, dpi=dpi)  # no bbox_inches="tight": the size stays the figure's
    return path


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def level_ticks(ax, labels: Sequence[str], axis: str = "x") -> None:
    """Ticks at 0..n-1, every k-th labelled so that at most :data:`MAX_TICKS` show."""
    step = max(1, math.ceil(len(labels) / MAX_TICKS))
    positions = list(range(0, len(labels), step))
    shown = [labels[i] for i in positions]
    if axis == "x":
        long = max((len(s) for s in shown), default=0) > 6
        ax.set_xticks(
            positions, shown, rotation=45 if long else 0, ha="right" if long else "center"
        )
    else:
        ax.set_yticks(positions, shown)
    ax.tick_params(labelsize=7)


def grid(fig: Figure, n: int, ncols: int = 4) -> list:
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """``workload.batch_size`` -> ``batch_size`` where the last part is unambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def short_labels(rows: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """Labels naming only the factors that differ among ``rows``."""
    varying = [f for f in factors if rows[f].astype(str).nunique() > 1]
    short = _short_keys(varying)
    if not varying:
        return [str(label) for label in rows["label"]]
    return [", ".join(f"{short[f]}={r[f]}" for f in varying) for _, r in rows.iterrows()]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def place_labels(fig: Figure, ax, points: Sequence[tuple[float, float, str]]) -> int:
    """Annotate each point with its text where it fits inside the axes without touching
    another label or a labelled point (four positions tried); returns how many
    were placed. The figure's layout must be final (suptitle set) before this is called."""
    fig.draw_without_rendering()  # lays the figure out: extents are then final
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = []
    for x, y, _ in points:  # the markers themselves, about 6 px across
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    offsets = [(5, 3, "left", "bottom"), (5, -3, "left", "top")]
    offsets += [(-5, 3, "right", "bottom"), (-5, -3, "right", "top")]
    placed = 0
    for x, y, text in points[:MAX_LABELS]:
        for dx, dy, ha, va in offsets:
            label = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=7,
                color="tab:red",
            )
            label.set_in_layout(False)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
            if inside and box.y1 <= frame.y1 and not any(_overlaps(box, t) for t in taken):
                taken.append(box)
                placed += 1
                break
            label.remove()
    return placed


def _plain_log_label(value: float, _position: object = None) -> str:
    """Tick text of a log axis: plain numbers, minor ticks at 2 and 5 only."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    if round(mantissa, 6) not in (1.0, 2.0, 5.0):
        return ""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def log_scale_if_wide(ax, values: pd.Series, axis: str) -> None:
    """A log axis when the values span more than a factor 20, with plain tick labels."""
    values = values[values > 0]
    if len(values) and values.max() / values.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_formatter(FuncFormatter(_plain_log_label))
        target.set_minor_formatter(FuncFormatter(_plain_log_label))
