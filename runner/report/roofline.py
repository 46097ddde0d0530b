"""The runs against the hardware's limit, as the report table holds them: the columns it
takes from each run's ``metrics.roofline`` (runner.sections.hardware), the roofs (one per
device and dtype) and each run's two points, decode and prefill. Pure functions of the
table; the figure is :mod:`runner.report.roofline_plot`, the section of report.md
:mod:`runner.report.roofline_section`.

Units: GB/s (1e9 bytes per second), TFLOP/s (1e12), arithmetic intensity in FLOPs per byte.
The utilisations (the headline figures ``decode_bw_util`` and ``prefill_compute_util``) are
fractions of the peaks measured on the run's machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from runner.sections.hardware import Roofline

PREFIX = "metrics.roofline."  # the columns are the result's own dotted keys
TEXT_FIELDS = ("device", "dtype")
NUMBER_FIELDS = (
    "peak_bandwidth_gbs",
    "peak_matmul_tflops",
    "theoretical_bandwidth_gbs",
    "decode_intensity",
    "prefill_intensity",
    "decode_bandwidth_gbs",
    "prefill_tflops",
    "decode_bandwidth_util_theoretical",
)
TEXT_COLUMNS = [PREFIX + f for f in TEXT_FIELDS]
NUMBER_COLUMNS = [PREFIX + f for f in NUMBER_FIELDS]
COLUMNS = [*TEXT_COLUMNS, *NUMBER_COLUMNS]

DEVICE, DTYPE = TEXT_COLUMNS
PEAK_GBS, PEAK_TFLOPS, THEORETICAL_GBS = NUMBER_COLUMNS[:3]
DECODE_INTENSITY, PREFILL_INTENSITY, DECODE_GBS, PREFILL_TFLOPS = NUMBER_COLUMNS[3:7]
DECODE_UTIL_THEORETICAL = NUMBER_COLUMNS[7]
DECODE_UTIL, PREFILL_UTIL = "decode_bw_util", "prefill_compute_util"  # headline figures


def roofline_row(roofline: Roofline | None) -> dict[str, Any]:
    """The report table's roofline columns of one run (None where the run has none)."""
    section = roofline or Roofline()
    return {PREFIX + f: getattr(section, f) for f in (*TEXT_FIELDS, *NUMBER_FIELDS)}


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def with_roofline(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows that have a roofline: a measured decode bandwidth or prefill rate."""
    if DECODE_GBS not in df.columns or PREFILL_TFLOPS not in df.columns:
        return df.iloc[:0]
    ok = df[df["status"] == "ok"]
    return ok[ok[DECODE_GBS].notna() | ok[PREFILL_TFLOPS].notna()]


def device_of(row: pd.Series) -> str:
    """``NVIDIA H100 (bfloat16)``: what a roof is for ("unknown device" where unsaid)."""
    device = row.get(DEVICE)
    device = device if isinstance(device, str) and device else "unknown device"
    dtype = row.get(DTYPE)
    return f"{device} ({dtype})" if isinstance(dtype, str) and dtype else device


@dataclass(frozen=True)
class Roof:
    """The limit of one device in one dtype: the median of its runs' measured peaks
    (``runs`` of them); ``theoretical_gbs`` NaN where unknown (CPUs)."""

    name: str
    peak_tflops: float
    peak_gbs: float
    theoretical_gbs: float
    runs: int

    @property
    def ridge(self) -> float:
        """The intensity (FLOP/byte) where the bandwidth slope meets the compute roof."""
        return self.peak_tflops * 1000 / self.peak_gbs

    def tflops_at(self, intensity: float) -> float:
        """The roof at ``intensity``: min(peak compute, intensity x peak bandwidth)."""
        return min(self.peak_tflops, intensity * self.peak_gbs / 1000)


def roofs(df: pd.DataFrame) -> list[Roof]:
    """One roof per device and dtype among the runs with a roofline and both peaks,
    in the order first seen."""
    rows = with_roofline(df)
    out = []
    for name, part in rows.groupby(rows.apply(device_of, axis=1), sort=False):
        tflops = pd.to_numeric(part[PEAK_TFLOPS], errors="coerce").dropna()
        gbs = pd.to_numeric(part[PEAK_GBS], errors="coerce").dropna()
        theoretical = pd.to_numeric(part[THEORETICAL_GBS], errors="coerce").dropna()
        if tflops.empty or gbs.empty or tflops.median() <= 0 or gbs.median() <= 0:
            continue
        out.append(
            Roof(
                str(name),
                float(tflops.median()),
                float(gbs.median()),
                float(theoretical.median()) if len(theoretical) else math.nan,
                len(part),
            )
        )
    return out


@dataclass(frozen=True)
class Point:
    """One run's decode or prefill on the roofline: intensity (FLOP/byte) and TFLOP/s."""

    configuration: str
    phase: str  # "decode" or "prefill"
    intensity: float
    tflops: float


def points(df: pd.DataFrame) -> list[Point]:
    """Each run's two points where it has them: decode at its intensity with the FLOP rate
    its bandwidth gives (GB/s x FLOP/byte / 1000), prefill at its intensity and rate.
    A configuration is the run's point (its repeats share it)."""
    out = []
    for _, row in with_roofline(df).iterrows():
        config = str(row.get("point") or row.get("label"))
        decode_x, gbs = _number(row.get(DECODE_INTENSITY)), _number(row.get(DECODE_GBS))
        if decode_x > 0 and gbs > 0:
            out.append(Point(config, "decode", decode_x, gbs * decode_x / 1000))
        prefill_x, tflops = _number(row.get(PREFILL_INTENSITY)), _number(row.get(PREFILL_TFLOPS))
        if prefill_x > 0 and tflops > 0:
            out.append(Point(config, "prefill", prefill_x, tflops))
    return out
