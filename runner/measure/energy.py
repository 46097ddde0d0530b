"""Energy of a run's measured windows, with provenance and the workload's share of it.

Joules, watts and seconds throughout. This module runs the measurement; its parts live
in :mod:`runner.measure.codecarbon` (the CodeCarbon plumbing),
:mod:`runner.measure.metered_gpus` (the GPUs through NVML),
:mod:`runner.measure.idle_baseline`, :mod:`runner.measure.energy_figures` (the
section's arithmetic) and :mod:`runner.measure.energy_warnings`.

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
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.config.schema_measure import EnergyBackend, EnergyConfig
from runner.measure.baseline_store import SweepBaselines
from runner.measure.codecarbon import (
    MEASURED_CPU_METHODS,
    TRACKING_MODE,
    TrackerBox,
    carbon_intensity_g_per_kwh,
    codecarbon_version,
    offline_tracker,
    tracker_kwargs,
    tracker_run,
)
from runner.measure.energy_figures import (
    WindowEnergy,
    emissions_kg,
    energy_components,
    gpu_relative_difference,
    gross_joules,
    per_unit,
    times,
    window_scale,
)
from runner.measure.energy_warnings import quality_warnings
from runner.measure.idle_baseline import Baseline, IdleBaseline
from runner.measure.metered_gpus import MeteredGpus
from runner.measure.nvml import GpuReading, NvmlLike
from runner.sections.energy import Energy

log = logging.getLogger(__name__)


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
        self._factory = tracker_factory
        self._gpus = MeteredGpus(
            cfg.gpu_ids if cfg.gpu_ids is not None else gpu_indices,
            nvml,
            clock,
            sample_interval_s,
        )
        self._idle = IdleBaseline(
            cfg,
            run_dir,
            self._gpus,
            logger=logger,
            clock=clock,
            wall_clock=wall_clock,
            tracker_factory=tracker_factory,
            baselines=baselines,
        )
        self._open: GpuReading | None = None
        self._windows: list[WindowEnergy] = []
        self._window_warnings: list[str] = []
        self._discarded_windows = 0
        self._tracking_started_unix: float | None = None
        self._run: TrackerBox | None = None

    def measure_baseline(self) -> Baseline | None:
        return self._idle.measure()

    # measured windows

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        if self._run is not None:
            raise RuntimeError("EnergyMeter.tracking() can be entered once per run")
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._tracking_started_unix = self._wall()
        kwargs = functools.partial(
            tracker_kwargs, self._cfg, self._run_dir, self._gpus.nvml_indices, csv=True
        )
        with tracker_run(self._factory, kwargs, self._clock, self._log) as box:
            self._run = box
            self._gpus.start()
            try:
                yield
            finally:
                if self._open is not None:
                    # Its closing edge was never read: the window's energy is unknown.
                    self._open = None
                    self._discarded_windows += 1
                self._gpus.stop()

    def begin_window(self) -> None:
        if self._open is not None:
            raise RuntimeError("begin_window() called twice without end_window()")
        self._open = self._gpus.read()

    def end_window(self) -> WindowEnergy | None:
        if self._open is None:
            log.warning("end_window() without begin_window(): ignored")
            return None
        begin, self._open = self._open, None
        end = self._gpus.read()
        energy = self._gpus.energy(begin, end)
        window = WindowEnergy(end.time_s - begin.time_s, energy.per_gpu_joules, energy.samples)
        self._windows.append(window)
        self._window_warnings += energy.warnings
        return window

    # the section

    def summary(self, output_tokens: int, requests: float) -> Energy:
        cfg, windows = self._cfg, self._windows
        window_s = float(sum(w.seconds for w in windows))
        reading = self._run.reading if self._run is not None else None
        warnings = list(self._gpus.setup_warnings)
        components, gpu_nvml, cc_gpu = energy_components(
            reading, window_scale(window_s, reading), float(cfg.pue), windows, self._gpus, warnings
        )
        gross = gross_joules(components)
        relative = gpu_relative_difference(gpu_nvml, cc_gpu)
        baseline = self._idle.section(window_s, self._tracking_started_unix, warnings)
        net = None if gross is None or baseline is None else gross - baseline.joules
        per_request = per_unit(gross, net, requests)
        intensity, intensity_warnings = carbon_intensity_g_per_kwh(reading, cfg.country_iso_code)
        warnings += intensity_warnings
        warnings += quality_warnings(
            run=self._run,
            reading=reading,
            windows=windows,
            window_s=window_s,
            measure_power_secs=cfg.measure_power_secs,
            discarded_windows=self._discarded_windows,
            gpu_method=self._gpus.method,
            window_warnings=self._window_warnings,
            relative=relative,
            net=net,
        )
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
            per_output_token_joules=per_unit(gross, net, output_tokens),
            per_request_joules=per_request,
            per_1000_requests_joules=times(per_request, 1000.0),
            average_power_watts=per_unit(gross, net, window_s),
            emissions_kg=emissions_kg(gross, intensity),
            carbon_intensity_g_per_kwh=intensity,
            gpu_nvml=gpu_nvml,
            codecarbon_gpu_joules=cc_gpu,
            gpu_relative_difference=relative,
            tracker_start_seconds=self._run.start_seconds if self._run is not None else None,
            is_estimate=reading is None or reading.cpu_method not in MEASURED_CPU_METHODS,
            warnings=tuple(dict.fromkeys(warnings)),
        )


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
