"""Serving under load (``scenario=online``): the load generator around an engine's session,
and the figures of its steady-state window (runner.serving)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from runner import stop
from runner.config.schema import RunConfig
from runner.config.schema_generation import OutputLength
from runner.measure.energy import EnergyMeter
from runner.measure.memory import track_memory
from runner.models.readback import (
    VerificationError,
)
from runner.phases.measured import keep_peak
from runner.phases.state import Progress, enter, measured_cpu
from runner.phases.warmup import warmup
from runner.results import Phase, RunResult
from runner.sections.metrics import Latency
from runner.sections.warnings import NamedWarning
from runner.stop import StopRequested
from runner.workload import Workload

log = logging.getLogger(__name__)


def serving_figures(progress: Progress) -> tuple[Any, Latency | None]:
    """Under load: the window's figures, the per-request rows, and the named warnings of
    a load that was not the one asked for (runner.serving.summary)."""
    from runner.models.fallbacks import (
        SERVING_SCHEDULE_LAG,
        SERVING_SHORT_WINDOW,
        SERVING_UNFINISHED,
    )
    from runner.serving.summary import serving_summary

    s, traces = progress.scenario, progress.traces or []
    assert s is not None
    serving, latency, progress.records = serving_summary(traces, s, progress.prompt_ids)
    if serving.lag_exceeded:
        late = sum(1 for t in traces if t.lag is not None and t.lag > serving.lag_bound_seconds)
        progress.named.append(
            NamedWarning(
                SERVING_SCHEDULE_LAG,
                f"{late} of {serving.requests_sent} requests were sent more than "
                f"{s.max_lag_ms:g} ms after their schedule (at most "
                f"{serving.lag_max_seconds * 1e3:.1f} ms): the load offered was not "
                f"the rate asked",
                Phase.measure.value,
            )
        )
    if serving.requests_unfinished:
        progress.named.append(
            NamedWarning(
                SERVING_UNFINISHED,
                f"{serving.requests_unfinished} of {serving.requests_sent} requests were "
                f"unanswered {s.drain_seconds:g} s after the last was sent and were aborted "
                f"(they count as missing every objective)",
                Phase.measure.value,
            )
        )
    median = serving.e2e_seconds.p50.value
    if (
        serving.window_seconds is not None
        and median is not None
        and serving.window_seconds < median
    ):
        progress.named.append(
            NamedWarning(
                SERVING_SHORT_WINDOW,
                f"the steady-state window ({serving.window_seconds:.1f} s) is shorter than the "
                f"median end-to-end latency ({median:.1f} s): its rates describe a transient; "
                f"send more requests (scenario.num_requests)",
                Phase.measure.value,
            )
        )
    return serving, latency


def continuous_batching(cfg: RunConfig, model: Any, eos_ids: Any, result: RunResult) -> Any:
    """transformers' continuous-batching manager for the load (runner.engines.transformers_cb)."""
    from runner.engines.transformers_cb import ContinuousBatchingSession, cache_config

    fixed = cfg.workload.output_length is OutputLength.fixed
    eos = -1 if fixed or not eos_ids else list(eos_ids)
    config = cache_config(
        result.workload["input_tokens_max"], cfg.decoding.max_new_tokens, cfg.decoding.seed
    )
    result.requested["continuous_batching"] = {
        **config,
        "do_sample": False,
        "max_new_tokens": cfg.decoding.max_new_tokens,
        "eos_token_id": eos,
    }
    return ContinuousBatchingSession(model, cfg.decoding.max_new_tokens, eos, config)


def serve_session(
    cfg: RunConfig,
    workload: Workload,
    session: Any,
    meter: EnergyMeter,
    progress: Progress,
    guard: stop.StopGuard,
    result: RunResult,
    device: torch.device | None,
) -> None:
    """Warmup on the serving engine, its read-back checked, then the load with the memory
    and energy windows around it (transformers' continuous batching)."""
    from runner.engines.vllm_engine import prompt_token_ids

    prompts = {id(b): prompt_token_ids(b) for b in workload.batches}
    enter(progress, Phase.warmup, guard)
    first = warmup(cfg, workload, lambda b: session.call(prompts[id(b)]), progress, False, guard)
    enter(progress, Phase.verify, guard)
    applied = session.read_back()  # after a call: the manager's thread has built its cache
    result.applied["continuous_batching"] = applied
    if first is not None:
        applied["rows_in_warmup"] = len(first.output_ids)
    requested = result.requested["continuous_batching"]
    problems = [
        f"continuous_batching.{key}: requested {requested[key]!r}, applied {applied.get(key)!r}"
        for key in ("page_size", "num_blocks", "max_batch_tokens", "do_sample", "max_new_tokens")
        if applied.get(key) != requested[key]
    ]
    if not applied.get("running"):
        problems.append("continuous_batching: the manager is not running")
    if problems:
        raise VerificationError("; ".join(problems))
    enter(progress, Phase.measure, guard)
    window = None
    try:
        with track_memory(device) as window, meter.tracking():
            serve_requests(cfg, workload, session, progress, guard)
    finally:
        keep_peak(progress, window)


def serve_requests(
    cfg: RunConfig,
    workload: Workload,
    session: Any,
    progress: Progress,
    guard: stop.StopGuard,
) -> None:
    """The load (runner.serving): requests sent by the scenario's arrival process into the
    session's engine; the energy window opens and closes with the steady-state window's
    first and last sends. A stop is polled, never raised inside the engine's own tasks."""
    from runner.config.schema_serving import Arrival
    from runner.engines.vllm_engine import prompt_token_ids
    from runner.serving.arrivals import schedule
    from runner.serving.load import Plan, serve
    from runner.serving.summary import window_indices

    s = cfg.scenario
    assert s.num_requests is not None and s.drain_seconds is not None
    prompts = [ids for b in workload.batches for ids in prompt_token_ids(b)]
    times = None
    if s.arrival is not Arrival.closed:
        assert s.rate is not None and s.arrival is not None
        times = tuple(
            schedule(
                s.arrival,
                s.rate,
                s.num_requests,
                cfg.decoding.seed,
                burstiness=s.burstiness,
                duration_seconds=s.duration_seconds,
            )
        )
    count = len(times) if times is not None else s.num_requests
    plan = Plan(count, times, s.concurrency, s.drain_seconds)
    edges = window_indices(count, s.trim_fraction or 0.0)
    progress.traces, progress.scenario = [], s
    progress.prompt_ids = tuple(r.prompt_id for r in workload.requests)
    load = (
        f"{s.arrival.value} arrivals at {s.rate:g} requests/s"
        if times is not None and s.arrival is not None and s.rate is not None
        else f"a closed loop of {s.concurrency} users"
    )
    progress.display.step(
        "serving %d requests: %s (steady-state window: requests %s); at most %g s drain",
        count,
        load,
        f"{edges[0]} to {edges[1]}" if edges else "none, too few requests",
        s.drain_seconds,
    )
    progress.display.calls("requests", count)

    def on_submit(i: int) -> None:
        if edges is not None and i == edges[0]:
            progress.begin_window()
        if edges is not None and i == edges[1]:
            progress.end_window()
        progress.display.call_done(f"{i + 1} sent")

    # Not live: a signal is recorded and the load generator raises it from its own loop,
    # so that no stop lands inside an engine's output task (which would kill the engine).
    def stopped() -> None:
        if guard.requested:
            raise StopRequested(guard.signum)

    was_live = guard.set_live(False)
    try:
        with measured_cpu(progress):
            session.run(
                serve(session, prompts, plan, progress.traces, on_submit=on_submit, check=stopped)
            )
        progress.stopped_by = "all_sent"
    finally:
        guard.set_live(was_live)
        progress.display.close()
