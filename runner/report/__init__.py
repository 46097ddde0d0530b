"""Report of a sweep: one table, CSV/Parquet, ``report.md`` and PNG figures.

``build_report([sweep_dir], out_dir, baseline="quant=none,compile=off")`` reads every run
under the paths (see :mod:`runner.report.collect`), adds baseline ratios
(:mod:`runner.report.compare`) and output agreement with the baseline
(:mod:`runner.report.quality`), draws the figures (:mod:`runner.report.plots`) and writes
``summary.csv``, ``summary.parquet``, ``report.md`` and ``plots/*.png`` into ``out_dir``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.report.collect import (
    ReportError,
    RunRecord,
    collect,
    find_run_dirs,
    load_run,
    table,
)
from runner.report.compare import Baseline, add_relative_columns, resolve_baseline
from runner.report.markdown import display_table, render_report
from runner.report.plots import NoData, make_plots
from runner.report.quality import compare_with_baseline
from runner.report.quality_plot import FILE as QUALITY_PLOT
from runner.report.quality_plot import plot_energy_quality
from runner.report.samples import LatencySamples, read_latency_samples
from runner.results import atomic_path

__all__ = [
    "ReportError",
    "ReportOutputs",
    "build_report",
    "collect",
    "display_table",
    "find_run_dirs",
    "terminal_table",
]

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"


@dataclass
class ReportOutputs:
    """What :func:`build_report` wrote; ``summary_parquet`` is None if Parquet failed."""

    summary_csv: Path
    summary_parquet: Path | None
    report_md: Path
    plots: list[Path]
    table: pd.DataFrame
    skipped_plots: list[str] = field(default_factory=list)


def _samples(records: list[RunRecord], labels: list[str]) -> dict[str, LatencySamples]:
    out: dict[str, LatencySamples] = {}
    for rec, label in zip(records, labels, strict=True):
        if rec.status != "ok":
            continue
        try:
            out[label] = read_latency_samples(rec.run_dir)
        except ValueError as exc:
            log.debug("latency distribution of %s skipped: %s", label, exc)
    return out


def _compare_quality(df: pd.DataFrame, records: list[RunRecord], base: Baseline) -> pd.DataFrame:
    results = [rec.data for rec in records]
    base_result = (
        results[base.index] if base.index is not None else load_run(base.row["run_dir"]).data
    )
    return compare_with_baseline(df, results, base.row["run_dir"], base.label, base_result)


def _quality_plot(df: pd.DataFrame, path: Path, plots: list[Path], skipped: list[str]) -> None:
    try:
        plots.append(plot_energy_quality(df, path))
    except NoData as exc:
        skipped.append(f"energy/quality pareto: {exc}")
    except Exception as exc:  # a broken figure must not lose the report
        skipped.append(f"energy/quality pareto: failed ({type(exc).__name__}: {exc})")
        log.warning("plot energy/quality failed: %s: %s", type(exc).__name__, exc)


def _write_parquet(df: pd.DataFrame, path: Path) -> Path | None:
    try:
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    except Exception as exc:  # the CSV and the report are still useful without it
        log.warning("summary.parquet not written: %s: %s", type(exc).__name__, exc)
        return None
    return path


def build_report(
    paths: Iterable[Path | str], out_dir: Path | str, baseline: str | None = None
) -> ReportOutputs:
    """Read every run under ``paths`` and write the report into ``out_dir``.

    Raises :class:`ReportError` for a missing path, no run found, or a baseline that
    matches no run or several; nothing is written then. Weird run directories never
    raise: they become ``partial``/``unreadable`` rows.
    """
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        where = ", ".join(map(str, paths))
        raise ReportError(f"no run directory (result.json or .hydra/) under {where}")
    records = [load_run(d) for d in run_dirs]
    df = table(records)
    base = resolve_baseline(df, baseline) if baseline else None
    if base is not None:
        df = add_relative_columns(df, base)
        df = _compare_quality(df, records, base)

    out_dir.mkdir(parents=True, exist_ok=True)
    # Atomic like result.json: a report rebuilt while someone reads it is never half there.
    csv_path = out_dir / SUMMARY_CSV
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    parquet_path = _write_parquet(df, out_dir / SUMMARY_PARQUET)

    labels = list(df["label"])
    plots, skipped = make_plots(df, _samples(records, labels), out_dir / PLOTS_DIR)
    _quality_plot(df, out_dir / PLOTS_DIR / QUALITY_PLOT, plots, skipped)
    text = render_report(
        df,
        environments={label: rec.environment for label, rec in zip(labels, records, strict=True)},
        configs={label: rec.config for label, rec in zip(labels, records, strict=True)},
        plots=[Path(os.path.relpath(p, out_dir)) for p in plots],
        skipped_plots=skipped,
        baseline_label=base.label if base is not None else None,
        sources=[str(p) for p in paths],
    )
    report_path = out_dir / REPORT_MD
    with atomic_path(report_path) as tmp:
        tmp.write_text(text + "\n")
    return ReportOutputs(csv_path, parquet_path, report_path, plots, df, skipped)


def terminal_table(df: pd.DataFrame) -> str:
    """The table printed by the CLI (means with [95% CI], errors cut to 60 characters)."""
    return display_table(df).to_string(index=False)
