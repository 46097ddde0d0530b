"""The report's quality section: what the quality columns mean, the energy/quality Pareto
fronts, and the runs that could not be compared with the baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd

from runner.quality.agreement import METHOD as AGREEMENT_METHOD
from runner.report.collect import has_values
from runner.report.compare import front_mask
from runner.report.metrics import Metric, quality_metrics
from runner.report.quality import CI, NOTES, RATIO, RATIO_COLUMNS, RATIO_METHOD


def display_columns(df: pd.DataFrame, fmt_ci: Any) -> dict[str, list[str]]:
    """Report-table columns (header -> cells): perplexity and agreement with 95% CIs."""
    out: dict[str, list[str]] = {}
    if has_values(df, "perplexity"):
        out["perplexity"] = [
            fmt_ci(m, lo, hi)
            for m, lo, hi in zip(
                df["perplexity"],
                df["perplexity_ci95_low"],
                df["perplexity_ci95_high"],
                strict=True,
            )
        ]
    if has_values(df, RATIO):
        baseline = df.get("is_baseline", pd.Series(False, index=df.index))
        out["ppl ×"] = [
            "baseline" if base else fmt_ci(r, lo, hi)
            for r, lo, hi, base in zip(*(df[c] for c in RATIO_COLUMNS), baseline, strict=True)
        ]
    for header, prefix in (("token agree", "token_agreement"), ("exact match", "exact_match")):
        if has_values(df, f"{prefix}_mean"):
            out[header] = [
                fmt_ci(m, lo, hi)
                for m, lo, hi in zip(*(df[f"{prefix}_{s}"] for s in CI), strict=True)
            ]
    return out


def comparable_parts(df: pd.DataFrame, metric: Metric) -> list[tuple[str | None, pd.DataFrame]]:
    """The table split by ``metric.comparable_by`` where the ok runs hold more than one
    value of it (perplexities of two tokenizers are never ranked together); else whole."""
    column = metric.comparable_by
    if not column or column not in df.columns:
        return [(None, df)]
    ranked = metric.ranked(df)
    values = list(dict.fromkeys(ranked[column].dropna()))
    if len(values) <= 1:
        return [(None, df)]
    out = []
    for value in values:
        names = ranked.loc[ranked[column] == value].get("model_name", pd.Series(dtype=object))
        models = ", ".join(dict.fromkeys(str(n) for n in names.dropna()))
        out.append((f"{models}: {value}" if models else str(value), df[df[column] == value]))
    return out


def section(df: pd.DataFrame, energy: Metric | None, fmt_num: Any, max_listed: int) -> str:
    """The report's quality section: what the columns mean, the energy/quality fronts (at
    most ``max_listed`` runs each), and the runs that were not compared."""
    metrics = quality_metrics(df)
    notes = df.attrs.get(NOTES) or []
    if not metrics and not notes:
        return ""
    lines = [
        "## Quality",
        "",
        "- **perplexity**: teacher-forced, on the evaluation text, with the model exactly as "
        "measured (`quality.evaluation.method` in `result.json` says how); "
        "mean [95% CI over windows]; the same text and settings in every run for it to compare.",
        f"- **token agree / exact match** (against `agreement_reference`): {AGREEMENT_METHOD}.",
    ]
    if has_values(df, RATIO):
        lines.append(f"- **ppl ×** (`perplexity_ratio`): {RATIO_METHOD}.")
    for metric in metrics if energy is not None else []:
        for group, part in comparable_parts(df, metric):
            on = metric.ranked(part[front_mask(part, metric, energy)])
            items = [
                f"{r['label']} ({fmt_num(r[metric.column])}, {fmt_num(r[energy.column])} mJ/token)"
                for _, r in on.iloc[:max_listed].iterrows()
            ]
            more = len(on) - len(items)
            tail = f" and {more} more" if more > 0 else ""
            within = f" among the runs of `{group}`" if group else ""
            if not items and part[energy.column].notna().sum() == 0:
                tail = " (no run has a resolved energy figure)"
            lines.append(
                f"- Energy/{metric.title} Pareto front{within}, {metric.best_word} "
                f"{metric.title} first: {', '.join(items) or 'no run'}{tail}."
            )
    if notes:
        lines += ["", "Not compared:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)
