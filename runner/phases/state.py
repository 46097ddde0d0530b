"""What a run carries from phase to phase (:class:`Progress`), and moving between phases."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from runner import stop
from runner.config.schema_measure import MeasureConfig
from runner.config.schema_serving import ScenarioConfig
from runner.engines.processes import tree_cpu_seconds
from runner.measure.energy import EnergyMeter
from runner.measure.generation import CallResult
from runner.measure.latency import BatchRecord
from runner.measure.libwarnings import LibraryWarnings
from runner.progress import Display
from runner.quality.outputs import OutputRecord
from runner.results import Phase, RunResult
from runner.sections.metrics import Metrics
from runner.sections.requests import RequestRecord
from runner.sections.warnings import NamedWarning
from runner.workload import Batch, Workload

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Progress:
    """What a run has gathered so far; survives a failure or interruption."""

    phase: Phase = Phase.config
    records: list[RequestRecord] = dataclasses.field(default_factory=list)
    batches: list[BatchRecord] = dataclasses.field(default_factory=list)
    outputs: list[OutputRecord] = dataclasses.field(default_factory=list)
    metrics: Metrics = dataclasses.field(default_factory=Metrics)  # all but the latency part
    meter: EnergyMeter | None = None
    stopped_by: str | None = None
    said: LibraryWarnings = dataclasses.field(default_factory=LibraryWarnings)
    named: list[NamedWarning] = dataclasses.field(default_factory=list)
    display: Display = dataclasses.field(default_factory=Display)
    phase_started: float = dataclasses.field(default_factory=time.perf_counter)
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    # scenario=online: every request sent so far (runner.serving.load.Trace), its scenario
    # and the workload's prompt ids; the records and figures are made from them at the end.
    traces: list[Any] | None = None
    scenario: ScenarioConfig | None = None
    prompt_ids: tuple[str, ...] = ()
    # The hardware time series (runner.hardware.record): its sampler, what the machine
    # lacks, and the rules its windows are judged by.
    sampler: Any = None
    absent: tuple[str, ...] = ()
    measure: MeasureConfig | None = None
    placement: Any = None  # the model's side of the roofline, once it has loaded

    def begin_window(self) -> None:
        """A measured window opens: the energy meter's and the time series' marks."""
        if self.sampler is not None:
            self.sampler.begin_window()
        if self.meter is not None:
            self.meter.begin_window()

    def end_window(self) -> None:
        if self.meter is not None:
            self.meter.end_window()
        if self.sampler is not None:
            self.sampler.end_window()


@contextlib.contextmanager
def measured_cpu(progress: Progress) -> Iterator[None]:
    """Records the CPU time the run's process tree spends inside, as the metrics'
    ``measured_cpu_seconds``, also when a stop cuts it short."""
    before = tree_cpu_seconds()
    try:
        yield
    finally:
        spent = tree_cpu_seconds() - before
        progress.metrics = dataclasses.replace(progress.metrics, measured_cpu_seconds=spent)


def enter(progress: Progress, phase: Phase, guard: stop.StopGuard) -> None:
    """Move to ``phase``. A stop that a library swallowed is raised here, before the move,
    so it is recorded in the phase it arrived in."""
    guard.check()
    set_phase(progress, phase)
    stop.park_for_tests(phase.value, guard)


def set_phase(progress: Progress, phase: Phase) -> None:
    """Move to ``phase``, adding the time spent in the one left to ``phase_seconds``."""
    now, left = time.perf_counter(), progress.phase.value
    spent = now - progress.phase_started
    progress.phase_seconds[left] = progress.phase_seconds.get(left, 0.0) + spent
    progress.phase, progress.phase_started = phase, now


def note_workload(workload: Workload, result: RunResult) -> None:
    """A workload file not measured as written is said at once and kept in the result."""
    note = workload.source_note()
    if note is not None:
        log.warning("%s", note)
        result.warnings.append(note)


# One generate call on one batch of the workload.
Call = Callable[[Batch], CallResult]
