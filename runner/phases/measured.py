"""The measured passes over the workload, with their energy and time-series windows."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from runner import stop
from runner.config.schema import RunConfig
from runner.measure.latency import records_for_call
from runner.measure.timing import synchronize
from runner.phases.state import Call, Progress, measured_cpu
from runner.progress import pass_line
from runner.quality.outputs import output_records
from runner.workload import Workload

log = logging.getLogger(__name__)


def keep_peak(progress: Progress, window: Any) -> None:
    """The measured window's peak memory (also after an interruption: the peak so far
    belongs with what was measured), beside the model's footprint."""
    if window is not None and window.value is not None:
        footprint = progress.metrics.memory.model_footprint_bytes
        memory = dataclasses.replace(window.value, model_footprint_bytes=footprint)
        progress.metrics = dataclasses.replace(progress.metrics, memory=memory)


def announce_measure(cfg: RunConfig, workload: Workload, progress: Progress) -> None:
    m = cfg.measure
    progress.display.step(
        "measuring: passes of %d call(s) until >= %d passes and >= %g s (at most %g s)",
        len(workload.batches),
        m.min_repeats,
        m.min_seconds,
        m.max_seconds,
    )


def measured_loop(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: Progress,
    device: torch.device | None,
    guard: stop.StopGuard,
) -> None:
    """The measured passes, and the CPU time the run's process tree spent in them (also
    when a stop cuts them short)."""
    with measured_cpu(progress):
        passes(cfg, workload, call, progress, device, guard)


def passes(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: Progress,
    device: torch.device | None,
    guard: stop.StopGuard,
) -> None:
    """Repeat passes until min_repeats and min_seconds are met, or max_seconds passes.

    Energy windows span one pass each, their edges synchronised with the device.
    """
    m = cfg.measure
    measured = 0.0
    repeat = 0
    tokens = 0
    show = progress.display
    while True:
        show.calls(f"pass {repeat + 1} (min {m.min_repeats})", len(workload.batches))
        synchronize(device)
        progress.begin_window()
        try:
            for b_index, batch in enumerate(workload.batches):
                res = call(batch)
                reqs, brec = records_for_call(
                    repeat,
                    b_index,
                    batch.requests,
                    res.output_tokens,
                    res.timing,
                    res.request_timings,
                )
                progress.records.extend(reqs)
                progress.batches.append(brec)
                progress.outputs += output_records(repeat, b_index, batch.requests, res.output_ids)
                measured += res.timing.total_seconds
                tokens += sum(res.output_tokens)
                # Between calls, never inside one: the bar is redrawn here only.
                show.call_done(f"{measured:.1f} of >= {m.min_seconds:g} s measured")
                guard.check()
                if measured >= m.max_seconds:
                    progress.stopped_by = "max_seconds"
                    break
        finally:
            synchronize(device)
            progress.end_window()
        repeat += 1
        progress.metrics = dataclasses.replace(progress.metrics, repeats=repeat)
        done = bool(progress.stopped_by) or (repeat >= m.min_repeats and measured >= m.min_seconds)
        show.pass_done(
            pass_line(
                repeat,
                m.min_repeats,
                len(progress.records),
                tokens,
                measured,
                m.min_seconds,
                m.max_seconds,
            ),
            final=done,
        )
        if done:
            progress.stopped_by = progress.stopped_by or "criteria_met"
            log.info("measured %d repeat(s), %.2f s", repeat, measured)
            return
