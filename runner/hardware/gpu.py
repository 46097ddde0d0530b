"""The GPU side of the time series, from NVML (runner.measure.nvml), one source per GPU,
and the pure readings of what NVML says: why the clocks are held down
(:func:`throttle_names`) and the memory bandwidth a bus allows
(:func:`theoretical_bandwidth_gbs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from runner.hardware.sources import Absent, Reading, Source
from runner.measure.nvml import NvmlLike, NvmlNotSupported

log = logging.getLogger(__name__)

# NVML's clocks event (formerly "throttle") reasons, nvmlClocksEventReason* in nvml.h.
GPU_IDLE = 0x1
APPLICATIONS_CLOCKS = 0x2
SW_POWER_CAP = 0x4
HW_SLOWDOWN = 0x8  # heat, the power brake or a power excursion: NVML may set 0x40 or 0x80 too
SYNC_BOOST = 0x10
SW_THERMAL = 0x20
HW_THERMAL = 0x40
HW_POWER_BRAKE = 0x80
DISPLAY_CLOCK = 0x100
THROTTLE_REASONS = {
    GPU_IDLE: "gpu_idle",
    APPLICATIONS_CLOCKS: "applications_clocks",
    SW_POWER_CAP: "sw_power_cap",
    HW_SLOWDOWN: "hw_slowdown",
    SYNC_BOOST: "sync_boost",
    SW_THERMAL: "sw_thermal",
    HW_THERMAL: "hw_thermal",
    HW_POWER_BRAKE: "hw_power_brake",
    DISPLAY_CLOCK: "display_clock",
}
THERMAL_BITS = SW_THERMAL | HW_THERMAL
POWER_BITS = SW_POWER_CAP | HW_POWER_BRAKE


def throttle_names(mask: int) -> list[str]:
    """The reasons set in an NVML clocks event mask, lowest bit first; a bit this module
    does not know is named by its value (``unknown_0x200``)."""
    bits = [1 << i for i in range(mask.bit_length()) if mask >> i & 1]
    return [THROTTLE_REASONS.get(bit, f"unknown_{bit:#x}") for bit in bits]


def theoretical_bandwidth_gbs(bus_width_bits: int, mem_clock_mhz: float) -> float:
    """An approximate peak memory bandwidth, GB/s (1e9 bytes/s): bytes per transfer
    (bus width / 8) × the memory clock × 2 transfers per clock (double data rate).

    An approximation: it takes NVML's memory clock as half the data rate per pin. That
    holds for HBM (H100 SXM: 5120 bits at 2619 MHz, about 3352 GB/s, the datasheet's
    3.35 TB/s), but GDDR5X/6/6X move more bits per reported clock (quad rate, PAM4), so
    for them this figure is low; compare with the datasheet, or measure it (the probe).
    """
    return bus_width_bits / 8 * mem_clock_mhz * 1e6 * 2 / 1e9


class GpuSeries:
    """One GPU's columns, prefixed ``gpu<index>_``: ``power_w`` (board power), ``energy_j``
    (NVML's total energy counter, J since the driver loaded), ``sm_clock_mhz``,
    ``mem_clock_mhz``, ``temp_c``, ``util_pct`` and ``mem_util_pct`` (NVML's own rates over
    its last sample period), ``throttle_reasons`` (the raw clocks event mask,
    :func:`throttle_names`). A query that fails reads None; one the GPU does not support
    (the energy counter before Volta) is not asked again."""

    def __init__(self, nvml: NvmlLike, index: int, handle: Any) -> None:
        self.nvml, self.index, self.handle = nvml, index, handle
        self.name = f"gpu{index}"
        self._unsupported: set[str] = set()

    def _ask(self, query: str, call: Callable[[Any], Any]) -> Any:
        if query in self._unsupported:
            return None
        try:
            return call(self.handle)
        except NvmlNotSupported:
            self._unsupported.add(query)
        except Exception as exc:  # a read never raises: this tick's value is unknown
            log.debug("NVML %s of GPU %d failed: %s", query, self.index, exc)
        return None

    def read(self, now: float) -> Reading:
        nv = self.nvml
        power = self._ask("power", nv.power_mw)
        energy = self._ask("energy", nv.total_energy_mj)
        sm, mem = self._ask("clocks", nv.clocks_mhz) or (None, None)
        util, mem_util = self._ask("utilization", nv.utilization_pct) or (None, None)
        values = {
            "power_w": power / 1000.0 if power is not None else None,
            "energy_j": energy / 1000.0 if energy is not None else None,
            "sm_clock_mhz": sm,
            "mem_clock_mhz": mem,
            "temp_c": self._ask("temperature", nv.temperature_c),
            "util_pct": util,
            "mem_util_pct": mem_util,
            "throttle_reasons": self._ask("throttle", nv.throttle_reasons),
        }
        return {f"{self.name}_{k}": v for k, v in values.items()}


def gpu_sources(nvml: NvmlLike | None, indices: Sequence[int]) -> tuple[list[Source], list[Absent]]:
    """One :class:`GpuSeries` per NVML index in ``indices`` (``nvml`` already initialised,
    runner.measure.nvml.open_nvml), and what is missing: no GPU in the run, no NVML, or a
    GPU NVML cannot open."""
    if not indices:
        return [], [Absent("gpu", "NVML", "no GPU visible")]
    if nvml is None:
        return [], [Absent("gpu", "NVML (nvidia-ml-py)", "NVML unavailable")]
    sources: list[Source] = []
    absent: list[Absent] = []
    for i in indices:
        try:
            sources.append(GpuSeries(nvml, i, nvml.handle(i)))
        except Exception as exc:  # the others are still worth sampling
            absent.append(Absent("gpu", f"NVML device {i}", f"not readable: {exc}"))
    return sources, absent
