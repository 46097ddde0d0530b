"""Before any engine starts: the cooldown and the idle energy baseline."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from runner import stop
from runner.config.schema import RunConfig
from runner.measure.cooldown import MachineReader, cool_down
from runner.measure.energy import EnergyMeter
from runner.measure.nvml import cuda_to_nvml_indices, open_nvml
from runner.phases.state import Progress, enter
from runner.results import Phase

log = logging.getLogger(__name__)


def prepare_machine(
    cfg: RunConfig,
    run_dir: Path,
    progress: Progress,
    guard: stop.StopGuard,
    sweep_dir: Path | None,
) -> EnergyMeter:
    """The cooldown, then the idle baseline, before any engine starts (so neither sees a
    model load or a compilation); returns the run's energy meter."""
    m = cfg.measure
    if m.cooldown_seconds > 0 or m.cooldown_until_idle:
        enter(progress, Phase.cooldown, guard)
        progress.display.step(
            "cooling down: %g s%s",
            m.cooldown_seconds,
            f", then until idle (at most {m.cooldown_max_seconds:g} s)"
            if m.cooldown_until_idle
            else "",
        )
        record = cool_down(
            m.cooldown_seconds,
            m.cooldown_until_idle,
            m.cooldown_max_seconds,
            m.cooldown_cpu_busy,
            machine_reader(),
            check=guard.check,
        )
        progress.metrics = dataclasses.replace(progress.metrics, cooldown=record)

    enter(progress, Phase.baseline, guard)
    meter = EnergyMeter(cfg.energy, run_dir, visible_gpus(), logger=log, sweep_dir=sweep_dir)
    progress.meter = meter
    meter.measure_baseline()
    return meter


def visible_gpus() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def machine_reader() -> MachineReader:
    """The cooldown's view of this machine: /proc, the thermal zones, the run's GPUs."""
    gpus = visible_gpus()
    nvml = open_nvml() if gpus else None
    if nvml is None:
        return MachineReader()
    indices, _ = cuda_to_nvml_indices(gpus, nvml.device_count())
    return MachineReader(nvml=nvml, gpus=indices)
