"""Everything a report section or a figure reads: :class:`ReportData`.

Built once per report from the scan of the run directories; the derived views (which
factors are swept, the headline metrics, every factor's effects) are computed on first
use and shared by ``report.md``'s sections and the figures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.report.collect import swept_factors
from runner.report.compare import Baseline
from runner.report.effects import Effect, factor_effects, levels_of, strongest
from runner.report.metrics import Metric, headline_metrics, latency_metric, summary_metrics
from runner.report.variation import Variation

# Up to this many runs report.md holds the table of every run; beyond, summary.csv does.
FULL_TABLE_MAX_RUNS = 30


@dataclass
class ReportData:
    """The report table (one row per run) and what the sections need besides it.

    ``plots`` (paths relative to the report's folder) and ``skipped_plots`` are filled in
    once the figures are drawn, before ``report.md`` is rendered.
    """

    table: pd.DataFrame
    environments: Variation = field(default_factory=Variation)
    settings: Variation = field(default_factory=Variation)
    baseline: Baseline | None = None
    sources: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    skipped_plots: list[str] = field(default_factory=list)
    _effects: dict[tuple[Metric, str], list[Effect]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "ok"]

    @property
    def small(self) -> bool:
        """Few enough runs for report.md to list every one."""
        return len(self.table) <= FULL_TABLE_MAX_RUNS

    @functools.cached_property
    def factors(self) -> list[str]:
        """Factors with more than one value among the ok runs (what effects are about)."""
        return swept_factors(self.ok)

    @functools.cached_property
    def metrics(self) -> list[Metric]:
        """Headline metrics some ok run has (best points)."""
        return headline_metrics(self.table)

    @functools.cached_property
    def summary_metrics(self) -> list[Metric]:
        """The few metrics effects and figures are about."""
        return summary_metrics(self.table)

    @functools.cached_property
    def latency(self) -> Metric | None:
        return latency_metric(self.table)

    def reference_level(self, factor: str) -> str | None:
        """The baseline's level of ``factor`` (None without a baseline in the table)."""
        if self.baseline is None or self.baseline.index is None:
            return None
        return str(levels_of(self.table.loc[[self.baseline.index], factor]).iloc[0])

    def effects(self, metric: Metric, factor: str) -> list[Effect]:
        """Every level of ``factor`` against its reference level (see :mod:`.effects`)."""
        key = (metric, factor)
        if key not in self._effects:
            self._effects[key] = factor_effects(
                self.table, factor, self.factors, metric, self.reference_level(factor)
            )
        return self._effects[key]

    def ranked_factors(self, metric: Metric) -> list[str]:
        """Swept factors by the size of their strongest effect on ``metric``, largest
        first (ties in table order)."""
        strength = {}
        for factor in self.factors:
            top = strongest(self.effects(metric, factor))
            strength[factor] = top.strength if top is not None else 0.0
        return sorted(self.factors, key=lambda f: -strength[f])
