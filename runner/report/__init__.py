"""Report of a sweep: one table, CSV/Parquet, ``report.md`` and PNG figures.

``build_report([sweep_dir], out_dir, baseline="quant=none,compile=off")`` reads every run
under the paths once, from its ``result.json`` alone (:mod:`runner.report.collect`), adds
baseline ratios and the Pareto front (:mod:`runner.report.compare`) and output agreement
with the baseline (:mod:`runner.report.quality`), works out what each
factor does (:mod:`runner.report.effects`), draws the figures (:mod:`runner.report.plots`)
and writes ``summary.csv``, ``summary.parquet``, ``effects.csv``, ``report.md``
(:mod:`runner.report.markdown`) and ``plots/*.png`` into ``out_dir``. The same runs give
the same files. Sections and figures are lists of functions of one
:class:`~runner.report.data.ReportData`: see docs/development.md to add one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.report.collect import ReportError, collect, find_run_dirs, load_run, scan
from runner.report.command import repeat_order, sources_levels
from runner.report.compare import add_relative_columns, front_mask, pareto_metrics, resolve_baseline
from runner.report.data import ReportData
from runner.report.effects import effects_frame
from runner.report.markdown import render_report
from runner.report.plots import make_plots
from runner.report.quality import compare_with_baseline, evaluation
from runner.report.ranking_section import best_section
from runner.report.repeats import repeats_frame
from runner.report.runs_table import display_table
from runner.report.search import search_section
from runner.report.summary_section import status_line
from runner.results import atomic_path

__all__ = [
    "ReportData",
    "ReportError",
    "ReportOutputs",
    "build_report",
    "collect",
    "display_table",
    "find_run_dirs",
    "terminal_summary",
    "terminal_table",
]

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"
EFFECTS_CSV = "effects.csv"
REPEATS_CSV = "repeats.csv"  # statistics over each point's repeats (repeat.count > 1)
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
    data: ReportData | None = None


def _write_parquet(df: pd.DataFrame, path: Path) -> Path | None:
    try:
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    except Exception as exc:  # the CSV and the report are still useful without it
        log.warning("summary.parquet not written: %s: %s", type(exc).__name__, exc)
        return None
    return path


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    # Atomic like result.json: a report rebuilt while someone reads it is never half there.
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _effects_table(data: ReportData) -> pd.DataFrame:
    return effects_frame(
        [e for m in data.metrics for f in data.effect_factors for e in data.effects(m, f)]
    )


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
    found = scan(run_dirs)
    if found.table.empty:
        where = ", ".join(map(str, paths))
        copies = (
            f" ({len(found.copies)} result.json copies of other runs passed over, e.g. "
            f"{found.copies[0]})"
            if found.copies
            else ""
        )
        raise ReportError(f"no run directory (result.json or .hydra/) under {where}{copies}")
    df = found.table
    base = resolve_baseline(df, baseline) if baseline else None
    if base is not None:
        df = add_relative_columns(df, base)
        base_eval = (
            found.evaluations[df.index.get_loc(base.index)]
            if base.index is not None
            else evaluation(load_run(Path(base.row["run_dir"])).data)
        )
        df = compare_with_baseline(df, found.evaluations, base, base_eval)
    sweeps = dict.fromkeys([*(p for p in paths if p.is_dir()), *(d.parent for d in run_dirs)])
    data = ReportData(
        df,
        found.environments,
        found.settings,
        base,
        [str(p) for p in paths],
        typed=sources_levels(sweeps),
        evaluations=found.evaluations,
        copies=found.copies,
        repeat_order=repeat_order(sweeps),
    )
    # With repeats the front is of points (means over repeats): each run marks its point's.
    ranking = data.ranking
    front = pareto_metrics(ranking)
    on_front = front_mask(ranking, *front) if front else pd.Series(False, index=ranking.index)
    if data.repeats:
        df["on_pareto_front"] = df["point"].isin(set(ranking.loc[on_front, "label"]))
    else:
        df["on_pareto_front"] = on_front

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = _write_csv(df, out_dir / SUMMARY_CSV)
    parquet_path = _write_parquet(df, out_dir / SUMMARY_PARQUET)
    _write_csv(_effects_table(data), out_dir / EFFECTS_CSV)
    if data.repeats:
        _write_csv(repeats_frame(df, data.metrics), out_dir / REPEATS_CSV)
    plots, skipped = make_plots(data, out_dir / PLOTS_DIR)
    # After make_plots, which clears plots/ of figures it did not draw.
    search_text, search_plots = search_section(paths, out_dir / PLOTS_DIR)
    plots += search_plots
    data.plots = [Path(os.path.relpath(p, out_dir)) for p in plots]
    data.skipped_plots = skipped
    text = render_report(data)
    if search_text:
        text += "\n\n" + search_text.strip("\n")
    report_path = out_dir / REPORT_MD
    with atomic_path(report_path) as tmp:
        tmp.write_text(text + "\n")
    return ReportOutputs(csv_path, parquet_path, report_path, plots, df, skipped, data)


def terminal_table(df: pd.DataFrame) -> str:
    """The table printed by the CLI (means with [95% CI], errors cut to 60 characters)."""
    return display_table(df).to_string(index=False)


def terminal_summary(outputs: ReportOutputs) -> str:
    """What the CLI prints: the table of every run for a small sweep, else the status
    counts and the best points (the full table is in summary.csv)."""
    data = outputs.data
    if data is None or data.small:
        return terminal_table(outputs.table)
    best = best_section(data) or ""
    return f"{len(outputs.table)} runs: {status_line(outputs.table)}\n\n{best}"
