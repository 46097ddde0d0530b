"""The report's "Effect of each factor" section: per factor and metric, what the data can
say (a detectable ratio, no detectable difference, or not estimable and why), from
:mod:`runner.report.effects`."""

from __future__ import annotations

import pandas as pd

from runner.measure.stats import MIN_CI_UNITS
from runner.report.data import ReportData
from runner.report.effects import Effect, headline, levels_of
from runner.report.format import fmt_num, fmt_ratio, markdown_table

BASIS_MARK = {"within run": " †", "unpaired": " ‡"}


def effect_cell(effects: list[Effect]) -> str:
    """What a factor does to a metric, as its :func:`~.effects.headline` level says it:
    ``level ×ratio [CI]`` (detectable), ``no detectable difference (level ×ratio [CI])``,
    or ``not estimable: level ×ratio (why)``; † and ‡ mark a CI within runs or unpaired."""
    top = headline(effects)
    if top is None:
        return ""
    if not top.ratio > 0:
        return f"not estimable ({top.note})" if top.note else "not estimable"
    text = f"{top.level} ×{fmt_ratio(top.ratio)}"
    if not top.estimable:
        return f"not estimable: {text} ({top.note})"
    text += f" [{fmt_ratio(top.ratio_ci95_low)}, {fmt_ratio(top.ratio_ci95_high)}]"
    text += BASIS_MARK.get(top.ci_basis, "")
    return text if top.detectable else f"no detectable difference ({text})"


def effects_section(data: ReportData) -> str | None:
    if not data.effect_factors or not data.summary_metrics:
        return None
    lead_metric = data.summary_metrics[0]
    ranked = data.ranked_factors(lead_metric)
    found, none, unknown = [], [], []
    for factor in ranked:
        top = headline(data.effects(lead_metric, factor))
        name = data.factor_name(factor)
        if top is None:
            continue
        if top.detectable:
            found.append(f"**{name}** ({top.level} ×{fmt_num(top.ratio)} vs {top.reference})")
        elif top.estimable:
            none.append(name)
        else:
            unknown.append(f"{name} ({top.note})")
    lead = f"On {lead_metric.title}: "
    lead += (
        f"detectable effects, largest first: {', '.join(found)}."
        if found
        else "no factor has a detectable effect."
    )
    if none:
        lead += f" No detectable difference: {', '.join(none)}."
    if unknown:
        lead += f" Not estimable: {'; '.join(unknown)}."
    rows = []
    for factor in ranked:
        levels = levels_of(data.ok[factor]).nunique()
        effects = [data.effects(m, factor) for m in data.summary_metrics]
        reference = next((e[0].reference for e in effects if e), "")
        aliased = data.aliases(factor)
        row = {
            "factor": data.factor_name(factor) + (" (aliased)" if aliased else ""),
            "levels": str(levels),
            "reference": reference,
        }
        for metric, eff in zip(data.summary_metrics, effects, strict=True):
            row[metric.header or metric.column] = effect_cell(eff)
        rows.append(row)
    return (
        "## Effect of each factor\n\n"
        + lead
        + "\n\n"
        + markdown_table(pd.DataFrame(rows))
        + "\n\nEach cell: the level that changes the metric most, as level ÷ reference "
        "level with a 95% CI, paired over the other factors (runs that agree on every other "
        f"factor are compared; a CI over {MIN_CI_UNITS} or more pairs); †: from 1 or 2 pairs, "
        "the CI rests on the runs' own within-run CIs and leaves out run-to-run variation; "
        "‡: no pair, the level means compared with the other factors unmatched. "
        "`no detectable difference`: every level's CI includes 1. `not estimable`: no CI, "
        "for the reason given (never read it as no effect). `a = b (aliased)`: factors that "
        "change together in every run; their effects cannot be told apart. Every level of "
        "every factor: `effects.csv`."
    )
