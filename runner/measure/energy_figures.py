"""Arithmetic of the energy section: windows, scaled components, gross/net per unit, emissions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.measure.codecarbon import J_PER_KWH, CodeCarbonReading
from runner.measure.metered_gpus import MeteredGpus
from runner.sections.energy import EnergyComponent, GpuNvml, GrossNet


@dataclass(frozen=True)
class WindowEnergy:
    """One measured window: duration (s, runner's clock) and GPU joules per GPU (no PUE)."""

    seconds: float
    gpu_joules: tuple[float, ...]
    gpu_samples: int | None = None


def window_scale(window_s: float, reading: CodeCarbonReading | None) -> float | None:
    """The windows' share of CodeCarbon's tracked span; None when it tracked nothing."""
    if reading is not None and reading.tracked_seconds > 0:
        return window_s / reading.tracked_seconds
    return None


def energy_components(
    reading: CodeCarbonReading | None,
    scale: float | None,
    pue: float,
    windows: Sequence[WindowEnergy],
    gpus: MeteredGpus,
    warnings: list[str],
) -> tuple[dict[str, EnergyComponent], GpuNvml | None, float | None]:
    """Per-component joules over the windows (PUE applied), NVML's GPU figure and
    CodeCarbon's (both without PUE); a GPU error goes to ``warnings``."""

    def scaled(joules: float | None) -> float | None:
        return None if joules is None or scale is None else joules * scale

    components = {
        "cpu": EnergyComponent(
            scaled(reading.cpu_joules if reading else None),
            reading.cpu_method if reading else "unavailable",
        ),
        "ram": EnergyComponent(
            scaled(reading.ram_joules if reading else None),
            reading.ram_method if reading else "unavailable",
        ),
    }
    cc_gpu = None
    if reading is not None and reading.has_gpu and scale is not None and gpus.cuda:
        cc_gpu = reading.gpu_joules * scale / pue
    gpu_nvml = None
    if gpus.method is not None and gpus.error is None:
        per_gpu = [sum(w.gpu_joules[k] for w in windows) for k in range(len(gpus.labels))]
        nvml_j = sum(per_gpu)
        gpu_nvml = GpuNvml(
            joules=nvml_j,
            method=gpus.method,
            per_gpu_joules=dict(zip(gpus.labels, per_gpu, strict=True)),
            per_repeat_joules=tuple(sum(w.gpu_joules) for w in windows),
        )
        components["gpu"] = EnergyComponent(nvml_j * pue, gpus.method)
    elif gpus.cuda:
        components["gpu"] = EnergyComponent(
            None if cc_gpu is None else cc_gpu * pue, "codecarbon-gpu"
        )
        if gpus.error is not None:
            warnings.append(gpus.error)
    return components, gpu_nvml, cc_gpu


def gross_joules(components: dict[str, EnergyComponent]) -> float | None:
    """The components' sum; None when any of them is unknown."""
    parts = [c.joules for c in components.values()]
    return None if any(p is None for p in parts) else float(sum(parts))


def gpu_relative_difference(gpu_nvml: GpuNvml | None, cc_gpu: float | None) -> float | None:
    """(NVML - CodeCarbon) / NVML GPU joules; None unless both exist and NVML's is positive."""
    if gpu_nvml is not None and cc_gpu is not None and (gpu_nvml.joules or 0) > 0:
        return (gpu_nvml.joules - cc_gpu) / gpu_nvml.joules
    return None


def _per(total: float | None, count: float) -> float | None:
    return None if total is None or not count or count <= 0 else total / count


def per_unit(gross: float | None, net: float | None, count: float) -> GrossNet:
    """Gross and net divided by ``count`` (tokens, requests, seconds); None where undefined."""
    return GrossNet(_per(gross, count), _per(net, count))


def times(figure: GrossNet, factor: float) -> GrossNet:
    """Both figures multiplied by ``factor`` (e.g. per request to per 1000 requests)."""
    return GrossNet(*(None if v is None else v * factor for v in (figure.gross, figure.net)))


def emissions_kg(gross: float | None, intensity_g_per_kwh: float | None) -> float | None:
    """Gross joules at the carbon intensity CodeCarbon applied, in kg CO2eq."""
    if gross is None or intensity_g_per_kwh is None:
        return None
    return gross / J_PER_KWH * intensity_g_per_kwh / 1e3
