"""Energy of a run's measured windows, with provenance and the workload's share of it.

Joules, watts and seconds throughout; the CodeCarbon plumbing lives in
:mod:`runner.measure.codecarbon`.

How the figures are obtained:

- CPU and RAM: one CodeCarbon ``OfflineEmissionsTracker`` per run, started once
  around the measured loop (its hardware probing costs about 1.5 s the first time
  in a process, so never per repeat). It writes ``emissions.csv`` into the run
  directory only; its log records go to the run's logger.
- ``tracking_mode="machine"``: RAPL, the NVML counters and the idle baseline are
  all machine- or device-wide, so gross, baseline and net share one basis. In
  ``"process"`` mode CodeCarbon attributes CPU power by this process's CPU time,
  which makes an idle baseline about zero and its subtraction meaningless.
- CodeCarbon integrates over its own span (tracker start to stop), which also
  holds the short gaps between repeats. Its figures are scaled to the measured
  windows by ``window_seconds / tracked_seconds``, both taken from the runner's
  clock (CodeCarbon's own durations are not used), i.e. the gaps are assumed to
  draw the same average power. A warning is recorded when the windows cover
  less than 80% of the span.
- GPUs: the NVML total-energy counter read at each window edge, or integrated
  power samples where the counter is unsupported (see :mod:`runner.measure.nvml`).
  CodeCarbon's own GPU figure (scaled the same way) is reported beside it.
- PUE: CodeCarbon multiplies every figure it reports by it, so the GPU component
  is multiplied too and the components add up on one basis. ``gpu_nvml`` and
  ``codecarbon_gpu_joules`` are device energies without PUE, so their relative
  difference compares like with like.
- Idle baseline: measured before the model loads with a short tracker (no CSV)
  and NVML; ``baseline.joules`` is idle power x the measured window duration.
  Without RAPL the idle CPU/RAM power comes from the same CodeCarbon estimate
  model as the gross figure, which ``baseline.method`` names. In a sweep with
  ``cache_baseline`` the first run on a machine measures it and the later ones reuse
  it while it is younger than ``baseline_max_age_s``
  (:mod:`runner.measure.baseline_store`); ``baseline.cached``, ``age_seconds``,
  ``measured_by`` and ``host`` say which. A run on its own always measures its own.
- Tracker start: CodeCarbon's first tracker in a process probes the hardware (about
  1.5 s; a fork-server job inherits the CPU part, see :mod:`runner.forkserver`). The
  measurement's tracker starts right before the first window, never earlier: starting it
  while the model loads would put the load into its span, and the scaling above assumes
  the span's gaps draw the windows' power. ``tracker_start_seconds`` records the cost.
- Emissions: gross energy x the carbon intensity CodeCarbon applied (its
  emissions over its energy), or its country table when it measured nothing.
- ``is_estimate`` is about the CPU figure: RAM is a CodeCarbon model on every
  machine (its ``method`` says so), so flagging it would flag every run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.schema import EnergyBackend, EnergyConfig
from runner.measure.baseline_store import Reused, SweepBaselines
from runner.measure.codecarbon import (
    J_PER_KWH,
    MEASURED_CPU_METHODS,
    TRACKING_MODE,
    CodeCarbonReading,
    TrackerBox,
    carbon_intensity_g_per_kwh,
    codecarbon_version,
    offline_tracker,
    tracker_kwargs,
    tracker_run,
)
from runner.measure.nvml import (
    GpuReading,
    GpuWindowEnergy,
    NvmlError,
    NvmlLike,
    cuda_to_nvml_indices,
    make_gpu_source,
    open_nvml,
)
from runner.sections.energy import (
    NET_NOT_POSITIVE,
    SHORT_WINDOW,
    Energy,
    EnergyBaseline,
    EnergyComponent,
    GpuNvml,
    GrossNet,
)

log = logging.getLogger(__name__)

MIN_COUNTER_WINDOW_S = 1.0  # the NVML counter moves in steps of tens of ms
MIN_POWER_SAMPLES = 10
MIN_WINDOW_COVERAGE = 0.8
GPU_DIFFERENCE_WARN = 0.10

# A module attribute, not time.sleep directly, so tests can advance a fake clock.
_sleep = time.sleep


@dataclass(frozen=True)
class Baseline:
    """Idle power before the model loads: ``watts`` (CPU+RAM+GPU, PUE applied).

    ``measured_at_unix`` is the wall clock (``time.time()``) at the end of the measurement;
    ``measured_by`` the run id of the run that measured it, ``host`` its machine.
    """

    watts: float
    measured_seconds: float
    measured_at_unix: float
    method: str
    warnings: tuple[str, ...] = ()
    measured_by: str | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**{**known, "warnings": tuple(known.get("warnings") or ())})


@dataclass(frozen=True)
class WindowEnergy:
    """One measured window: duration (s, runner's clock) and GPU joules per GPU (no PUE)."""

    seconds: float
    gpu_joules: tuple[float, ...]
    gpu_samples: int | None = None


def _per(total: float | None, count: float) -> float | None:
    return None if total is None or not count or count <= 0 else total / count


# --- the meter ---------------------------------------------------------------------------


class _OffMeter:
    """backend=off: no tracker, no NVML, no section."""

    def measure_baseline(self) -> Baseline | None:
        return None

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        yield

    def begin_window(self) -> None:
        pass

    def end_window(self) -> WindowEnergy | None:
        return None

    def summary(self, output_tokens: int, requests: float) -> Energy | None:
        return None


class _CodeCarbonMeter:
    """backend=codecarbon: see the module docstring."""

    def __init__(
        self,
        cfg: EnergyConfig,
        run_dir: Path,
        gpu_indices: Sequence[int],
        *,
        logger: logging.Logger,
        nvml: NvmlLike | None,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        tracker_factory: Callable[..., Any],
        sample_interval_s: float,
        baselines: SweepBaselines | None,
    ) -> None:
        self._cfg = cfg
        self._run_dir = run_dir
        self._log = logger
        self._clock = clock
        self._wall = wall_clock
        self._baselines = baselines
        self._factory = tracker_factory
        self._cuda = [int(i) for i in (cfg.gpu_ids if cfg.gpu_ids is not None else gpu_indices)]
        self._labels = [str(i) for i in self._cuda]
        self._setup_warnings: list[str] = []
        lib = open_nvml(nvml) if self._cuda else None  # a CPU run never touches NVML
        self._nvml_indices = list(self._cuda)
        if lib is not None:
            try:
                self._nvml_indices, warns = cuda_to_nvml_indices(self._cuda, lib.device_count())
                self._setup_warnings += warns
            except NvmlError as exc:
                self._setup_warnings.append(f"NVML device count failed: {exc}")
                lib = None
        self._gpu, warns = make_gpu_source(
            lib, self._nvml_indices, self._labels, clock, sample_interval_s
        )
        self._setup_warnings += warns
        self._gpu_error: str | None = None
        self._open: GpuReading | None = None
        self._windows: list[WindowEnergy] = []
        self._window_warnings: list[str] = []
        self._discarded_windows = 0
        self._baseline: Baseline | None = None
        self._baseline_reused: Reused | None = None
        self._baseline_tracker_start_s: float | None = None
        self._baseline_error: str | None = None
        self._tracking_started_unix: float | None = None
        self._run: TrackerBox | None = None

    # baseline

    def measure_baseline(self) -> Baseline | None:
        cfg = self._cfg
        if cfg.baseline_seconds <= 0:
            return None
        if self._baselines is None:
            self._baseline = self._measure_idle()
            return self._baseline
        # What makes two baselines comparable (the store adds the host).
        key = {
            "nvml_gpus": list(self._nvml_indices),
            "baseline_seconds": float(cfg.baseline_seconds),
            "measure_power_secs": float(cfg.measure_power_secs),
            "pue": float(cfg.pue),
        }

        def measure() -> dict[str, Any] | None:
            b = self._measure_idle()
            return None if b is None else b.to_dict()

        value, self._baseline_reused = self._baselines.get_or_measure(key, measure)
        self._baseline = None if value is None else Baseline.from_dict(value)
        if self._baseline is not None and self._baseline_reused is not None:
            log.info(
                "reusing the idle baseline measured %.0f s ago by %s on %s: %.2f W",
                self._baseline_reused.age_seconds,
                self._baseline.measured_by,
                self._baseline.host,
                self._baseline.watts,
            )
        return self._baseline

    def _measure_idle(self) -> Baseline | None:
        cfg, gpu = self._cfg, self._gpu
        log.info("measuring the idle baseline (%g s)", cfg.baseline_seconds)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        kwargs = functools.partial(
            tracker_kwargs, cfg, self._run_dir, self._nvml_indices, csv=False
        )
        with tracker_run(self._factory, kwargs, self._clock, self._log) as box:
            self._baseline_tracker_start_s = box.start_seconds
            gpu.start()
            try:
                begin = self._read_gpu()
                _sleep(cfg.baseline_seconds)
                end = self._read_gpu()
            finally:
                gpu.stop()
        energy = self._gpu_energy(begin, end)
        seconds = end.time_s - begin.time_s
        reading = box.reading
        if reading is None or reading.tracked_seconds <= 0 or seconds <= 0:
            self._baseline_error = box.error or "CodeCarbon reported no data"
            return None
        if self._gpu_error is not None:
            self._baseline_error = self._gpu_error
            return None
        cpu_ram_watts = (reading.cpu_joules + reading.ram_joules) / reading.tracked_seconds
        gpu_watts = sum(energy.per_gpu_joules) * float(cfg.pue) / seconds
        method = f"cpu={reading.cpu_method};ram={reading.ram_method}"
        if gpu.method is not None:
            method += f";gpu={gpu.method}"
        warnings = list(energy.warnings)
        if energy.samples is not None and energy.samples < MIN_POWER_SAMPLES:
            warnings.append(
                f"idle baseline: only {energy.samples} GPU power samples "
                f"(fewer than {MIN_POWER_SAMPLES})"
            )
        log.info(
            "idle baseline: %.2f W over %.2f s (%s)", cpu_ram_watts + gpu_watts, seconds, method
        )
        return Baseline(
            cpu_ram_watts + gpu_watts,
            seconds,
            self._wall(),
            method,
            tuple(warnings),
            measured_by=self._run_dir.name,
            host=socket.gethostname(),
        )

    # measured windows

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        if self._run is not None:
            raise RuntimeError("EnergyMeter.tracking() can be entered once per run")
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._tracking_started_unix = self._wall()
        kwargs = functools.partial(
            tracker_kwargs, self._cfg, self._run_dir, self._nvml_indices, csv=True
        )
        with tracker_run(self._factory, kwargs, self._clock, self._log) as box:
            self._run = box
            self._gpu.start()
            try:
                yield
            finally:
                if self._open is not None:
                    # Its closing edge was never read: the window's energy is unknown.
                    self._open = None
                    self._discarded_windows += 1
                self._gpu.stop()

    def _read_gpu(self) -> GpuReading:
        t = self._clock()
        if self._gpu_error is None:
            try:
                return self._gpu.read(t)
            except NvmlError as exc:
                self._gpu_error = f"NVML read failed ({exc}): GPU energy unknown"
                log.warning("%s", self._gpu_error)
        return GpuReading(t)

    def _gpu_energy(self, begin: GpuReading, end: GpuReading) -> GpuWindowEnergy:
        if self._gpu_error is not None:
            return GpuWindowEnergy(())
        return self._gpu.energy(begin, end)

    def begin_window(self) -> None:
        if self._open is not None:
            raise RuntimeError("begin_window() called twice without end_window()")
        self._open = self._read_gpu()

    def end_window(self) -> WindowEnergy | None:
        if self._open is None:
            log.warning("end_window() without begin_window(): ignored")
            return None
        begin, self._open = self._open, None
        end = self._read_gpu()
        energy = self._gpu_energy(begin, end)
        window = WindowEnergy(end.time_s - begin.time_s, energy.per_gpu_joules, energy.samples)
        self._windows.append(window)
        self._window_warnings += energy.warnings
        return window

    # the section

    def summary(self, output_tokens: int, requests: float) -> Energy:
        cfg, windows = self._cfg, self._windows
        window_s = float(sum(w.seconds for w in windows))
        reading = self._run.reading if self._run is not None else None
        scale = None
        if reading is not None and reading.tracked_seconds > 0:
            scale = window_s / reading.tracked_seconds
        warnings = list(self._setup_warnings)
        components, gpu_nvml, cc_gpu = self._components(reading, scale, warnings)
        parts = [c.joules for c in components.values()]
        gross = None if any(p is None for p in parts) else float(sum(parts))
        relative = None
        if gpu_nvml is not None and cc_gpu is not None and (gpu_nvml.joules or 0) > 0:
            relative = (gpu_nvml.joules - cc_gpu) / gpu_nvml.joules
        baseline = self._baseline_section(window_s, warnings)
        net = None if gross is None or baseline is None else gross - baseline.joules
        per_request = GrossNet(_per(gross, requests), _per(net, requests))
        intensity, intensity_warnings = carbon_intensity_g_per_kwh(reading, cfg.country_iso_code)
        warnings += intensity_warnings
        warnings += self._quality_warnings(reading, window_s, relative, net)
        return Energy(
            backend=EnergyBackend.codecarbon.value,
            codecarbon_version=codecarbon_version(),
            tracking_mode=TRACKING_MODE,
            country_iso_code=cfg.country_iso_code,
            pue=float(cfg.pue),
            window_seconds=window_s,
            sampling_interval_seconds=float(cfg.measure_power_secs) if reading else None,
            repeats=len(windows),
            components=components,
            gross_joules=gross,
            baseline=baseline,
            net_joules=net,
            per_output_token_joules=GrossNet(_per(gross, output_tokens), _per(net, output_tokens)),
            per_request_joules=per_request,
            per_1000_requests_joules=GrossNet(
                *(None if v is None else v * 1000.0 for v in (per_request.gross, per_request.net))
            ),
            average_power_watts=GrossNet(_per(gross, window_s), _per(net, window_s)),
            emissions_kg=(
                None if gross is None or intensity is None else gross / J_PER_KWH * intensity / 1e3
            ),
            carbon_intensity_g_per_kwh=intensity,
            gpu_nvml=gpu_nvml,
            codecarbon_gpu_joules=cc_gpu,
            gpu_relative_difference=relative,
            tracker_start_seconds=self._run.start_seconds if self._run is not None else None,
            is_estimate=reading is None or reading.cpu_method not in MEASURED_CPU_METHODS,
            warnings=tuple(dict.fromkeys(warnings)),
        )

    def _components(
        self, reading: CodeCarbonReading | None, scale: float | None, warnings: list[str]
    ) -> tuple[dict[str, EnergyComponent], GpuNvml | None, float | None]:
        """Per-component joules over the windows (PUE applied), NVML's GPU figure and
        CodeCarbon's (both without PUE); a GPU error goes to ``warnings``."""
        pue, windows = float(self._cfg.pue), self._windows

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
        if reading is not None and reading.has_gpu and scale is not None and self._cuda:
            cc_gpu = reading.gpu_joules * scale / pue
        gpu_nvml = None
        if self._gpu.method is not None and self._gpu_error is None:
            per_gpu = [sum(w.gpu_joules[k] for w in windows) for k in range(len(self._labels))]
            nvml_j = sum(per_gpu)
            gpu_nvml = GpuNvml(
                joules=nvml_j,
                method=self._gpu.method,
                per_gpu_joules=dict(zip(self._labels, per_gpu, strict=True)),
                per_repeat_joules=tuple(sum(w.gpu_joules) for w in windows),
            )
            components["gpu"] = EnergyComponent(nvml_j * pue, self._gpu.method)
        elif self._cuda:
            components["gpu"] = EnergyComponent(
                None if cc_gpu is None else cc_gpu * pue, "codecarbon-gpu"
            )
            if self._gpu_error is not None:
                warnings.append(self._gpu_error)
        return components, gpu_nvml, cc_gpu

    def _baseline_section(self, window_s: float, warnings: list[str]) -> EnergyBaseline | None:
        """The idle baseline over ``window_s``; its warnings, or why it is missing, go to
        ``warnings``."""
        b, reused = self._baseline, self._baseline_reused
        if b is None:
            reason = (
                "baseline_seconds=0"
                if self._cfg.baseline_seconds <= 0
                else self._baseline_error or "measure_baseline() was not called"
            )
            warnings.append(f"idle baseline missing ({reason}): net energy is not reported")
            return None
        warnings += b.warnings
        ref = self._tracking_started_unix
        return EnergyBaseline(
            watts=b.watts,
            joules=b.watts * window_s,
            measured_seconds=b.measured_seconds,
            age_seconds=(ref if ref is not None else self._wall()) - b.measured_at_unix,
            cached=reused is not None,
            method=b.method,
            measured_by=b.measured_by,
            host=b.host,
            tracker_start_seconds=None if reused else self._baseline_tracker_start_s,
        )

    def _quality_warnings(
        self,
        reading: CodeCarbonReading | None,
        window_s: float,
        relative: float | None,
        net: float | None,
    ) -> list[str]:
        cfg, windows, out = self._cfg, self._windows, []
        if self._run is None:
            out.append("tracking() was never entered: nothing was measured")
        elif reading is None:
            reason = self._run.error or "see the run log"
            out.append(f"CodeCarbon reported no data ({reason}): CPU and RAM energy unknown")
        if self._run is not None and not windows:
            out.append("no measured window completed")
        if self._discarded_windows:
            out.append(
                f"{self._discarded_windows} window(s) still open when tracking ended "
                "(interrupted or failed repeat) are not counted"
            )
        if reading is not None and windows:
            if window_s < cfg.measure_power_secs:
                out.append(
                    f"measured time {window_s:.3f} s is {SHORT_WINDOW} "
                    f"(measure_power_secs={cfg.measure_power_secs:g}): its CPU/RAM "
                    "figures rest on one or two power samples; energy is unresolved"
                )
            coverage = window_s / reading.tracked_seconds if reading.tracked_seconds > 0 else 0
            if coverage < MIN_WINDOW_COVERAGE:
                out.append(
                    f"measured windows cover {coverage:.0%} of CodeCarbon's tracked span; its "
                    "figures were scaled to the windows assuming constant average power"
                )
        if self._gpu.method is not None and windows:
            short = [w.seconds for w in windows if w.seconds < MIN_COUNTER_WINDOW_S]
            if short:
                out.append(
                    f"{len(short)} of {len(windows)} measured windows are shorter than "
                    f"{MIN_COUNTER_WINDOW_S:g} s (shortest {min(short):.3f} s): too short for "
                    "the resolution of NVML energy readings"
                )
            sampled = [w.gpu_samples for w in windows if w.gpu_samples is not None]
            few = [n for n in sampled if n < MIN_POWER_SAMPLES]
            if few:
                out.append(
                    f"fewer than {MIN_POWER_SAMPLES} GPU power samples in {len(few)} of "
                    f"{len(windows)} windows (fewest {min(few)}): GPU energy is coarse"
                )
        out += self._window_warnings
        if relative is not None and abs(relative) > GPU_DIFFERENCE_WARN:
            out.append(
                f"NVML and CodeCarbon GPU energy differ by {relative:+.0%} of the NVML figure"
            )
        if reading is not None and reading.cpu_method not in MEASURED_CPU_METHODS:
            out.append(
                f"CPU energy is an estimate, not a measurement ({reading.cpu_detail}); "
                "no RAPL-like counter was readable"
            )
        if net is not None and net <= 0:
            out.append(f"{NET_NOT_POSITIVE}: net energy is unresolved")
        return out


class EnergyMeter:
    """Energy of one run's measured windows; see the module docstring for the method.

    Use: ``measure_baseline()`` before the model loads; ``with tracking():`` around
    the measured loop, ``begin_window()``/``end_window()`` around each repeat (the
    caller synchronizes the device first); then ``summary(output_tokens, requests)``,
    also after an interrupted or failed loop. ``gpu_indices`` are the run's CUDA
    device indices (``cfg.gpu_ids`` overrides them). With ``backend: off`` every
    call is a no-op and ``summary`` returns None. ``sweep_dir``: the sweep this run is a
    point of, if any; with ``cache_baseline`` the idle baseline is shared there.
    ``clock`` times windows; ``wall_clock`` dates baselines (they outlive a process).
    """

    # NVML refreshes power every 20-100 ms: 20 Hz resolves it at negligible cost.
    power_sample_interval_s: float = 0.05

    def __init__(
        self,
        cfg: EnergyConfig,
        run_dir: Path,
        gpu_indices: list[int],
        *,
        logger: logging.Logger | None = None,
        nvml: NvmlLike | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        tracker_factory: Callable[..., Any] | None = None,
        sweep_dir: Path | None = None,
    ) -> None:
        self._impl: _OffMeter | _CodeCarbonMeter
        if EnergyBackend(cfg.backend) is EnergyBackend.off:
            self._impl = _OffMeter()
        else:
            baselines = None
            if sweep_dir is not None and cfg.cache_baseline:
                baselines = SweepBaselines(sweep_dir, cfg.baseline_max_age_s, wall_clock=wall_clock)
            self._impl = _CodeCarbonMeter(
                cfg,
                Path(run_dir),
                gpu_indices,
                logger=logger or log,
                nvml=nvml,
                clock=clock,
                wall_clock=wall_clock,
                tracker_factory=tracker_factory or offline_tracker,
                sample_interval_s=self.power_sample_interval_s,
                baselines=baselines,
            )

    def measure_baseline(self) -> Baseline | None:
        """Idle power over ``baseline_seconds`` (sleeps that long); None when disabled."""
        return self._impl.measure_baseline()

    def tracking(self) -> contextlib.AbstractContextManager[None]:
        """The CodeCarbon tracker (and NVML sampler) around the measured loop; always stopped."""
        return self._impl.tracking()

    def begin_window(self) -> None:
        """Open a measured window: read the clock and the GPU energy counters."""
        self._impl.begin_window()

    def end_window(self) -> WindowEnergy | None:
        """Close the window and accumulate its energy; None when nothing is open or off."""
        return self._impl.end_window()

    def summary(self, output_tokens: int, requests: float) -> Energy | None:
        """The ``energy`` section (joules, watts, seconds); None when off."""
        return self._impl.summary(output_tokens, requests)
