"""One run's ``timeseries.parquet`` (runner.hardware.sampler) as the report draws it: the
phases as bands of time, the measured windows, and which panels the machine has data for.
Pure functions of the table; the figure is :mod:`runner.report.timeseries_plot`.

Panels, in order, each left out when none of its columns has a value: power (W: every GPU,
every RAPL domain; where neither exists, the CPU cores busy instead, which every Linux
machine has), clocks (MHz: GPU SM and memory, the CPUs' mean frequency) and temperature
(°C: GPU, CPU package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from runner.hardware.sampler import Window, read_windows

TIME = "t_seconds"
PHASE = "phase"
WINDOW = "window"
UNKNOWN_PHASE = "unknown"


@dataclass(frozen=True)
class Band:
    """A stretch of one phase, in seconds since the run started: from its first row to the
    next band's first row (the last band: to its own last row)."""

    phase: str
    start: float
    end: float


@dataclass(frozen=True)
class Series:
    column: str
    label: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    series: tuple[Series, ...]


def read_timeseries(path: Path) -> tuple[pd.DataFrame, list[Window]]:
    """The table sorted by time, and the windows kept in its metadata ([] where none).
    Raises ``ValueError`` for a table without a ``t_seconds`` column; pyarrow's errors
    for an unreadable file."""
    table = pd.read_parquet(path)
    if TIME not in table.columns:
        raise ValueError(f"{path.name} has no {TIME} column")
    table = table[pd.to_numeric(table[TIME], errors="coerce").notna()]
    table = table.sort_values(TIME, kind="stable").reset_index(drop=True)
    try:
        windows = read_windows(path)
    except Exception:  # edges in the metadata are a bonus: the window column has them too
        windows = []
    return table, windows


def phase_bands(times: list[float], phases: list[object]) -> list[Band]:
    """Contiguous rows of one phase as bands, in time order (a phase that comes back later,
    such as ``measure`` between cooldowns, is a band each time). ``times`` ascending; the
    last band ends one median sampling period after its last row, so it has a width."""
    bands: list[Band] = []
    names = [p if isinstance(p, str) and p else UNKNOWN_PHASE for p in phases]
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    period = gaps[len(gaps) // 2] if gaps else 0.0
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            end = times[i] if i < len(names) else times[i - 1] + period
            bands.append(Band(names[start], float(times[start]), float(end)))
            start = i
    return bands


def window_spans(table: pd.DataFrame, windows: list[Window]) -> list[tuple[float, float]]:
    """Each measured window's (begin, end) in seconds: the edges the sampler stamped (an
    open end: the window's last row, else the table's end), else the first and last row
    stamped with its index."""
    last = float(table[TIME].iloc[-1]) if len(table) else 0.0
    if windows:
        spans = []
        for w in windows:
            end = w.end
            if end is None:
                rows = table[table[WINDOW] == w.index] if WINDOW in table.columns else table[:0]
                end = float(rows[TIME].iloc[-1]) if len(rows) else last
            spans.append((float(w.begin), float(end)))
        return spans
    if WINDOW not in table.columns:
        return []
    stamped = table[table[WINDOW].notna()]
    grouped = stamped.groupby(WINDOW, sort=True)[TIME]
    return [(float(lo), float(hi)) for lo, hi in zip(grouped.min(), grouped.max(), strict=True)]


def _has_values(table: pd.DataFrame, column: str) -> bool:
    if column not in table.columns:
        return False
    return bool(pd.to_numeric(table[column], errors="coerce").notna().any())


def _per_gpu(table: pd.DataFrame, suffix: str, label: str) -> list[Series]:
    pattern = re.compile(rf"^gpu(\d+)_{suffix}$")
    found = sorted((int(m.group(1)), c) for c in table.columns if (m := pattern.match(str(c))))
    return [Series(c, label.format(i=i)) for i, c in found if _has_values(table, c)]


def _keep(table: pd.DataFrame, series: list[Series]) -> list[Series]:
    return [s for s in series if _has_values(table, s.column)]


CPU_CORES = Panel(
    "CPU cores busy",
    "cores",
    (
        Series("cpu_tree_cores", "this run's processes"),
        Series("cpu_other_cores", "other processes"),
    ),
)


def panels(table: pd.DataFrame) -> list[Panel]:
    """The panels with data, in order (see the module docstring)."""
    rapl = sorted(c for c in table.columns if re.match(r"^rapl_.+_w$", str(c)))
    power = _per_gpu(table, "power_w", "GPU {i}") + _keep(
        table, [Series(c, "RAPL " + c.removeprefix("rapl_").removesuffix("_w")) for c in rapl]
    )
    cores = Panel(CPU_CORES.title, CPU_CORES.unit, tuple(_keep(table, list(CPU_CORES.series))))
    clocks = (
        _per_gpu(table, "sm_clock_mhz", "GPU {i} SM")
        + _per_gpu(table, "mem_clock_mhz", "GPU {i} memory")
        + _keep(table, [Series("cpu_freq_mhz_mean", "CPU mean")])
    )
    temps = _per_gpu(table, "temp_c", "GPU {i}") + _keep(
        table, [Series("cpu_temp_c", "CPU package")]
    )
    out = [
        Panel("power", "W", tuple(power)) if power else cores,
        Panel("clocks", "MHz", tuple(clocks)),
        Panel("temperature", "°C", tuple(temps)),
    ]
    return [p for p in out if p.series]
