"""The ``energy`` section of ``result.json``: joules, watts, seconds, kg CO2-eq.

How each figure is obtained is described in :mod:`runner.measure.energy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.sections.base import OMIT_NONE, Section


@dataclass(frozen=True)
class EnergyComponent(Section):
    """One component's energy over the measured windows (PUE applied) and its provenance.

    ``node_shared`` (CPU and RAM, Slurm jobs only): the node was shared with other jobs
    (true), may have been (null), or was this job's alone (false); see runner.slurm.share.
    Absent outside Slurm, and where "may have been" (null): the warning says so.
    """

    joules: float | None = None
    method: str | None = None
    node_shared: bool | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class GrossNet(Section):
    """A figure from the gross energy and from the net (baseline-subtracted) one."""

    gross: float | None = None
    net: float | None = None


@dataclass(frozen=True)
class EnergyBaseline(Section):
    """The idle baseline: its power, its energy over the measured windows' duration.

    ``cached``: reused from an earlier run of the sweep (``measured_by``, on ``host``);
    ``age_seconds``: from its measurement to this run's tracker start;
    ``tracker_start_seconds``: what starting its tracker cost this run (None when reused).
    """

    watts: float | None = None
    joules: float | None = None
    measured_seconds: float | None = None
    age_seconds: float | None = None
    cached: bool | None = None
    method: str | None = None
    measured_by: str | None = None
    host: str | None = None
    tracker_start_seconds: float | None = None


@dataclass(frozen=True)
class GpuNvml(Section):
    """GPU energy from NVML (no PUE): in total, per GPU (CUDA index) and per window."""

    joules: float | None = None
    method: str | None = None
    per_gpu_joules: dict[str, float] = field(default_factory=dict)
    per_repeat_joules: tuple[float, ...] = ()


@dataclass(frozen=True)
class Energy(Section):
    """The ``energy`` section (None in the result when the backend is off).

    ``gross_joules`` is the sum of ``components``, None when any is unknown (never a
    partial sum); ``net_joules`` subtracts the idle ``baseline``. ``is_estimate`` is
    about the CPU figure. ``tracker_start_seconds``: constructing and starting the
    measurement's CodeCarbon tracker, before the first window (not in any figure).
    ``sampling_interval_seconds``: CodeCarbon's power sampling interval
    (``measure_power_secs``); a shorter ``window_seconds`` leaves the energy unresolved
    (:func:`unresolved`).
    """

    backend: str | None = None
    codecarbon_version: str | None = None
    tracking_mode: str | None = None
    country_iso_code: str | None = None
    pue: float | None = None
    window_seconds: float | None = None
    sampling_interval_seconds: float | None = None
    repeats: int | None = None
    components: dict[str, EnergyComponent] = field(default_factory=dict)
    gross_joules: float | None = None
    baseline: EnergyBaseline | None = None
    net_joules: float | None = None
    per_output_token_joules: GrossNet = field(default_factory=GrossNet)
    per_request_joules: GrossNet = field(default_factory=GrossNet)
    per_1000_requests_joules: GrossNet = field(default_factory=GrossNet)
    average_power_watts: GrossNet = field(default_factory=GrossNet)
    emissions_kg: float | None = None
    carbon_intensity_g_per_kwh: float | None = None
    gpu_nvml: GpuNvml | None = None
    codecarbon_gpu_joules: float | None = None
    gpu_relative_difference: float | None = None
    tracker_start_seconds: float | None = None
    is_estimate: bool | None = None
    warnings: tuple[str, ...] = ()


# How the two unresolved cases are said (the meter's warnings and the reasons below share
# them; SHORT_WINDOW also recognises results written before sampling_interval_seconds).
SHORT_WINDOW = "shorter than CodeCarbon's sampling interval"
NET_NOT_POSITIVE = "net energy ≤ 0: the idle baseline exceeds the measured energy"


def unresolved(energy: Energy | None) -> dict[str, str]:
    """The energy figures that must not stand as numbers, and why: ``{"gross": reason,
    "net": reason}`` (a key only where that figure is unresolved).

    - A measured time shorter than CodeCarbon's sampling interval rests on one or two
      power samples: gross and net (and what follows from them: per token, CO2) are
      unresolved.
    - Net energy at or below zero is physically impossible for work done: the idle
      baseline was higher than the loaded machine (a neighbour's load during the
      baseline, a window too short to integrate); net is unresolved, gross stands.
    """
    if energy is None:
        return {}
    out: dict[str, str] = {}
    window, interval = energy.window_seconds, energy.sampling_interval_seconds
    short = window is not None and interval is not None and window < interval
    if short or any(SHORT_WINDOW in w for w in energy.warnings):
        measured = f"{window:.3g} s" if window is not None else "the measured time"
        sampling = f" ({interval:g} s)" if interval is not None else ""
        reason = f"measured {measured}, shorter than CodeCarbon's sampling interval{sampling}"
        out["gross"] = out["net"] = reason
    net = energy.net_joules
    if "net" not in out and net is not None and net <= 0:
        out["net"] = NET_NOT_POSITIVE
    return out
