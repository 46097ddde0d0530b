"""The idle baseline: power before the model loads, measured or reused within a sweep."""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.schema_measure import EnergyConfig
from runner.measure.baseline_store import Reused, SweepBaselines
from runner.measure.codecarbon import tracker_kwargs, tracker_run
from runner.measure.energy_warnings import MIN_POWER_SAMPLES
from runner.measure.metered_gpus import MeteredGpus
from runner.sections.energy import EnergyBaseline

log = logging.getLogger(__name__)

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


class IdleBaseline:
    """One run's idle baseline: ``measure()`` before the model loads, ``section()`` after.

    With ``baselines`` (a sweep's store) a recent enough baseline of another run on this
    machine is reused instead of measured.
    """

    def __init__(
        self,
        cfg: EnergyConfig,
        run_dir: Path,
        gpus: MeteredGpus,
        *,
        logger: logging.Logger,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        tracker_factory: Callable[..., Any],
        baselines: SweepBaselines | None,
    ) -> None:
        self._cfg = cfg
        self._run_dir = run_dir
        self._gpus = gpus
        self._log = logger
        self._clock = clock
        self._wall = wall_clock
        self._factory = tracker_factory
        self._baselines = baselines
        self._baseline: Baseline | None = None
        self._reused: Reused | None = None
        self._tracker_start_s: float | None = None
        self._error: str | None = None

    def measure(self) -> Baseline | None:
        cfg = self._cfg
        if cfg.baseline_seconds <= 0:
            return None
        if self._baselines is None:
            self._baseline = self._measure_idle()
            return self._baseline
        # What makes two baselines comparable (the store adds the host).
        key = {
            "nvml_gpus": list(self._gpus.nvml_indices),
            "baseline_seconds": float(cfg.baseline_seconds),
            "measure_power_secs": float(cfg.measure_power_secs),
            "pue": float(cfg.pue),
        }

        def measure() -> dict[str, Any] | None:
            b = self._measure_idle()
            return None if b is None else b.to_dict()

        value, self._reused = self._baselines.get_or_measure(key, measure)
        self._baseline = None if value is None else Baseline.from_dict(value)
        if self._baseline is not None and self._reused is not None:
            log.info(
                "reusing the idle baseline measured %.0f s ago by %s on %s: %.2f W",
                self._reused.age_seconds,
                self._baseline.measured_by,
                self._baseline.host,
                self._baseline.watts,
            )
        return self._baseline

    def _measure_idle(self) -> Baseline | None:
        cfg, gpus = self._cfg, self._gpus
        log.info("measuring the idle baseline (%g s)", cfg.baseline_seconds)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        kwargs = functools.partial(tracker_kwargs, cfg, self._run_dir, gpus.nvml_indices, csv=False)
        with tracker_run(self._factory, kwargs, self._clock, self._log) as box:
            self._tracker_start_s = box.start_seconds
            gpus.start()
            try:
                begin = gpus.read()
                _sleep(cfg.baseline_seconds)
                end = gpus.read()
            finally:
                gpus.stop()
        energy = gpus.energy(begin, end)
        seconds = end.time_s - begin.time_s
        reading = box.reading
        if reading is None or reading.tracked_seconds <= 0 or seconds <= 0:
            self._error = box.error or "CodeCarbon reported no data"
            return None
        if gpus.error is not None:
            self._error = gpus.error
            return None
        cpu_ram_watts = (reading.cpu_joules + reading.ram_joules) / reading.tracked_seconds
        gpu_watts = sum(energy.per_gpu_joules) * float(cfg.pue) / seconds
        method = f"cpu={reading.cpu_method};ram={reading.ram_method}"
        if gpus.method is not None:
            method += f";gpu={gpus.method}"
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

    def section(
        self, window_s: float, tracking_started_unix: float | None, warnings: list[str]
    ) -> EnergyBaseline | None:
        """The idle baseline over ``window_s``, its age at ``tracking_started_unix`` (now if
        tracking never started); its warnings, or why it is missing, go to ``warnings``."""
        b, reused = self._baseline, self._reused
        if b is None:
            reason = (
                "baseline_seconds=0"
                if self._cfg.baseline_seconds <= 0
                else self._error or "measure_baseline() was not called"
            )
            warnings.append(f"idle baseline missing ({reason}): net energy is not reported")
            return None
        warnings += b.warnings
        ref = tracking_started_unix
        return EnergyBaseline(
            watts=b.watts,
            joules=b.watts * window_s,
            measured_seconds=b.measured_seconds,
            age_seconds=(ref if ref is not None else self._wall()) - b.measured_at_unix,
            cached=reused is not None,
            method=b.method,
            measured_by=b.measured_by,
            host=b.host,
            tracker_start_seconds=None if reused else self._tracker_start_s,
        )
