"""Per-request latency distributions (TTFT, inter-token gaps) of the best runs and the
baseline: the only figure that reads per-request files."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import pandas as pd

from runner.report.data import ReportData
from runner.report.figure_kit import NoData, Plot, figure, save, short_labels, suptitle
from runner.report.samples import LatencySamples, read_latency_samples

log = logging.getLogger(__name__)

BEST_RUNS = 8  # runs whose per-request distributions are drawn (plus the baseline)

# ``vert=False`` is deprecated from matplotlib 3.10, which added ``orientation``.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in re.findall(r"\d+", matplotlib.__version__)[:2]) >= (3, 10)
    else {"vert": False}
)


def plot_latency_distributions(
    samples: Mapping[str, LatencySamples], path: Path, title: str = "Per-request latency"
) -> Path:
    """Box plots of per-request TTFT and of every inter-token gap, one box per run."""
    panels = [
        ("time to first token (ms)", {k: s.ttft_ms for k, s in samples.items() if s.ttft_ms}),
        ("inter-token latency (ms)", {k: s.itl_ms for k, s in samples.items() if s.itl_ms}),
    ]
    panels = [(axis, d) for axis, d in panels if d]
    if not panels:
        raise NoData("no run has per-request latency samples (requests.parquet)")
    rows = max(len(d) for _, d in panels)
    fig = figure(6 * len(panels), max(3.0, 0.35 * rows + 1.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (axis, d) in zip(axes, panels, strict=True):
        labels = list(d)[::-1]
        ax.boxplot(
            [d[k] for k in labels], showmeans=True, flierprops={"markersize": 2}, **_HORIZONTAL
        )
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.set_xlabel(axis)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    suptitle(fig, f"{title} (box: quartiles, whiskers: 1.5 IQR, ▲: mean)")
    return save(fig, path)


def best_runs(data: ReportData, n: int = BEST_RUNS) -> pd.DataFrame:
    """The ``n`` best ok runs by the primary latency, and the baseline."""
    if data.latency is None:
        return data.ok.iloc[:n]
    chosen = data.latency.ranked(data.table).iloc[:n]
    base = data.baseline.index if data.baseline is not None else None
    if base is not None and base in data.table.index and base not in chosen.index:
        chosen = pd.concat([chosen, data.table.loc[[base]]])
    return chosen


def _samples_of(data: ReportData) -> dict[str, LatencySamples]:
    """Per-request samples of :func:`best_runs` only: the only per-request files read."""
    chosen = best_runs(data)
    labels = short_labels(chosen, data.factors) if len(chosen) > 1 else list(chosen["label"])
    out: dict[str, LatencySamples] = {}
    for label, (_, row) in zip(labels, chosen.iterrows(), strict=True):
        if data.baseline is not None and row.name == data.baseline.index:
            label = f"{label} (baseline)"
        try:
            out[label] = read_latency_samples(Path(row["run_dir"]))
        except ValueError as exc:
            log.debug("latency distribution of %s skipped: %s", label, exc)
    return out


def _best_title(data: ReportData) -> str:
    if data.latency is None or len(data.ok) <= BEST_RUNS:
        return "Per-request latency of every ok run"
    base = " and the baseline" if data.baseline is not None else ""
    return f"Per-request latency of the {BEST_RUNS} runs with the lowest {data.latency.title}{base}"


def latency_distribution_figures(data: ReportData) -> list[Plot]:
    return [
        Plot(
            "latency distributions",
            "latency_distributions.png",
            lambda p: plot_latency_distributions(_samples_of(data), p, _best_title(data)),
        )
    ]
