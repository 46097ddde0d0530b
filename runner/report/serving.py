"""Load curves of a sweep under load: one curve per configuration, its knee and its
capacity at the SLO. Pure (tables in, tables and numbers out).

A sweep under load has a *load factor* (``scenario.rate``, or ``scenario.concurrency``
for a closed loop) and maybe other factors; each combination of the others is a
configuration, and its runs, ordered by load, are its curve. With repeats, each load's
figures are the means over its ok runs.

- The **knee** is where throughput stops following the load: the highest offered load
  whose achieved request rate is still at least :data:`KNEE_SHARE` of the offered one
  (a closed loop: whose achieved rate still rose by at least ``1 - KNEE_SHARE`` over
  the previous level's). Beyond it requests queue faster than they are served.
- The **capacity at the SLO** is the highest load whose share of requests meeting every
  objective reached ``scenario.slo_attainment``: the goodput still covers the load.
  None where no load did, or no objective was set.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

LOAD_FACTORS = ("scenario.rate", "scenario.concurrency")
KNEE_SHARE = 0.9
CURVE_COLUMNS = [
    "offered_rps",
    "achieved_rps",
    "goodput_rps",
    "slo_attainment",
    "slo_target",
    "output_tok_s",
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "itl_ms_p50",
    "itl_ms_p90",
    "itl_ms_p99",
    "e2e_ms_p50",
    "e2e_ms_p90",
    "e2e_ms_p99",
    "energy_per_request_j_gross",
    "energy_per_request_j_net",
    "energy_per_slo_request_j_net",
]
CI_SUFFIXES = ("_ci95_low", "_ci95_high")


@dataclass(frozen=True)
class Curve:
    """One configuration's runs by load: ``points`` has one row per load level (``load``
    the level, sorted), the :data:`CURVE_COLUMNS` (means over repeats), ``runs`` and
    ``flagged`` (a run of that load carries a ``serving.*`` named warning)."""

    label: str
    load_factor: str
    points: pd.DataFrame
    knee: float | None
    capacity: float | None


def load_factor(df: pd.DataFrame, factors: list[str]) -> str | None:
    """The swept load factor of a sweep under load, if any."""
    if "offered_rps" not in df.columns or not df["offered_rps"].notna().any():
        return None
    return next((f for f in LOAD_FACTORS if f in factors), None)


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def knee_of(points: pd.DataFrame, closed: bool) -> float | None:
    """See the module docstring; the ``load`` level, or None before any level qualifies."""
    knee = None
    previous = None
    for _, p in points.iterrows():
        achieved, offered = p["achieved_rps"], p["offered_rps"]
        if pd.isna(achieved) or pd.isna(offered):
            break
        if closed:
            ok = previous is None or achieved >= previous * (2 - KNEE_SHARE)
            previous = achieved
        else:
            ok = achieved >= KNEE_SHARE * offered
        if not ok:
            break
        knee = p["load"]
    return knee


def capacity_of(points: pd.DataFrame) -> float | None:
    """The highest load whose SLO attainment reached its target (see the docstring)."""
    within = points[
        points["slo_attainment"].notna()
        & (points["slo_attainment"] >= points["slo_target"].fillna(1.0))
    ]
    return None if within.empty else float(within["load"].max())


def curves(df: pd.DataFrame, factors: list[str]) -> list[Curve]:
    """The load curves of the ok runs of ``df`` (none without a swept load factor)."""
    load = load_factor(df, factors)
    if load is None:
        return []
    ok = df[(df["status"] == "ok") & df["offered_rps"].notna()].copy()
    ok["load"] = [_number(v) for v in ok[load]]
    ok = ok[ok["load"].notna()]
    others = [f for f in factors if f != load]
    columns = [c for c in CURVE_COLUMNS if c in ok.columns]
    columns += [c + s for c in columns for s in CI_SUFFIXES if c + s in ok.columns]
    for column in columns:
        ok[column] = pd.to_numeric(ok[column], errors="coerce")
    out = []
    groups = ok.groupby(others, dropna=False, sort=False) if others else [((), ok)]
    for key, rows in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{f}={v}" for f, v in zip(others, key, strict=True)) or "all runs"
        points = rows.groupby("load", sort=True)[columns].mean(numeric_only=True)
        points["runs"] = rows.groupby("load", sort=True).size()
        warned = rows.get("named_warnings", pd.Series("", index=rows.index)).fillna("")
        flagged = warned.astype(str).str.contains("serving.", regex=False)
        points["flagged"] = flagged.groupby(rows["load"]).any()
        points = points.reset_index()
        closed = load == "scenario.concurrency"
        out.append(Curve(label, load, points, knee_of(points, closed), capacity_of(points)))
    return out


def slo_text(df: pd.DataFrame) -> str:
    """The objectives the runs were held to, as one phrase ("" when none)."""
    parts = []
    for column, name in (
        ("slo_ttft_ms", "TTFT"),
        ("slo_itl_ms", "every inter-token gap"),
        ("slo_e2e_ms", "end-to-end"),
    ):
        if column in df.columns and df[column].notna().any():
            values = sorted(set(df[column].dropna()))
            parts.append(f"{name} ≤ {'/'.join(f'{v:g}' for v in values)} ms")
    if not parts:
        return ""
    targets = sorted(set(df["slo_target"].dropna())) if "slo_target" in df.columns else []
    share = "/".join(f"{t:.0%}" for t in targets) or "all"
    return f"{' and '.join(parts)} for at least {share} of requests"
