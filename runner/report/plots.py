"""PNG figures of a report table (matplotlib Agg canvas, no pyplot state).

Each ``plot_*`` function writes one PNG and returns its path, or raises :class:`NoData`
with the reason when the table has nothing to draw; :func:`make_plots` draws what it
can, logs why the others were skipped, and never raises. Only ``ok`` runs are drawn.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runner.measure.stats import summarize
from runner.report.collect import swept_factors
from runner.report.compare import pareto_axes, pareto_front
from runner.report.quality import AXIS_LABELS as QUALITY_LABELS
from runner.report.quality import factor_panels
from runner.report.samples import LatencySamples

log = logging.getLogger(__name__)

AXIS_LABELS = {
    "e2e_ms_mean": "end-to-end request latency, mean (ms)",
    "itl_ms_mean": "inter-token latency, mean (ms)",
    "ttft_ms_mean": "time to first token, mean (ms)",
    "energy_per_token_mj_gross": "energy per output token, gross (mJ)",
    "energy_per_token_mj_net": "energy per output token, net (mJ)",
    "output_tok_s_mean": "output throughput, mean over batches (tok/s)",
    **QUALITY_LABELS,
}


# ``vert=False`` is deprecated from matplotlib 3.10, which added ``orientation``.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2]) >= (3, 10)
    else {"vert": False}
)


class NoData(Exception):
    """Nothing to draw; the message says why."""


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _ci_err(frame: pd.DataFrame, prefix: str) -> list[list[float]] | None:
    mean, low, high = (frame[f"{prefix}_{s}"] for s in ("mean", "ci95_low", "ci95_high"))
    lower, upper = (mean - low).fillna(0).clip(lower=0), (high - mean).fillna(0).clip(lower=0)
    return [list(lower), list(upper)] if (lower > 0).any() or (upper > 0).any() else None


def plot_pareto(df: pd.DataFrame, path: Path) -> Path:
    """Energy per token against mean latency, Pareto front (minimise both) marked, labelled."""
    axes = pareto_axes(df)
    if axes is None:
        raise NoData("no ok run has energy per token (energy off or not measured)")
    xcol, ycol = axes
    data = _ok(df)[lambda d: d[xcol].notna() & d[ycol].notna()]
    front = pareto_front(list(data[xcol]), list(data[ycol]))
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.subplots()
    prefix = xcol.removesuffix("_mean")
    xerr = _ci_err(data, prefix)
    colors = ["tab:red" if f else "tab:gray" for f in front]
    ax.errorbar(data[xcol], data[ycol], xerr=xerr, fmt="none", ecolor="lightgray", zorder=1)
    ax.scatter(data[xcol], data[ycol], c=colors, zorder=2)
    on_front = data[front].sort_values(xcol)
    if len(on_front):
        ax.step(
            on_front[xcol],
            on_front[ycol],
            where="post",
            color="tab:red",
            lw=1,
            label="Pareto front (lower is better on both axes)",
        )
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
    ax.set_xlabel(AXIS_LABELS[xcol] + (" ±95% CI" if xerr else ""))
    ax.set_ylabel(AXIS_LABELS[ycol])
    ax.set_title("Energy per token vs latency")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _level_key(value: object) -> tuple[int, float, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    try:
        return (0, float(str(value)), "")
    except ValueError:
        return (1, 0.0, str(value))


def _bar_value(rows: pd.DataFrame, column: str, prefix: str | None) -> tuple[float, ...]:
    """``(value, low, high)``: one run's mean and CI, or mean and t-CI across replicates."""
    values = [v for v in rows[column] if math.isfinite(v)]
    if not values:
        return math.nan, math.nan, math.nan
    if len(values) > 1:
        stats = summarize(values)
        return stats.mean, stats.ci95_low, stats.ci95_high
    if prefix is None:
        return values[0], math.nan, math.nan
    row = rows[rows[column].notna()].iloc[0]
    return values[0], row[f"{prefix}_ci95_low"], row[f"{prefix}_ci95_high"]


def _fmt_level(factor: str, value: object) -> str:
    return "(default)" if _level_key(value)[0] == 2 else str(value)


def plot_factor_bars(df: pd.DataFrame, factor: str, path: Path) -> Path:
    """Output throughput, energy per token and quality (perplexity, token agreement) for
    each level of ``factor``, 95% CI bars.

    One bar per run (grouped by the other swept factors); runs with identical factors
    are averaged with a t-interval across them.
    """
    data = _ok(df)
    if data["output_tok_s_mean"].notna().sum() == 0:
        raise NoData("no ok run has output throughput")
    panels = [("output_tok_s_mean", "output_tok_s")]
    energy = pareto_axes(df)
    if energy is not None:
        panels.append((energy[1], None))
    panels += factor_panels(df)
    others = [f for f in swept_factors(data) if f != factor]
    levels = sorted(data[factor].astype(object).unique(), key=_level_key)
    groups = data.groupby(others, dropna=False, sort=True) if others else [((), data)]
    groups = [(g if isinstance(g, tuple) else (g,), frame) for g, frame in groups]
    width_in = 4 * len(panels) + 0.5 * len(levels) * len(groups) ** 0.5 + (2 if others else 0)
    fig = Figure(figsize=(width_in, 4.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / len(groups)
    for ax, (column, prefix) in zip(axes, panels, strict=True):
        for j, (key, frame) in enumerate(groups):
            bars = [
                _bar_value(frame[frame[factor].astype(object).eq(level)], column, prefix)
                if not pd.isna(level)
                else _bar_value(frame[frame[factor].isna()], column, prefix)
                for level in levels
            ]
            label = ", ".join(f"{f}={_fmt_level(f, v)}" for f, v in zip(others, key, strict=True))
            xs = [i - 0.4 + width * (j + 0.5) for i in range(len(levels))]
            ax.bar(xs, [b[0] for b in bars], width, label=label or None)
            with_ci = [(x, b) for x, b in zip(xs, bars, strict=True) if all(map(math.isfinite, b))]
            if with_ci:
                ax.errorbar(
                    [x for x, _ in with_ci],
                    [b[0] for _, b in with_ci],
                    yerr=[
                        [max(b[0] - b[1], 0) for _, b in with_ci],
                        [max(b[2] - b[0], 0) for _, b in with_ci],
                    ],
                    fmt="none",
                    ecolor="black",
                    capsize=3,
                )
        ax.set_xticks(range(len(levels)), [_fmt_level(factor, lv) for lv in levels])
        ax.set_xlabel(factor)
        ax.set_ylabel(AXIS_LABELS[column])
        ax.grid(axis="y", alpha=0.3)
    if others:
        axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"{factor}: throughput, energy and quality (error bars: 95% CI)")
    return _save(fig, path)


def plot_latency_distributions(samples: Mapping[str, LatencySamples], path: Path) -> Path:
    """Box plots of per-request TTFT and of every inter-token gap, one box per run."""
    panels = [
        ("time to first token (ms)", {k: s.ttft_ms for k, s in samples.items() if s.ttft_ms}),
        ("inter-token latency (ms)", {k: s.itl_ms for k, s in samples.items() if s.itl_ms}),
    ]
    panels = [(title, data) for title, data in panels if data]
    if not panels:
        raise NoData("no run has per-request latency samples (requests.parquet)")
    rows = max(len(data) for _, data in panels)
    fig = Figure(figsize=(6 * len(panels), max(3.0, 0.35 * rows + 1.5)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, data) in zip(axes, panels, strict=True):
        labels = list(data)[::-1]
        ax.boxplot(
            [data[k] for k in labels], showmeans=True, flierprops={"markersize": 2}, **_HORIZONTAL
        )
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.set_xlabel(title)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Latency distributions per run (box: quartiles, whiskers: 1.5 IQR, ▲: mean)")
    return _save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "factor"


def make_plots(
    df: pd.DataFrame, samples: Mapping[str, LatencySamples], out_dir: Path
) -> tuple[list[Path], list[str]]:
    """Every figure that can be drawn into ``out_dir``; returns (paths, skip reasons)."""
    jobs = [("pareto", lambda p: plot_pareto(df, p), out_dir / "pareto_energy_latency.png")]
    for factor in swept_factors(_ok(df)):
        path = out_dir / f"factor_{_slug(factor)}.png"
        jobs.append((f"factor {factor}", lambda p, f=factor: plot_factor_bars(df, f, p), path))
    jobs.append(
        (
            "latency distributions",
            lambda p: plot_latency_distributions(samples, p),
            out_dir / "latency_distributions.png",
        )
    )
    made: list[Path] = []
    skipped: list[str] = []
    for name, draw, path in jobs:
        try:
            made.append(draw(path))
        except NoData as exc:
            skipped.append(f"{name}: {exc}")
            log.info("plot %s skipped: %s", name, exc)
        except Exception as exc:  # one broken figure must not lose the others
            skipped.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            log.warning("plot %s failed: %s: %s", name, type(exc).__name__, exc)
    if not swept_factors(_ok(df)):
        skipped.append("factor bar charts: fewer than two values of any factor among ok runs")
    return made, skipped
