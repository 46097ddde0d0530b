"""GPU energy from NVML: a thin pynvml wrapper and the per-window GPU energy sources.

NVML speaks millijoules (energy counter) and milliwatts (power); everything this
module hands out is in joules, watts and seconds.

Two ways to get a window's GPU energy, chosen once per meter:

- ``nvml-counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer), a
  64-bit millijoule counter read at both edges of a window. Wrap is not a concern;
  a counter that goes backwards (driver reload, GPU reset) is reported, not trusted.
- ``nvml-power-samples``: where the counter is unsupported, ``nvmlDeviceGetPowerUsage``
  sampled by a background thread plus one sample at each window edge, integrated
  with the trapezoid rule.

When there is no NVML or no GPU to meter, :class:`NullGpuSource` stands in, so the
meter never branches on the hardware it has.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

COUNTER_METHOD = "nvml-counter"
SAMPLES_METHOD = "nvml-power-samples"


class NvmlError(RuntimeError):
    """An NVML call failed (driver missing, invalid index, ...)."""


class NvmlNotSupported(NvmlError):
    """The device does not support this query (e.g. the energy counter before Volta)."""


class NvmlLike(Protocol):
    """The few NVML calls the energy meter, the cooldown and the hardware time series
    (runner.hardware.gpu) need; tests inject a fake (tests/fake_nvml.py).

    Implementations raise :class:`NvmlNotSupported` for unsupported queries and
    :class:`NvmlError` for any other failure.
    """

    def init(self) -> None: ...

    def device_count(self) -> int: ...

    def handle(self, index: int) -> Any: ...

    def total_energy_mj(self, handle: Any) -> int:
        """Energy since the driver loaded, millijoules."""
        ...

    def power_mw(self, handle: Any) -> int:
        """Current board power draw, milliwatts."""
        ...

    def name(self, handle: Any) -> str: ...

    def power_limit_mw(self, handle: Any) -> int | None:
        """Enforced power limit, milliwatts (None if unknown)."""
        ...

    def temperature_c(self, handle: Any) -> int:
        """GPU die temperature, °C (the cooldown's idle rule)."""
        ...

    def clocks_mhz(self, handle: Any) -> tuple[int, int]:
        """Current SM and memory clocks, MHz."""
        ...

    def utilization_pct(self, handle: Any) -> tuple[int, int]:
        """GPU and memory utilisation over NVML's last sample period, percent."""
        ...

    def throttle_reasons(self, handle: Any) -> int:
        """The clocks event (throttle) reasons bitmask (runner.hardware.gpu.throttle_names)."""
        ...

    def memory_bus_width_bits(self, handle: Any) -> int | None:
        """Memory bus width, bits (None if unknown)."""
        ...

    def max_memory_clock_mhz(self, handle: Any) -> int | None:
        """Maximum memory clock, MHz (None if unknown)."""
        ...


class Pynvml:
    """:class:`NvmlLike` over nvidia-ml-py (module ``pynvml``), with its errors translated."""

    def __init__(self) -> None:
        import pynvml  # imported here: CPU-only runs and the 'off' backend never need it

        self._nv = pynvml

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        nv = self._nv
        try:
            return fn(*args)
        except nv.NVMLError_NotSupported as exc:
            raise NvmlNotSupported(str(exc)) from exc
        except nv.NVMLError as exc:
            raise NvmlError(str(exc)) from exc

    def init(self) -> None:
        # nvmlInit is reference counted, and CodeCarbon initialises NVML at import
        # and never shuts it down, so neither do we.
        self._call(self._nv.nvmlInit)

    def device_count(self) -> int:
        return int(self._call(self._nv.nvmlDeviceGetCount))

    def handle(self, index: int) -> Any:
        return self._call(self._nv.nvmlDeviceGetHandleByIndex, index)

    def total_energy_mj(self, handle: Any) -> int:
        return int(self._call(self._nv.nvmlDeviceGetTotalEnergyConsumption, handle))

    def power_mw(self, handle: Any) -> int:
        return int(self._call(self._nv.nvmlDeviceGetPowerUsage, handle))

    def name(self, handle: Any) -> str:
        value = self._call(self._nv.nvmlDeviceGetName, handle)
        return value.decode() if isinstance(value, bytes) else str(value)

    def power_limit_mw(self, handle: Any) -> int | None:
        try:
            return int(self._call(self._nv.nvmlDeviceGetEnforcedPowerLimit, handle))
        except NvmlError:
            return None

    def temperature_c(self, handle: Any) -> int:
        gpu = self._nv.NVML_TEMPERATURE_GPU
        return int(self._call(self._nv.nvmlDeviceGetTemperature, handle, gpu))

    def clocks_mhz(self, handle: Any) -> tuple[int, int]:
        nv = self._nv
        sm = self._call(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM)
        return int(sm), int(self._call(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM))

    def utilization_pct(self, handle: Any) -> tuple[int, int]:
        rates = self._call(self._nv.nvmlDeviceGetUtilizationRates, handle)
        return int(rates.gpu), int(rates.memory)

    def throttle_reasons(self, handle: Any) -> int:
        # "Throttle" was renamed "clocks event" in NVML 12.2; older pynvml has only the former.
        nv = self._nv
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        return int(self._call(fn or nv.nvmlDeviceGetCurrentClocksThrottleReasons, handle))

    def memory_bus_width_bits(self, handle: Any) -> int | None:
        try:
            return int(self._call(self._nv.nvmlDeviceGetMemoryBusWidth, handle))
        except NvmlError:
            return None

    def max_memory_clock_mhz(self, handle: Any) -> int | None:
        nv = self._nv
        try:
            return int(self._call(nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_MEM))
        except NvmlError:
            return None


def open_nvml(nvml: NvmlLike | None = None) -> NvmlLike | None:
    """Initialise ``nvml`` (default: pynvml); None when NVML is not usable here."""
    try:
        lib = nvml if nvml is not None else Pynvml()
        lib.init()
        return lib
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver errors
        log.info("NVML unavailable: %s", exc)
        return None


def cuda_to_nvml_indices(
    cuda_indices: Sequence[int], device_count: int, visible: str | None = None
) -> tuple[list[int], list[str]]:
    """Translate the runner's CUDA device indices into NVML indices.

    CUDA numbers only the devices in ``CUDA_VISIBLE_DEVICES``; NVML numbers every
    device it can see. With an integer list (e.g. Slurm's ``2,3``) CUDA index ``i``
    is NVML index ``visible[i]``, unless that index does not exist in NVML (a
    cgroup already hides the other devices, so NVML numbers from 0 too). UUID or
    MIG entries cannot be mapped without NVML UUID lookups: identity plus a warning.
    Returns the NVML indices and any warnings.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if not entries:
        return list(cuda_indices), []
    if not all(e.lstrip("-").isdigit() for e in entries):
        return list(cuda_indices), [
            f"CUDA_VISIBLE_DEVICES={visible!r} is not a list of indices; NVML index is "
            "assumed equal to the CUDA index"
        ]
    out: list[int] = []
    for i in cuda_indices:
        mapped = int(entries[i]) if 0 <= i < len(entries) else i
        out.append(mapped if 0 <= mapped < device_count else i)
    return out, []


@dataclass(frozen=True)
class GpuReading:
    """GPU state at one window edge: clock time (s) and, in counter mode, energy (mJ)."""

    time_s: float
    energy_mj: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GpuWindowEnergy:
    """GPU energy of one window: joules per metered GPU, power samples used, warnings."""

    per_gpu_joules: tuple[float, ...]
    samples: int | None = None
    warnings: tuple[str, ...] = ()


class GpuEnergySource(Protocol):
    """Reads GPU energy at window edges; ``method`` is None when nothing is metered."""

    method: str | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, time_s: float) -> GpuReading: ...

    def energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy: ...


class NullGpuSource:
    """Stand-in when there is no GPU to meter or no NVML: meters nothing."""

    method: str | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, time_s: float) -> GpuReading:
        return GpuReading(time_s)

    def energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy:
        return GpuWindowEnergy(())


class CounterGpuSource:
    """Energy as the difference of NVML total-energy counters between window edges."""

    method = COUNTER_METHOD

    def __init__(self, nvml: NvmlLike, handles: Sequence[Any], labels: Sequence[str]) -> None:
        self._nvml = nvml
        self._handles = list(handles)
        self._labels = list(labels)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, time_s: float) -> GpuReading:
        return GpuReading(time_s, tuple(self._nvml.total_energy_mj(h) for h in self._handles))

    def energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy:
        assert begin.energy_mj is not None and end.energy_mj is not None
        joules: list[float] = []
        warnings: list[str] = []
        for label, e0, e1 in zip(self._labels, begin.energy_mj, end.energy_mj, strict=True):
            delta = e1 - e0
            if delta < 0:
                # 64-bit mJ does not wrap in practice: going backwards means a driver
                # reload or GPU reset, so this window's energy for the GPU is unknown.
                warnings.append(
                    f"GPU {label}: NVML energy counter went backwards by {-delta} mJ "
                    "(driver reload or GPU reset?); that window counts 0 J for it"
                )
                delta = 0
            joules.append(delta / 1000.0)
        return GpuWindowEnergy(tuple(joules), None, tuple(warnings))


def trapezoid_joules(samples: Sequence[tuple[float, float]]) -> float:
    """Integrate ``(time_s, watts)`` samples, sorted by time, into joules."""
    return sum(
        (t1 - t0) * (p0 + p1) / 2.0
        for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False)
    )


class SampledGpuSource:
    """Energy by integrating power samples; a background thread samples every ``interval_s``.

    Each window edge also takes a sample at the edge's own timestamp, so every
    window has at least its two end points whatever the thread did.
    """

    method = SAMPLES_METHOD

    def __init__(
        self,
        nvml: NvmlLike,
        handles: Sequence[Any],
        clock: Callable[[], float],
        interval_s: float,
    ) -> None:
        self._nvml = nvml
        self._handles = list(handles)
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._samples: list[tuple[float, tuple[float, ...]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_reads = 0

    def _watts(self) -> tuple[float, ...]:
        return tuple(self._nvml.power_mw(h) / 1000.0 for h in self._handles)

    def _record(self, time_s: float, watts: tuple[float, ...]) -> None:
        with self._lock:
            self._samples.append((time_s, watts))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                t = self._clock()
                self._record(t, self._watts())
            except NvmlError as exc:
                # A missed sample only widens one trapezoid; log once, keep going.
                if self._failed_reads == 0:
                    log.warning("NVML power read failed: %s", exc)
                self._failed_reads += 1

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None

    def read(self, time_s: float) -> GpuReading:
        self._record(time_s, self._watts())
        return GpuReading(time_s)

    def energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy:
        t0, t1 = begin.time_s, end.time_s
        with self._lock:
            inside = sorted(s for s in self._samples if t0 <= s[0] <= t1)
            # Samples before this window's end are never needed again.
            self._samples = [s for s in self._samples if s[0] >= t1]
        per_gpu = tuple(
            trapezoid_joules([(t, watts[g]) for t, watts in inside])
            for g in range(len(self._handles))
        )
        return GpuWindowEnergy(per_gpu, len(inside))


def make_gpu_source(
    nvml: NvmlLike | None,
    nvml_indices: Sequence[int],
    labels: Sequence[str],
    clock: Callable[[], float],
    interval_s: float,
) -> tuple[GpuEnergySource, list[str]]:
    """Pick the best GPU energy source for these devices, and say why if it is not the best.

    All GPUs of a run use one method: if any lacks the energy counter, all are
    sampled, so the run's GPU figure has a single provenance.
    """
    if not nvml_indices:
        return NullGpuSource(), []
    if nvml is None:
        return NullGpuSource(), ["NVML unavailable: GPU energy is not measured by the runner"]
    try:
        handles = [nvml.handle(i) for i in nvml_indices]
    except NvmlError as exc:
        return NullGpuSource(), [f"NVML cannot open GPUs {list(nvml_indices)}: {exc}"]
    for label, i, h in zip(labels, nvml_indices, handles, strict=True):
        try:
            log.info(
                "metering GPU %s (NVML %d): %s, power limit %s mW",
                label,
                i,
                nvml.name(h),
                nvml.power_limit_mw(h),
            )
        except NvmlError:
            log.info("metering GPU %s (NVML %d)", label, i)
    try:
        for h in handles:
            nvml.total_energy_mj(h)
        return CounterGpuSource(nvml, handles, labels), []
    except NvmlNotSupported:
        pass
    except NvmlError as exc:
        log.warning("NVML energy counter read failed (%s); falling back to power samples", exc)
    try:
        for h in handles:
            nvml.power_mw(h)
    except NvmlError as exc:
        return NullGpuSource(), [f"NVML supports neither energy counter nor power reading: {exc}"]
    return SampledGpuSource(nvml, handles, clock, interval_s), [
        "NVML energy counter unsupported (pre-Volta GPU?): GPU energy integrated from power samples"
    ]
