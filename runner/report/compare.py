"""Comparison against a baseline run, and the energy/latency Pareto front.

Every relative column is ``run / baseline`` of a headline figure, so a
``speedup_output_tok_s`` of 2 means twice the baseline's output throughput (total tokens
over total measured time: a ratio of totals, never of per-call means), and an
``energy_per_token_ratio`` of 0.5 half its energy per token.

Uncertainty of a ratio ``R = a / b`` (delta method on the log): each run's own 95% CI
gives the half-width of its log, ``h = (log high - log low) / 2`` (the CIs of positive
figures are on the log scale already), the two add in quadrature, and the 95% CI is
``R * exp(+-sqrt(h_a^2 + h_b^2))``: asymmetric, always positive, always containing ``R``.
Runs are treated as independent, and these are within-run CIs: the calls or passes of
each run, not the run-to-run variation a rerun would show. A run without a CI of its own
(fewer than 3 calls or passes) gives a ratio without one. Energy is integrated once over
the measured window and has no CI of its own, so energy ratios have none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runner.config.overrides import split_joined
from runner.report.collect import ReportError, factor_columns, load_run, parse_overrides, table
from runner.report.metrics import (
    ENERGY_GROSS,
    ENERGY_NET,
    ITL,
    LATENCIES,
    THROUGHPUT,
    TTFT,
    Metric,
    energy_metric,
)
from runner.results import RESULT_FILE
from runner.search.pareto import minimal_2d

# relative column -> the metric it is the ratio of
RATIOS: dict[str, Metric] = {
    "speedup_output_tok_s": THROUGHPUT,
    "ttft_ratio": TTFT,
    "itl_ratio": ITL,
    "energy_per_token_ratio": ENERGY_GROSS,
    "energy_per_token_net_ratio": ENERGY_NET,
}
RATIO_METHOD = (
    "run ÷ baseline of the headline figures (throughput: total tokens over total time); "
    "95% CI by the delta method on the log ratio, the two runs' own log-scale CI "
    "half-widths added in quadrature (runs assumed independent; within-run CIs, so "
    "run-to-run variation is not in it); no CI where a run has none (energy, or fewer "
    "than 3 calls or passes)"
)


@dataclass
class Baseline:
    """The reference run: its table row, a label for the report, its index in the table.

    In a sweep with repeats the baseline is a point: ``by_repeat`` maps each of its
    repeats to that repeat's run (``row``/``index``: the first), and every run is compared
    with the baseline run of its own repeat.
    """

    row: pd.Series
    label: str
    index: Any = None  # None when the baseline directory is outside the table
    by_repeat: dict[int, Any] = field(default_factory=dict)

    @property
    def indices(self) -> list[Any]:
        """Every baseline run in the table (one per repeat)."""
        return list(self.by_repeat.values()) or ([self.index] if self.index is not None else [])


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
    if len(ok) > 1 and ok["point"].nunique() == 1 and ok["repeat"].notna().all():
        # The repeats of one point: the baseline of each repeat is that repeat's run.
        ordered = ok.sort_values("repeat", kind="stable")
        by_repeat = {int(r): i for r, i in zip(ordered["repeat"], ordered.index, strict=True)}
        first = ordered.iloc[0]
        return Baseline(first, str(first["point"]), ordered.index[0], by_repeat)
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


def log_half_width(row: pd.Series, metric: Metric) -> float:
    """Half-width of the log of the run's own 95% CI of ``metric``,
    ``(log high - log low) / 2``; NaN without a positive CI."""
    columns = metric.ci_columns
    if columns is None:
        return math.nan
    try:
        low, high = float(row.get(columns[0], math.nan)), float(row.get(columns[1], math.nan))
    except (TypeError, ValueError):
        return math.nan
    if not (low > 0 and high >= low):  # also False for NaN
        return math.nan
    return (math.log(high) - math.log(low)) / 2


def ratio_ci(num: float, num_h: float, den: float, den_h: float) -> tuple[float, ...]:
    """``(R, low, high)`` for ``R = num / den`` given the log half-widths of both (see the
    module doc); the bounds are NaN where either half-width is."""
    if not (num > 0 and den > 0):  # also False for NaN
        return math.nan, math.nan, math.nan
    ratio = num / den
    h = math.hypot(num_h, den_h)
    if not math.isfinite(h):
        return ratio, math.nan, math.nan
    return ratio, ratio * math.exp(-h), ratio * math.exp(h)


def _log_half_widths(frame: pd.DataFrame, metric: Metric) -> pd.Series:
    """:func:`log_half_width` of every row at once."""
    if metric.ci_columns is None:
        return pd.Series(math.nan, index=frame.index)
    low, high = (frame[c].astype(float) for c in metric.ci_columns)
    positive = (low > 0) & (high >= low)
    h = (np.log(high.where(positive)) - np.log(low.where(positive))) / 2
    return h.where(np.isfinite(h))


def add_relative_columns(df: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """Copy of ``df`` with ``is_baseline`` and, per :data:`RATIOS`, ``<name>``,
    ``<name>_ci95_low``, ``<name>_ci95_high`` (ok runs only; the baseline itself is 1 [1, 1]).
    """
    out = df.copy()
    out["is_baseline"] = out.index.isin(baseline.indices)
    # Each run's baseline run: its own repeat's, where the baseline is a repeated point.
    base_of = pd.Series(baseline.index, index=out.index, dtype=object)
    if baseline.by_repeat and "repeat" in out.columns:
        mapped = out["repeat"].map(
            lambda r: baseline.by_repeat.get(int(r)) if pd.notna(r) else None
        )
        base_of = mapped.where(mapped.notna(), baseline.index)
    ok = out["status"] == "ok"
    for name, metric in RATIOS.items():
        column = metric.column
        num = out[column].astype(float)
        if baseline.index is None:  # a directory outside the table
            den = pd.Series(float(baseline.row[column]), index=out.index, dtype=float)
            den_h = pd.Series(log_half_width(baseline.row, metric), index=out.index)
        else:
            den = pd.Series(out.loc[base_of, column].astype(float).to_numpy(), index=out.index)
            den_h = pd.Series(_log_half_widths(out, metric).loc[base_of].to_numpy(), out.index)
        valid = ok & (num > 0) & (den > 0)  # False for NaN
        h = np.hypot(_log_half_widths(out, metric), den_h)
        ratio = (num / den).where(valid)
        low, high = ratio * np.exp(-h), ratio * np.exp(h)
        for index in baseline.indices:
            one = 1.0 if out.loc[index, column] > 0 else math.nan
            for series in (ratio, low, high):
                series[index] = one
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
    if len(ok):
        mask[ok.index] = pareto_front(list(xs), list(ys))
    return mask


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """True for points not dominated when minimising both x and y (NaN points: False)."""
    return minimal_2d(xs, ys)
