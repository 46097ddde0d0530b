"""Warmup: full-length calls before the measured window, and what they prove (compiled
frames, Dynamo's fallbacks)."""

from __future__ import annotations

import dataclasses
import logging
import time

from runner import stop
from runner.config.schema import RunConfig
from runner.config.schema_generation import CacheImplementation
from runner.measure.generation import CallResult
from runner.measure.warmup import window_cv
from runner.models.fallbacks import WARMUP_NOT_CONVERGED, compile_evidence, compile_fallbacks
from runner.models.readback import (
    FrameCount,
    VerificationError,
    compile_evidence_mismatches,
)
from runner.phases.state import Call, Progress, enter
from runner.results import Phase, RunResult
from runner.sections.warnings import NamedWarning
from runner.workload import Workload

log = logging.getLogger(__name__)


def warmup(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: Progress,
    compiled: bool,
    guard: stop.StopGuard,
) -> CallResult | None:
    """Full-length generations on the real batches; the first is the compile call.

    With compilation every batch of the workload is warmed up once, so no
    (re)compilation for a new input shape lands in the measured window.
    Returns the first call's result (the evidence ``applied`` quotes), if any.
    """
    m = cfg.measure
    t0 = time.perf_counter()
    first: CallResult | None = None
    calls = max(m.warmup, len(workload.batches)) if compiled else m.warmup
    if calls:
        progress.display.step("warmup: %d full-length call(s)", calls)
        progress.display.calls("warmup", calls)
    seen: list[float] = []  # the seconds of every warmup call, in order

    def warm() -> None:
        nonlocal first
        res = call(workload.batches[len(seen) % len(workload.batches)])
        seen.append(res.timing.total_seconds)
        if first is None:
            first = res
            enter(progress, Phase.warmup, guard)  # the first call was the compile call
        guard.check()

    for _ in range(calls):
        warm()
        progress.display.call_done()
    cv: float | None = None
    converged: bool | None = None
    if m.warmup_until_cv is not None:
        progress.display.close()
        progress.display.step(
            "warmup: until the CV of the last %d passes <= %g (at most %d calls, %g s)",
            m.warmup_window,
            m.warmup_until_cv,
            m.warmup_max_calls,
            m.warmup_max_seconds,
        )
        while True:
            cv = window_cv(seen, len(workload.batches), m.warmup_window)
            if cv is not None and cv <= m.warmup_until_cv:
                converged = True
                break
            if len(seen) >= m.warmup_max_calls or time.perf_counter() - t0 >= m.warmup_max_seconds:
                converged = False
                progress.named.append(
                    NamedWarning(
                        WARMUP_NOT_CONVERGED,
                        f"warmup stopped after {len(seen)} calls with the CV of the last "
                        f"{m.warmup_window} passes at {cv_text(cv)} (rule: <= "
                        f"{m.warmup_until_cv:g})",
                        Phase.warmup.value,
                    )
                )
                break
            warm()
    progress.display.close()
    progress.metrics = dataclasses.replace(
        progress.metrics,
        warmup_seconds=time.perf_counter() - t0,
        warmup_calls=len(seen),
        warmup_cv=cv,
        warmup_converged=converged,
        compile_seconds=first.timing.total_seconds if compiled and first is not None else None,
    )
    return first


def cv_text(cv: float | None) -> str:
    return "unknown (too few calls)" if cv is None else f"{cv:.3f}"


def verify_after_warmup(
    cfg: RunConfig,
    compiled: bool,
    result: RunResult,
    first: CallResult | None,
    frames: FrameCount,
    progress: Progress,
) -> None:
    """Evidence from real calls: this run's warmup compiled frames (and where Dynamo fell
    back to eager, :mod:`runner.models.fallbacks`), beams multiplied the rows."""
    if compiled:
        result.applied["model"]["compiled_frames"] = frames.frames
        result.applied["model"].update(compile_evidence(frames))
    problems = compile_evidence_mismatches(compiled, cfg.measure.warmup, frames.frames)
    if problems:
        raise VerificationError("; ".join(problems))
    check_fallbacks(frames, Phase.warmup, progress, cfg)
    rows = first.timing.rows if first is not None else None
    result.applied["generate"]["rows_per_step_in_warmup"] = rows


def check_fallbacks(frames: FrameCount, phase: Phase, progress: Progress, cfg: RunConfig) -> None:
    """Dynamo's fallbacks during ``phase`` become named warnings (runner.models.fallbacks)."""
    static = cfg.decoding.cache_implementation in (
        CacheImplementation.static,
        CacheImplementation.offloaded_static,
    )
    named = compile_fallbacks(frames, phase.value, dynamic=cfg.compile.dynamic, static_cache=static)
    progress.named += named
    for w in named:
        log.warning("%s: %s", w.name, w.message)
