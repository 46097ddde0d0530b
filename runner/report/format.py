"""How the report writes numbers and tables: significant digits, intervals, ratios near 1,
GitHub pipe tables. Pure functions of their inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

NO_CI = " (no CI)"  # a figure whose run had too few units for an interval


def fmt_num(value: Any) -> str:
    """A number with 3-4 significant digits; ``""`` for NaN/None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if not math.isfinite(x):
        return ""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:#.3g}"


def fmt_ratio(value: Any, near: float = 1.0) -> str:
    """A ratio with as many digits as it takes to tell it from 1 (``1.0018``, not ``1.00``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(x):
        return ""
    gap = abs(x - near)
    if 0 < gap < 0.005 and abs(x) < 100:
        decimals = min(4, max(3, -math.floor(math.log10(gap))))
        return f"{x:.{decimals}f}"
    return fmt_num(x)


def fmt_ci(mean: Any, low: Any, high: Any, missing: str = "") -> str:
    """``mean ± half`` for a symmetric CI, ``mean [low, high]`` otherwise, or the mean
    followed by ``missing`` when there is no interval."""
    text = fmt_num(mean)
    if not (text and fmt_num(low) and fmt_num(high)):
        return text + missing if text else text
    m, lo, hi = float(mean), float(low), float(high)
    if math.isclose(hi - m, m - lo, rel_tol=1e-6, abs_tol=1e-12 * max(1.0, abs(m))):
        return f"{text} ± {fmt_num(hi - m)}"
    return f"{text} [{fmt_num(lo)}, {fmt_num(hi)}]"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of a frame of strings."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def factor_cells(rows: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """A table's first columns: each swept factor's value per run (``—`` where unset), or
    the run's label where nothing was swept."""
    out = pd.DataFrame(index=rows.index)
    for factor in factors:
        out[factor] = [("—" if pd.isna(v) else str(v)) for v in rows[factor]]
    if not factors:
        out["run"] = rows["label"]
    return out
