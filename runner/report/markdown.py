"""``report.md``: its sections in order, joined; pure functions of :class:`~.data.ReportData`.

``report.md`` is the concatenation of :data:`SECTIONS`, each a function
``ReportData -> str | None`` (None: nothing to say) that writes its own ``## `` heading.
A new section is one more function in that list; the order of the list is the order of
the report. Output depends only on the inputs (no clock, no set order), so rebuilding a
report from the same runs gives the same file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runner.report.data import ReportData
from runner.report.effects_section import effects_section
from runner.report.environment_section import environment_part, settings_part
from runner.report.failures_section import failures_section
from runner.report.figures_section import figures_section
from runner.report.methodology_section import methodology_section
from runner.report.ranking_section import best_section, pareto_section, quality_part
from runner.report.repeats_section import repeats_section
from runner.report.roofline_section import roofline_section
from runner.report.runs_table import table_section
from runner.report.serving_section import serving_section
from runner.report.summary_section import summary_section
from runner.report.timeseries_section import timeseries_section
from runner.report.warnings_section import warnings_section

Section = Callable[[ReportData], "str | None"]

# The order of report.md: what a reader needs first, reference material last.
SECTIONS: list[Section] = [
    summary_section,
    serving_section,
    best_section,
    pareto_section,
    quality_part,
    roofline_section,
    timeseries_section,
    effects_section,
    repeats_section,
    failures_section,
    warnings_section,
    table_section,
    figures_section,
    environment_part,
    settings_part,
    methodology_section,
]


def render_report(data: ReportData, sections: Sequence[Section] = tuple(SECTIONS)) -> str:
    """The whole ``report.md``: the non-empty sections, separated by blank lines."""
    parts = [section(data) for section in sections]
    return "\n\n".join(p.strip("\n") for p in parts if p)
