"""Throttling and interference within the measured windows, read from the time series.

Pure: rows and windows in (runner.hardware.sampler), findings out, one per kind for the
whole run, naming the windows it happened in. The rules (docs/methodology.md):

- ``hardware.gpu_throttle``: a row inside a window whose ``gpu<i>_throttle_reasons`` has a
  thermal, power or hardware-slowdown bit set.
- ``hardware.clock_drop``: a row inside a window whose ``gpu<i>_sm_clock_mhz`` or
  ``cpu_freq_mhz_mean`` is more than ``drop`` (a fraction) below the level at the window's
  start: the last row at or before its first edge, else its first row.
- ``hardware.interference``: the mean of ``cpu_other_cores`` (CPU cores kept busy by
  processes outside the run) over a window's rows above ``cores``.

A window's rows are those stamped with its index; a window with no row (shorter than the
sampling period) is not judged, and the message says how many were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.hardware.gpu import HW_SLOWDOWN, POWER_BITS, THERMAL_BITS, throttle_names
from runner.hardware.sampler import Window
from runner.models.fallbacks import (
    HARDWARE_CLOCK_DROP,
    HARDWARE_GPU_THROTTLE,
    HARDWARE_INTERFERENCE,
)

# The reasons that mean the clocks were held down by heat or power (not idle, not a
# user's application clocks).
WARN_MASK = THERMAL_BITS | POWER_BITS | HW_SLOWDOWN
CLOCKS = re.compile(r"^(gpu\d+_sm_clock_mhz|cpu_freq_mhz_mean)$")
THROTTLE = re.compile(r"^(gpu\d+)_throttle_reasons$")


@dataclass(frozen=True)
class Finding:
    name: str
    message: str


def _value(row: dict[str, Any], column: str) -> float | None:
    v = row.get(column)
    return float(v) if isinstance(v, (int, float)) and v == v else None


def _windows_text(indices: Sequence[int], judged: int) -> str:
    shown = ", ".join(str(i) for i in indices)
    return f"in {len(indices)} of {judged} measured window(s) ({shown})"


def findings(
    rows: Sequence[dict[str, Any]],
    windows: Sequence[Window],
    *,
    drop: float,
    cores: float,
) -> list[Finding]:
    """The named warnings the rows support, for the windows that have rows."""
    columns = {k for row in rows for k in row}
    by_window: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("window") is not None:
            by_window.setdefault(int(row["window"]), []).append(row)
    judged = [w for w in windows if by_window.get(w.index)]
    out: list[Finding] = []

    throttled: dict[int, set[str]] = {}
    for w in judged:
        for row in by_window[w.index]:
            for column in columns:
                m = THROTTLE.match(column)
                mask = _value(row, column)
                if m and mask is not None and int(mask) & WARN_MASK:
                    names = throttle_names(int(mask) & WARN_MASK)
                    throttled.setdefault(w.index, set()).update(f"{m[1]}: {n}" for n in names)
    if throttled:
        seen = sorted({r for rs in throttled.values() for r in rs})
        out.append(
            Finding(
                HARDWARE_GPU_THROTTLE,
                f"{_windows_text(sorted(throttled), len(judged))} NVML reported {'; '.join(seen)}",
            )
        )

    drops: dict[int, list[str]] = {}
    for w in judged:
        before = [r for r in rows if r["t_seconds"] <= w.begin]
        start_row = before[-1] if before else by_window[w.index][0]
        for column in sorted(c for c in columns if CLOCKS.match(c)):
            start = _value(start_row, column)
            values = [v for r in by_window[w.index] if (v := _value(r, column)) is not None]
            if start is None or start <= 0 or not values:
                continue
            low = min(values)
            if low < start * (1 - drop):
                drops.setdefault(w.index, []).append(
                    f"{column} {start:.0f} -> {low:.0f} MHz ({low / start - 1:+.0%})"
                )
    if drops:
        first = min(drops)
        out.append(
            Finding(
                HARDWARE_CLOCK_DROP,
                f"{_windows_text(sorted(drops), len(judged))}: a clock fell more than "
                f"{drop:.0%} below its level at the window's start; window {first}: "
                f"{', '.join(drops[first])}",
            )
        )

    busy: dict[int, float] = {}
    for w in judged:
        values = [v for r in by_window[w.index] if (v := _value(r, "cpu_other_cores")) is not None]
        if values and sum(values) / len(values) > cores:
            busy[w.index] = sum(values) / len(values)
    if busy:
        worst = max(busy, key=lambda i: busy[i])
        out.append(
            Finding(
                HARDWARE_INTERFERENCE,
                f"{_windows_text(sorted(busy), len(judged))}: other processes kept more than "
                f"{cores:g} CPU cores busy on average (at most {busy[worst]:.2f}, window "
                f"{worst}): the run shared the machine",
            )
        )
    return out
