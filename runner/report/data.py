"""Everything a report section or a figure reads: :class:`ReportData`.

Built once per report from the scan of the run directories; the derived views (which
factors are swept, the headline metrics, every factor's effects) are computed on first
use and shared by ``report.md``'s sections and the figures.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.report.collect import swept_factors
from runner.report.compare import Baseline
from runner.report.effects import (
    Effect,
    Within,
    aliased_groups,
    factor_effects,
    levels_of,
    ordered_levels,
    strongest,
)
from runner.report.metrics import (
    KNOWN,
    PERPLEXITY,
    Metric,
    headline_metrics,
    latency_metric,
    summary_metrics,
)
from runner.report.quality import perplexity_ratio
from runner.report.repeats import has_repeats, points_table
from runner.report.variation import Variation
from runner.sections.quality import PerplexityEval

# Up to this many runs report.md holds the table of every run; beyond, summary.csv does.
FULL_TABLE_MAX_RUNS = 30


@dataclass
class ReportData:
    """The report table (one row per run) and what the sections need besides it.

    ``plots`` (paths relative to the report's folder) and ``skipped_plots`` are filled in
    once the figures are drawn, before ``report.md`` is rendered. ``typed``: each factor's
    levels in the order the sweep's command gave them (the reference level is the first);
    ``evaluations``: each row's perplexity evaluation (what pairs two runs' perplexities);
    ``copies``: directories passed over because their ``result.json`` is another run's;
    ``repeat_order``: how a sweep with repeats ran them (its ``repeat_order.json``).
    """

    table: pd.DataFrame
    environments: Variation = field(default_factory=Variation)
    settings: Variation = field(default_factory=Variation)
    baseline: Baseline | None = None
    sources: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    skipped_plots: list[str] = field(default_factory=list)
    typed: dict[str, list[str]] = field(default_factory=dict)
    evaluations: list[PerplexityEval | None] = field(default_factory=list)
    copies: list[Path] = field(default_factory=list)
    repeat_order: dict[str, object] = field(default_factory=dict)
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
        """Factors with more than one value among the ok runs."""
        return swept_factors(self.ok)

    @functools.cached_property
    def alias_groups(self) -> list[list[str]]:
        """:attr:`factors` grouped by the runs they split alike (see
        :func:`~.effects.aliased_groups`): each group's effects are one set of numbers."""
        return aliased_groups(self.ok, self.factors)

    @functools.cached_property
    def effect_factors(self) -> list[str]:
        """One factor per aliased group (its first): what effects and figures are about."""
        return [group[0] for group in self.alias_groups]

    def aliases(self, factor: str) -> list[str]:
        """The other factors that vary with ``factor`` in every ok run."""
        group = next((g for g in self.alias_groups if factor in g), [factor])
        return [f for f in group if f != factor]

    def factor_name(self, factor: str) -> str:
        """``factor``, or ``a = b = c`` for an aliased group."""
        return " = ".join([factor, *self.aliases(factor)])

    @functools.cached_property
    def repeats(self) -> bool:
        """Some point ran more than once: comparisons rest on repeats, paired by repeat."""
        return has_repeats(self.table)

    @functools.cached_property
    def ranking(self) -> pd.DataFrame:
        """What best points and fronts rank: the runs, or with repeats the points (each
        metric's mean over a point's repeats, with the CI over repeats)."""
        if not self.repeats:
            return self.table
        return points_table(self.table, list(KNOWN.values()))

    @property
    def baseline_row(self) -> pd.Series | None:
        """The baseline as :attr:`ranking` holds it (with repeats: its point's means)."""
        if self.baseline is None:
            return None
        if not self.repeats:
            return self.baseline.row
        match = self.ranking[self.ranking["label"] == self.baseline.row["point"]]
        return match.iloc[0] if len(match) else self.baseline.row

    @property
    def ranking_baseline_index(self) -> object:
        """The baseline's row in :attr:`ranking` (None without one, or outside the table)."""
        if self.baseline is None or self.baseline.index is None:
            return None
        row = self.baseline_row
        return None if row is None else row.name

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

    def levels(self, factor: str) -> list[str]:
        """The levels of ``factor`` among the ok runs, in display order."""
        return ordered_levels(self.ok[factor], self.typed.get(factor, ()))

    def reference_level(self, factor: str) -> str | None:
        """The baseline's level of ``factor``; else the first level the command typed
        (None: the first level in display order)."""
        if self.baseline is not None and self.baseline.index is not None:
            return str(levels_of(self.table.loc[[self.baseline.index], factor]).iloc[0])
        typed = [v for v in self.typed.get(factor, ()) if v in self.levels(factor)]
        return typed[0] if typed else None

    def _within(self, metric: Metric) -> Within | None:
        """Perplexity: two runs compared window by window (the paired ratio's CI)."""
        if metric is not PERPLEXITY or len(self.evaluations) != len(self.table):
            return None
        position = {index: i for i, index in enumerate(self.table.index)}

        def within(a: object, b: object) -> float:
            got = perplexity_ratio(self.evaluations[position[b]], self.evaluations[position[a]])
            if got is None or not (got[1] > 0 and got[2] > 0):
                return math.nan
            return (math.log(got[2]) - math.log(got[1])) / 2

        return within

    def effects(self, metric: Metric, factor: str) -> list[Effect]:
        """Every level of ``factor`` against its reference level (see :mod:`.effects`),
        paired over one factor of each other aliased group."""
        key = (metric, factor)
        if key not in self._effects:
            others = [
                f for f in self.effect_factors if f != factor and f not in self.aliases(factor)
            ]
            self._effects[key] = factor_effects(
                self.table,
                factor,
                others,
                metric,
                self.reference_level(factor),
                within=self._within(metric),
                typed=self.typed.get(factor, ()),
                aliases=self.aliases(factor),
                blocks=("repeat",) if self.repeats else (),
            )
        return self._effects[key]

    def ranked_factors(self, metric: Metric) -> list[str]:
        """:attr:`effect_factors` by the size of their strongest effect on ``metric``,
        largest first (ties in table order)."""
        strength = {}
        for factor in self.effect_factors:
            top = strongest(self.effects(metric, factor))
            strength[factor] = top.strength if top is not None else 0.0
        return sorted(self.effect_factors, key=lambda f: -strength[f])
