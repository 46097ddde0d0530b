"""The ``metrics`` section of ``result.json``: timing, throughput and memory.

Seconds, tokens per second and bytes, as the field names say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.sections.base import INLINE, OMIT_NONE, Section
from runner.sections.hardware import Roofline, Timeseries
from runner.sections.serving import Serving

# What stamped a run's latencies (``Latency.clock``).
CUDA_EVENTS, PERF_COUNTER = "cuda-events", "perf_counter"


@dataclass(frozen=True)
class Stats(Section):
    """One quantity's distribution, in the quantity's unit (``cv`` is a fraction).

    Descriptive statistics are over the ``count`` observations; the 95% CI of the mean
    is over ``ci_units`` independent units of kind ``ci_unit`` ("call", "repeat"...).
    """

    count: int = 0
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    ci_unit: str | None = None
    ci_units: int | None = None
    cv: float | None = None


@dataclass(frozen=True)
class Throughput(Section):
    """Totals over every measured window: tokens (or requests) / window seconds.

    ``output_tokens_per_second`` is the run's headline rate; its 95% CI is over
    ``ci_units`` complete measured passes (``ci_unit`` "pass"), from the ratio estimator
    total tokens / total seconds (None with fewer than 3 passes).
    """

    output_tokens_per_second: float | None = None
    decode_tokens_per_second: float | None = None
    requests_per_second: float | None = None
    input_tokens_per_second: float | None = None
    output_tokens_per_second_ci95_low: float | None = None
    output_tokens_per_second_ci95_high: float | None = None
    ci_unit: str | None = None
    ci_units: int | None = None


@dataclass(frozen=True)
class Latency(Section):
    """What the measured calls' records give: per-request latencies (CI over calls),
    per-call and per-pass throughput, window totals and counts."""

    ttft_seconds: Stats | None = None
    itl_seconds: Stats | None = None
    tpot_seconds: Stats | None = None
    e2e_request_seconds: Stats | None = None
    e2e_batch_seconds: Stats | None = None
    output_tokens_per_second: Stats | None = None  # per call
    decode_tokens_per_second: Stats | None = None  # per call
    throughput_per_repeat: Stats | None = None  # output tokens/s per complete pass
    throughput: Throughput | None = None
    measured_seconds: float | None = None
    requests: int | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None
    calls: int | None = None
    clock: str | None = None  # what stamped the calls: cuda-events, perf_counter


@dataclass(frozen=True)
class Memory(Section):
    """Bytes. The model's footprint, and the peak over the measured window
    (``peak_source`` says how it was obtained)."""

    model_footprint_bytes: int | None = None
    peak_bytes: int | None = None
    peak_source: str | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_rss_bytes: int | None = None


@dataclass(frozen=True)
class MachineState(Section):
    """What the machine was doing: the share of all CPUs' time that was busy over a short
    sample (a fraction), the 1-minute load average, the hottest CPU thermal zone (°C), and
    per GPU (NVML index) its temperature (°C) and board power (W). None where unreadable."""

    cpu_busy_fraction: float | None = None
    load_1m: float | None = None
    cpu_temp_c: float | None = None
    gpu_temp_c: dict[str, float] = field(default_factory=dict)
    gpu_power_w: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Cooldown(Section):
    """The wait before the run (``measure.cooldown_*``): ``fixed_seconds`` of plain gap,
    then, with ``until_idle``, until the machine was idle or ``max`` was reached
    (``reached_idle``, ``reason``); ``waited_seconds`` in all; ``start_state`` the state
    the run started in."""

    fixed_seconds: float | None = None
    until_idle: bool | None = None
    waited_seconds: float | None = None
    reached_idle: bool | None = None
    reason: str | None = None
    start_state: MachineState | None = None


@dataclass(frozen=True)
class Metrics(Section):
    """The ``metrics`` section; a field is None where the run did not get that far.

    The latency keys are written flat into ``metrics`` (and left out before anything
    was measured). ``provision_seconds`` is the one-time build of a cached checkpoint
    (GGUF conversion, tiny-model generation, random weights), or the wait for another
    job building it; None when the cache was warm. ``load_seconds`` excludes it.
    ``startup_seconds``: from the launcher starting the run's process to the run
    beginning (process start and imports; None with isolation=inline).
    ``phase_seconds``: wall seconds spent in each phase, until the result file's own write.
    ``warmup_cv``, ``warmup_converged``: with ``measure.warmup_until_cv``, the CV of the
    last warmup calls when warmup ended, and whether it met the rule (None without it).
    ``measured_cpu_seconds``: CPU seconds (user + system) the run's process tree used over
    the measured passes: the runner's process and, under vLLM, its engine and workers.
    ``serving``: under ``scenario=online``, the load and what was served
    (:class:`runner.sections.serving.Serving`); absent offline.
    ``timeseries``, ``roofline``: the machine's side (:mod:`runner.sections.hardware`).
    """

    latency: Latency | None = field(default=None, metadata=INLINE)
    provision_seconds: float | None = None
    load_seconds: float | None = None
    memory: Memory = field(default_factory=Memory)
    warmup_seconds: float | None = None
    warmup_calls: int | None = None
    warmup_cv: float | None = None
    warmup_converged: bool | None = None
    compile_seconds: float | None = None
    repeats: int | None = None
    stopped_by: str | None = None
    startup_seconds: float | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    cooldown: Cooldown | None = None
    measured_cpu_seconds: float | None = None
    serving: Serving | None = field(default=None, metadata=OMIT_NONE)  # scenario=online
    timeseries: Timeseries | None = field(default=None, metadata=OMIT_NONE)
    roofline: Roofline | None = field(default=None, metadata=OMIT_NONE)
