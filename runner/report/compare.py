"""Comparison against a baseline run, and the energy/latency Pareto front.

Every relative column is ``run / baseline`` of a headline mean, so a
``speedup_output_tok_s`` of 2 means twice the baseline's output throughput, and an
``energy_per_token_ratio`` of 0.5 half its energy per token.

Uncertainty of a ratio ``R = a / b`` (delta method on the log): the relative
standard errors add in quadrature, ``Var(log R) ~ (se_a/a)^2 + (se_b/b)^2``, so the
95% CI is ``R * exp(+-h)`` with ``h = sqrt(r_a^2 + r_b^2)``, ``r = CI half-width / mean``
of each run's own 95% CI. The interval is asymmetric, always positive and always
contains ``R``. Runs are treated as independent. Energy is integrated once over the
measured window and has no CI of its own: its relative half-width is taken as that of
the run's output throughput (energy per token = mean power / throughput, power assumed
steady), which makes the energy-ratio CI a lower bound on the true uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runner.config.overrides import split_joined
from runner.report.collect import ReportError, factor_columns, load_run, parse_overrides, table
from runner.report.metrics import LATENCIES, Metric, energy_metric
from runner.results import RESULT_FILE
from runner.search.pareto import minimal_2d

# relative column -> (headline column of the mean, CI prefix for its relative half-width)
RATIOS: dict[str, tuple[str, str]] = {
    "speedup_output_tok_s": ("output_tok_s_mean", "output_tok_s"),
    "ttft_ratio": ("ttft_ms_mean", "ttft_ms"),
    "itl_ratio": ("itl_ms_mean", "itl_ms"),
    "energy_per_token_ratio": ("energy_per_token_mj_gross", "output_tok_s"),
    "energy_per_token_net_ratio": ("energy_per_token_mj_net", "output_tok_s"),
}
RATIO_METHOD = (
    "delta method on the log ratio: relative half-widths of the two runs' 95% CIs added "
    "in quadrature, CI = R·exp(±h); energy borrows the relative CI of output throughput "
    "(a lower bound)"
)


@dataclass
class Baseline:
    """The reference run: its table row, a label for the report, its index in the table."""

    row: pd.Series
    label: str
    index: Any = None  # None when the baseline directory is outside the table


def parse_spec(spec: str) -> dict[str, str]:
    """``"quant=none,compile=off"`` -> ``{"quant": "none", "compile": "off"}``, read as the
    report reads a run's overrides (:func:`~runner.report.collect.parse_overrides`)."""
    try:
        items = split_joined(spec)
    except ValueError:
        raise ReportError(f"baseline {spec!r}: expected key=value[,key=value...]") from None
    if not items:
        raise ReportError("baseline: empty spec")
    wanted = parse_overrides(items)
    if not wanted:
        raise ReportError(f"baseline {spec!r}: names no factor")
    return wanted


def _match_spec(df: pd.DataFrame, spec: str) -> Baseline:
    wanted = parse_spec(spec)
    factors = factor_columns(df)
    unknown = [k for k in wanted if k not in factors]
    if unknown:
        raise ReportError(
            f"baseline {spec!r}: {', '.join(unknown)} is not an override of any run "
            f"(overrides: {', '.join(factors) or 'none'})"
        )
    mask = pd.Series(True, index=df.index)
    for key, value in wanted.items():
        mask &= df[key].astype(object).eq(value)
    matched = df[mask]
    ok = matched[matched["status"] == "ok"]
    if len(ok) == 1:
        return Baseline(ok.iloc[0], str(ok.iloc[0]["label"]), ok.index[0])
    if len(ok) > 1:
        raise ReportError(
            f"baseline {spec!r} matches {len(ok)} runs ({'; '.join(ok['label'])}): "
            "add factors to pick one"
        )
    if len(matched):
        states = ", ".join(f"{r.label} ({r.status})" for r in matched.itertuples())
        raise ReportError(f"baseline {spec!r} matches no successful run, only: {states}")
    raise ReportError(f"baseline {spec!r} matches no run")


def _from_directory(df: pd.DataFrame, path: Path) -> Baseline:
    target = path.resolve()
    for index, run_dir in df["run_dir"].items():
        if Path(run_dir).resolve() == target:
            row = df.loc[index]
            if row["status"] != "ok":
                raise ReportError(f"baseline {path}: run status is {row['status']}, not ok")
            return Baseline(row, str(row["label"]), index)
    rec = load_run(path)
    if rec.status != "ok":
        raise ReportError(f"baseline {path}: {rec.status} run ({rec.error or 'no result'})")
    row = table([rec]).iloc[0]
    return Baseline(row, f"{row['run_id']} ({path})")


def resolve_baseline(df: pd.DataFrame, spec: str) -> Baseline:
    """The baseline named by ``spec``: a run directory, or ``k=v,...`` matching one ok run.

    Raises :class:`ReportError` when it matches no run, several runs, or no ok run.
    """
    path = Path(spec)
    if path.is_file() and path.name == RESULT_FILE:
        path = path.parent
    if path.is_dir():
        return _from_directory(df, path)
    if "=" not in spec:
        raise ReportError(f"baseline {spec!r}: neither key=value[,...] nor a run directory")
    return _match_spec(df, spec)


def relative_half_width(row: pd.Series, prefix: str) -> float:
    """Half-width of the 95% CI of ``{prefix}_mean`` divided by the mean (NaN if unknown)."""
    mean = row.get(f"{prefix}_mean", math.nan)
    low = row.get(f"{prefix}_ci95_low", math.nan)
    high = row.get(f"{prefix}_ci95_high", math.nan)
    try:
        value = (float(high) - float(low)) / 2 / float(mean)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan
    return abs(value) if math.isfinite(value) else math.nan


def ratio_ci(num: float, num_rel: float, den: float, den_rel: float) -> tuple[float, ...]:
    """``(R, low, high)`` for ``R = num / den`` given relative CI half-widths (see module doc)."""
    if not (num > 0 and den > 0):  # also False for NaN
        return math.nan, math.nan, math.nan
    ratio = num / den
    h = math.hypot(num_rel, den_rel)
    if not math.isfinite(h):
        return ratio, math.nan, math.nan
    return ratio, ratio * math.exp(-h), ratio * math.exp(h)


def _relative_half_widths(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """:func:`relative_half_width` of every row at once."""
    mean = frame[f"{prefix}_mean"].astype(float)
    half = (frame[f"{prefix}_ci95_high"].astype(float) - frame[f"{prefix}_ci95_low"]) / 2
    rel = (half / mean).abs()
    return rel.where(np.isfinite(rel))


def add_relative_columns(df: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Copy of ``df`` with ``is_baseline`` and, per :data:`RATIOS`, ``<name>``,
    ``<name>_ci95_low``, ``<name>_ci95_high`` (ok runs only; the baseline itself is 1 [1, 1]).
    """
    out = df.copy()
    is_base = out.index == baseline.index if baseline.index is not None else False
    out["is_baseline"] = is_base
    base = baseline.row
    ok = out["status"] == "ok"
    for name, (column, ci_prefix) in RATIOS.items():
        num = out[column].astype(float)
        den = float(base[column]) if base[column] is not None else math.nan
        valid = ok & (num > 0) & (den > 0)  # False for NaN
        h = np.hypot(_relative_half_widths(out, ci_prefix), relative_half_width(base, ci_prefix))
        ratio = (num / den).where(valid)
        low, high = ratio * np.exp(-h), ratio * np.exp(h)
        if baseline.index is not None:
            one = 1.0 if float(base[column]) > 0 else math.nan
            for series in (ratio, low, high):
                series[baseline.index] = one
        out[name], out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = ratio, low, high
    return out


# --------------------------------------------------------------------------- Pareto front

LATENCY_AXES = tuple(m.column for m in LATENCIES)


def pareto_metrics(df: pd.DataFrame) -> tuple[Metric, Metric] | None:
    """``(latency, energy)`` metrics of the energy/latency Pareto front, or None without
    energy. Energy per token is net when every ok run with energy has it, else gross;
    latency is the mean end-to-end request latency (falling back to ITL, then TTFT)."""
    energy = energy_metric(df)
    if energy is None:
        return None
    has_energy = df[(df["status"] == "ok") & df[energy.column].notna()]
    for latency in LATENCIES:
        if has_energy[latency.column].notna().any():
            return latency, energy
    return None


def pareto_axes(df: pd.DataFrame) -> tuple[str, str] | None:
    """The columns of :func:`pareto_metrics` (latency, energy), or None without energy."""
    metrics = pareto_metrics(df)
    return None if metrics is None else (metrics[0].column, metrics[1].column)


def front_mask(df: pd.DataFrame, x: Metric, y: Metric) -> pd.Series:
    """True for the ok runs on the Pareto front of ``x`` against ``y`` (each in its own
    direction: a higher-is-better metric is maximised), aligned with ``df``."""
    ok = df[(df["status"] == "ok") & df[x.column].notna() & df[y.column].notna()]
    xs = ok[x.column].astype(float) * (1 if x.lower_is_better else -1)
    ys = ok[y.column].astype(float) * (1 if y.lower_is_better else -1)
    mask = pd.Series(False, index=df.index)
    mask[ok.index] = pareto_front(list(xs), list(ys))
    return mask


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """True for points not dominated when minimising both x and y (NaN points: False)."""
    return minimal_2d(xs, ys)
