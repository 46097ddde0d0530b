"""PNG figures of a report (matplotlib Agg canvas, no pyplot state), readable at any size.

Figures aggregate instead of listing one mark per run, so a sweep of a thousand points
draws as clearly as one of four: main effects (mean and CI per level), an interaction
heatmap, box plots per level (:mod:`~runner.report.effects_plots`), the Pareto front with
labels only where they fit (:mod:`~runner.report.pareto_plot`), and the per-request
distributions of the few best runs only (:mod:`~runner.report.latency_distribution_plot`).
Every PNG fits in :data:`~runner.report.figure_kit.MAX_PX`.

:data:`FIGURES` lists the figure makers, each ``ReportData -> list[Plot]``; a
:class:`Plot` draws one PNG or raises :class:`NoData` with the reason. A new figure is one
more maker in that list. :func:`make_plots` draws what it can, records why the others were
skipped, and never raises. Only ``ok`` runs are drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.report.data import ReportData
from runner.report.effects_plots import (
    distribution_figures,
    interaction_figures,
    main_effect_figures,
)
from runner.report.figure_kit import NoData, Plot
from runner.report.forked import map_forked
from runner.report.latency_distribution_plot import latency_distribution_figures
from runner.report.pareto_plot import pareto_figures, quality_pareto_figures
from runner.report.roofline_plot import roofline_figures
from runner.report.serving_plots import serving_figures
from runner.report.timeseries_plot import timeseries_figures

log = logging.getLogger(__name__)

Maker = Callable[[ReportData], list[Plot]]
# In the order report.md shows them.
FIGURES: list[Maker] = [
    serving_figures,
    pareto_figures,
    quality_pareto_figures,
    roofline_figures,
    timeseries_figures,
    main_effect_figures,
    interaction_figures,
    distribution_figures,
    latency_distribution_figures,
]


@dataclass(frozen=True)
class _Drawn:
    """What drawing one figure gave (crosses back from a worker process, so plain data)."""

    path: Path | None = None
    skipped: str | None = None  # why not drawn: a NoData reason or a failure
    failed: bool = False


def _draw(plot: Plot, out_dir: Path) -> _Drawn:
    try:
        return _Drawn(path=plot.draw(out_dir / plot.filename))
    except NoData as exc:
        return _Drawn(skipped=str(exc))
    except Exception as exc:  # one broken figure must not lose the others
        return _Drawn(skipped=f"failed ({type(exc).__name__}: {exc})", failed=True)


def make_plots(
    data: ReportData,
    out_dir: Path,
    makers: Sequence[Maker] = tuple(FIGURES),
    workers: int | None = None,
) -> tuple[list[Path], list[str]]:
    """Every figure that can be drawn into ``out_dir``; returns (paths, skip reasons).

    The figures are drawn by up to ``workers`` forked processes (default: one per usable
    CPU, see :mod:`runner.report.forked`); paths and reasons come in the order of
    ``makers``, whichever process drew them.
    """
    skipped: list[str] = []
    # plots/ belongs to the report: figures of an earlier build that this one does not
    # draw would be stale, so they go.
    old = set(out_dir.glob("*.png")) if out_dir.is_dir() else set()
    plots: list[Plot] = []
    for maker in makers:
        try:
            plots += maker(data)
        except Exception as exc:  # one broken maker must not lose the other figures
            skipped.append(f"{maker.__name__}: failed ({type(exc).__name__}: {exc})")
            log.warning("figures of %s failed: %s: %s", maker.__name__, type(exc).__name__, exc)
    drawn = map_forked([lambda p=p: _draw(p, out_dir) for p in plots], workers)
    made: list[Path] = []
    for plot, outcome in zip(plots, drawn, strict=True):
        if outcome.path is not None:
            made.append(outcome.path)
            continue
        skipped.append(f"{plot.name}: {outcome.skipped}")
        if outcome.failed:
            log.warning("plot %s %s", plot.name, outcome.skipped)
        else:
            log.info("plot %s skipped: %s", plot.name, outcome.skipped)
    for path in old - set(made):
        path.unlink(missing_ok=True)
    return made, skipped
