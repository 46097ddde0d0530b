"""Quality in the report: its columns and the comparison with the baseline run.

Columns (one row per run): ``perplexity`` with ``perplexity_ci95_low/high`` and
``perplexity_tokens`` (tokens scored), read from ``result.json``; ``token_agreement_*``,
``exact_match_*`` and ``first_divergence_*`` (``_mean``, ``_ci95_low``, ``_ci95_high``;
fractions and token indices) with ``agreement_requests`` and ``agreement_reference``;
``workload_sha256``; ``perplexity_group`` (:func:`perplexity_group`: which perplexities
can be compared); and ``lm_eval.<task>.<metric>`` for lm-eval results.

Agreement comes from the run's own ``quality.agreement`` (against its ``quality.reference``)
unless the report has a baseline: then every ok run is compared with the baseline run,
which is the one place the report opens ``outputs.parquet`` files. Runs whose workload
differs from the baseline's are not compared; each gets one line saying so. With a
baseline the table also gets ``perplexity_ratio`` (run / baseline) with a paired 95% CI
over the windows both runs scored (from ``result.json``: no extra file).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from runner.measure.stats import summarize
from runner.quality.agreement import agreement, check_same_workload, fingerprint
from runner.quality.outputs import OUTPUTS_FILE, read_outputs
from runner.quality.text import QualityInputError
from runner.sections.figures import finite_or_nan
from runner.sections.metrics import Stats
from runner.sections.quality import Agreement, PerplexityEval, Quality

if TYPE_CHECKING:  # compare reads the table this module's columns are part of
    from runner.report.compare import Baseline

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
TEXT_COLUMNS = ["agreement_reference", "workload_sha256", "perplexity_group"]
RATIO = "perplexity_ratio"
RATIO_COLUMNS = [RATIO, f"{RATIO}_ci95_low", f"{RATIO}_ci95_high"]
RATIO_METHOD = (
    "run / baseline perplexity over the same windows of the same text; 95% CI from the "
    "paired per-window differences of mean NLL (cluster-robust over windows), through exp"
)
LM_EVAL_PREFIX = "lm_eval."  # one column per lm-eval task and metric, as the runs have them
NOTES = "agreement_notes"  # df.attrs key: one line per run that was not compared


def _agreement_columns(agreed: Agreement | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for prefix, name in AGREEMENT_STATS.items():
        stats = getattr(agreed, name, None) or Stats()
        for s in CI:
            row[f"{prefix}_{s}"] = finite_or_nan(getattr(stats, s))
    row["agreement_requests"] = finite_or_nan(agreed.requests if agreed else None)
    row["agreement_reference"] = agreed.reference if agreed else None
    return row


def headline(data: dict[str, Any] | None) -> dict[str, Any]:
    """The quality columns of one run, from its ``result.json`` dict alone."""
    data = data or {}
    raw = data.get("quality")
    q = Quality.from_dict(raw) if isinstance(raw, dict) else Quality()
    evaluation = q.evaluation
    row: dict[str, Any] = {
        "perplexity": finite_or_nan(q.perplexity),
        "perplexity_ci95_low": finite_or_nan(q.perplexity_ci95_low),
        "perplexity_ci95_high": finite_or_nan(q.perplexity_ci95_high),
        "perplexity_tokens": finite_or_nan(evaluation.tokens_scored if evaluation else None),
        **_agreement_columns(q.agreement),
        "workload_sha256": fingerprint(data),
        "perplexity_group": perplexity_group(evaluation) if q.perplexity is not None else None,
    }
    if q.lm_eval is not None:
        for task, metrics in sorted(q.lm_eval.results.items()):
            for metric, value in sorted(metrics.items()):
                row[f"{LM_EVAL_PREFIX}{task}.{metric}"] = finite_or_nan(value)
    return row


def perplexity_group(evaluation: PerplexityEval | None) -> str | None:
    """A short name for what makes two perplexities comparable: the same evaluation text,
    read by the same tokenizer into the same windows. Runs with equal groups are ranked and
    compared together; across groups (another model's tokenizer) never."""
    if evaluation is None or not evaluation.text_sha256:
        return None
    if evaluation.token_ids_sha256:
        key = f"{evaluation.text_sha256}|{evaluation.token_ids_sha256}|{evaluation.window_tokens}"
    else:  # results written before token_ids_sha256: the windows' token counts tell it
        key = (
            "|".join(
                map(str, (evaluation.text_sha256, evaluation.text_tokens, evaluation.window_tokens))
            )
            + "|"
            + ",".join(map(str, evaluation.window_scored))
        )
    text = (evaluation.text or "text").rsplit("/", 1)[-1]
    return f"{text}#{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def evaluation(data: dict[str, Any] | None) -> PerplexityEval | None:
    """The perplexity evaluation of a result dict (what the ratio pairs), if any."""
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
        perplexity_group(base) == perplexity_group(run)
        and base.text_sha256 == run.text_sha256
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
    evaluations: list[PerplexityEval | None],
    baseline: Baseline,
    baseline_eval: PerplexityEval | None,
) -> pd.DataFrame:
    """Copy of ``df`` comparing every ok run with the baseline run: ``perplexity_ratio``
    (from ``evaluations``, each row's :func:`evaluation`, and the baseline's) and the
    agreement columns.

    Reads the baseline's ``outputs.parquet`` once and each compared run's once. A run
    that cannot be compared (another workload, no outputs) gets empty columns and one line
    in ``df.attrs["agreement_notes"]``.
    """
    out = _add_ratio(df, evaluations, baseline_eval)
    notes: list[str] = []
    base_dir = Path(baseline.row["run_dir"])
    baseline_label = baseline.label
    base_fp = baseline.row.get("workload_sha256")
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
    df: pd.DataFrame, evaluations: list[PerplexityEval | None], base: PerplexityEval | None
) -> pd.DataFrame:
    out = df.copy()
    ratios = []
    for run, status in zip(evaluations, out["status"], strict=True):
        got = perplexity_ratio(base, run) if status == "ok" else None
        ratios.append(got or (math.nan,) * 3)
    for position, column in enumerate(RATIO_COLUMNS):
        out[column] = [r[position] for r in ratios]
    return out
