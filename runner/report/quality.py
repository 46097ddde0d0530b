"""Quality in the report: its columns, agreement with the baseline, its plot and section.

Columns (one row per run): ``perplexity`` with ``perplexity_ci95_low/high`` and
``perplexity_tokens`` (tokens scored), read from ``result.json``; ``token_agreement_*``,
``exact_match_*`` and ``first_divergence_*`` (``_mean``, ``_ci95_low``, ``_ci95_high``;
fractions and token indices) with ``agreement_requests`` and ``agreement_reference``;
``workload_sha256``; and ``lm_eval.<task>.<metric>`` for lm-eval results.

Agreement comes from the run's own ``quality.agreement`` (against its ``quality.reference``)
unless the report has a baseline: then every ok run is compared with the baseline run,
which is the one place the report opens ``outputs.parquet`` files. Runs whose workload
differs from the baseline's are not compared; each gets one line saying so. With a
baseline the table also gets ``perplexity_ratio`` (run / baseline) with a paired 95% CI
over the windows both runs scored (from ``result.json``: no extra file).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from runner.measure.stats import summarize
from runner.quality.agreement import METHOD as AGREEMENT_METHOD
from runner.quality.agreement import agreement, check_same_workload, fingerprint
from runner.quality.outputs import OUTPUTS_FILE, read_outputs
from runner.quality.text import QualityInputError
from runner.sections.metrics import Stats
from runner.sections.quality import Agreement, PerplexityEval, Quality

log = logging.getLogger(__name__)

AGREEMENT_STATS = {
    "token_agreement": "token_match",
    "exact_match": "exact_match",
    "first_divergence": "first_divergence",
}
CI = ("mean", "ci95_low", "ci95_high")
QUALITY_COLUMNS = [
    "perplexity",
    "perplexity_ci95_low",
    "perplexity_ci95_high",
    "perplexity_tokens",
    *[f"{prefix}_{s}" for prefix in AGREEMENT_STATS for s in CI],
    "agreement_requests",
]
TEXT_COLUMNS = ["agreement_reference", "workload_sha256"]
RATIO = "perplexity_ratio"
RATIO_COLUMNS = [RATIO, f"{RATIO}_ci95_low", f"{RATIO}_ci95_high"]
RATIO_METHOD = (
    "run / baseline perplexity over the same windows of the same text; 95% CI from the "
    "paired per-window differences of mean NLL (cluster-robust over windows), through exp"
)
NOTES = "agreement_notes"  # df.attrs key: one line per run that was not compared
AXIS_LABELS = {
    "perplexity": "perplexity on the evaluation text",
    "token_agreement_mean": "token agreement with the reference, mean over requests",
}


def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _agreement_columns(agreed: Agreement | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for prefix, name in AGREEMENT_STATS.items():
        stats = getattr(agreed, name, None) or Stats()
        for s in CI:
            row[f"{prefix}_{s}"] = _num(getattr(stats, s))
    row["agreement_requests"] = _num(agreed.requests if agreed else None)
    row["agreement_reference"] = agreed.reference if agreed else None
    return row


def headline(data: dict[str, Any] | None) -> dict[str, Any]:
    """The quality columns of one run, from its ``result.json`` dict alone."""
    data = data or {}
    raw = data.get("quality")
    q = Quality.from_dict(raw) if isinstance(raw, dict) else Quality()
    evaluation = q.evaluation
    row: dict[str, Any] = {
        "perplexity": _num(q.perplexity),
        "perplexity_ci95_low": _num(q.perplexity_ci95_low),
        "perplexity_ci95_high": _num(q.perplexity_ci95_high),
        "perplexity_tokens": _num(evaluation.tokens_scored if evaluation else None),
        **_agreement_columns(q.agreement),
        "workload_sha256": fingerprint(data),
    }
    if q.lm_eval is not None:
        for task, metrics in sorted(q.lm_eval.results.items()):
            for metric, value in sorted(metrics.items()):
                row[f"lm_eval.{task}.{metric}"] = _num(value)
    return row


def _evaluation(data: dict[str, Any] | None) -> PerplexityEval | None:
    raw = (data or {}).get("quality")
    return Quality.from_dict(raw).evaluation if isinstance(raw, dict) else None


def perplexity_ratio(
    base: PerplexityEval | None, run: PerplexityEval | None
) -> tuple[float, float, float] | None:
    """``(ratio, low, high)`` of run / baseline perplexity, paired over windows; None unless
    both scored the same windows of the same text (same hash, tokens and window sizes)."""
    if base is None or run is None or not base.window_nll:
        return None
    same = (
        base.text_sha256 == run.text_sha256
        and base.text_tokens == run.text_tokens
        and base.window_tokens == run.window_tokens
        and base.window_scored == run.window_scored
        and len(base.window_nll) == len(run.window_nll) == len(base.window_scored)
    )
    if not same:
        return None
    values: list[float] = []
    clusters: list[int] = []
    pairs = zip(base.window_nll, run.window_nll, base.window_scored, strict=True)
    for w, (b, r, n) in enumerate(pairs):
        values += [r - b] * n  # each token of the window carries its window's difference
        clusters += [w] * n
    stats = summarize(values, clusters, unit="window")
    if stats.mean is None:
        return None
    low = math.exp(stats.ci95_low) if stats.ci95_low is not None else math.nan
    high = math.exp(stats.ci95_high) if stats.ci95_high is not None else math.nan
    return math.exp(stats.mean), low, high


def compare_with_baseline(
    df: pd.DataFrame,
    results: list[dict[str, Any] | None],
    baseline_dir: str | Path,
    baseline_label: str,
    baseline_result: dict[str, Any] | None,
) -> pd.DataFrame:
    """Copy of ``df`` comparing every ok run with the baseline run: ``perplexity_ratio``
    (from ``results``, each row's parsed ``result.json``) and the agreement columns.

    Reads the baseline's ``outputs.parquet`` once and each compared run's once. A run
    that cannot be compared (another workload, no outputs) gets empty columns and one line
    in ``df.attrs["agreement_notes"]``.
    """
    out = _add_ratio(df, results, baseline_result)
    notes: list[str] = []
    base_dir = Path(baseline_dir)
    base_rows = out[out["run_dir"].map(lambda d: Path(d).resolve() == base_dir.resolve())]
    base_fp = (
        base_rows.iloc[0]["workload_sha256"]
        if len(base_rows)
        else fingerprint(baseline_result or {})
    )
    try:
        reference = read_outputs(base_dir / OUTPUTS_FILE)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, FileNotFoundError) else ""
        notes.append(
            f"baseline {baseline_label}: no usable {OUTPUTS_FILE}"
            + (f" ({reason})" if reason else "")
            + "; no agreement computed"
        )
        reference = None
    rows = []
    for _, row in out.iterrows():
        agreed = None
        if reference is not None and row["status"] == "ok":
            try:
                check_same_workload(
                    base_fp if isinstance(base_fp, str) else None,
                    row["workload_sha256"] if isinstance(row["workload_sha256"], str) else None,
                    f"baseline {baseline_label}",
                    str(row["label"]),
                )
                candidate = read_outputs(Path(row["run_dir"]) / OUTPUTS_FILE)
            except QualityInputError as exc:
                notes.append(str(exc))
            except Exception as exc:
                notes.append(f"{row['label']}: no usable {OUTPUTS_FILE} ({type(exc).__name__})")
            else:
                agreed = agreement(reference, candidate, reference_dir=str(base_dir))
        columns = _agreement_columns(agreed)
        if agreed is not None:
            columns["agreement_reference"] = baseline_label
        rows.append(columns)
    for column in _agreement_columns(None):
        out[column] = [r[column] for r in rows]
    for note in notes:
        log.warning("agreement: %s", note)
    out.attrs = {**df.attrs, NOTES: notes}
    return out


def _add_ratio(
    df: pd.DataFrame, results: list[dict[str, Any] | None], baseline_result: dict[str, Any] | None
) -> pd.DataFrame:
    out = df.copy()
    base = _evaluation(baseline_result)
    ratios = []
    for data, status in zip(results, out["status"], strict=True):
        got = perplexity_ratio(base, _evaluation(data)) if status == "ok" else None
        ratios.append(got or (math.nan,) * 3)
    for position, column in enumerate(RATIO_COLUMNS):
        out[column] = [r[position] for r in ratios]
    return out


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


def display_columns(df: pd.DataFrame, fmt_ci: Any) -> dict[str, list[str]]:
    """Report-table columns (header -> cells): perplexity and agreement with 95% CIs."""
    out: dict[str, list[str]] = {}
    if _has(df, "perplexity"):
        out["perplexity"] = [
            fmt_ci(m, lo, hi)
            for m, lo, hi in zip(
                df["perplexity"],
                df["perplexity_ci95_low"],
                df["perplexity_ci95_high"],
                strict=True,
            )
        ]
    if _has(df, RATIO):
        baseline = df.get("is_baseline", pd.Series(False, index=df.index))
        out["ppl ×"] = [
            "baseline" if base else fmt_ci(r, lo, hi)
            for r, lo, hi, base in zip(*(df[c] for c in RATIO_COLUMNS), baseline, strict=True)
        ]
    for header, prefix in (("token agree", "token_agreement"), ("exact match", "exact_match")):
        if _has(df, f"{prefix}_mean"):
            out[header] = [
                fmt_ci(m, lo, hi)
                for m, lo, hi in zip(*(df[f"{prefix}_{s}"] for s in CI), strict=True)
            ]
    return out


def factor_panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    """``(column, CI prefix)`` of the quality panels of a factor's bar chart."""
    ok = df[df["status"] == "ok"]
    panels = []
    if _has(ok, "perplexity"):
        panels.append(("perplexity", "perplexity"))
    if _has(ok, "token_agreement_mean"):
        panels.append(("token_agreement_mean", "token_agreement"))
    return panels


def quality_axes(df: pd.DataFrame) -> list[tuple[str, bool]]:
    """``(quality column, higher is better)`` that some ok run has, for the Pareto plot."""
    ok = df[df["status"] == "ok"]
    axes = []
    if _has(ok, "perplexity"):
        axes.append(("perplexity", False))
    if _has(ok, "token_agreement_mean"):
        axes.append(("token_agreement_mean", True))
    return axes


def section(df: pd.DataFrame, energy_column: str | None, front: Any, fmt_num: Any) -> str:
    """The report's quality section: what the columns mean, the energy/quality front, and
    the runs that were not compared. ``front(xs, ys)`` marks the Pareto front."""
    axes = quality_axes(df)
    notes = df.attrs.get(NOTES) or []
    if not axes and not notes:
        return ""
    lines = [
        "## Quality",
        "",
        "- **perplexity**: teacher-forced, on the evaluation text, with the model exactly as "
        "measured (`quality.evaluation.method` in `result.json` says how); "
        "mean [95% CI over windows]; the same text and settings in every run for it to compare.",
        f"- **token agree / exact match** (against `agreement_reference`): {AGREEMENT_METHOD}.",
    ]
    if _has(df, RATIO):
        lines.append(f"- **ppl ×** (`perplexity_ratio`): {RATIO_METHOD}.")
    if energy_column is not None:
        for column, higher in axes:
            ok = df[(df["status"] == "ok") & df[column].notna() & df[energy_column].notna()]
            xs = [-v if higher else v for v in ok[column]]
            on = ok[front(xs, list(ok[energy_column]))]
            items = ", ".join(
                f"{r['label']} ({fmt_num(r[column])}, {fmt_num(r[energy_column])} mJ/token)"
                for _, r in on.sort_values(column).iterrows()
            )
            name = "token agreement" if column == "token_agreement_mean" else column
            lines.append(f"- Energy/{name} Pareto front: {items or 'no run'}.")
    if notes:
        lines += ["", "Not compared:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)
