"""The measure, energy and quality groups: what a run measures besides the generation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from runner.config.rules import AT_LEAST_0, AT_LEAST_1, POSITIVE, OnlyWith, Range, schema_field


class Isolation(str, Enum):
    forkserver = "forkserver"
    spawn = "spawn"
    inline = "inline"


class EnergyBackend(str, Enum):
    codecarbon = "codecarbon"
    off = "off"


class QualityMode(str, Enum):
    off = "off"
    perplexity = "perplexity"
    full = "full"
    lm_eval = "lm_eval"


# Which fields of these groups apply when (validation, translation and the docs read them).
QUALITY_ON = OnlyWith(
    "mode",
    (QualityMode.perplexity, QualityMode.full, QualityMode.lm_eval),
    "quality other than off",
)
LM_EVAL = OnlyWith("mode", (QualityMode.lm_eval,), "quality=lm-eval")
LM_EVAL_REQUIRED = OnlyWith("mode", (QualityMode.lm_eval,), "quality=lm-eval", required=True)


@dataclass
class MeasureConfig:
    """Warmup, repeats, isolation.

    The measured phase repeats passes over the workload until both ``min_repeats`` and
    ``min_seconds`` are met, and stops at ``max_seconds``.
    """

    warmup: int = schema_field(
        "full-length warmup generate calls, excluded from statistics (with "
        "warmup_until_cv: at least this many)",
        1,
        range=AT_LEAST_0,
    )
    warmup_until_cv: float | None = schema_field(
        "the convergence rule: then warm up until the coefficient of variation of the last "
        "warmup_window passes' latencies (a pass: one call of each batch) is at most this, "
        "e.g. 0.05; unset: the fixed count only",
        None,
        range=POSITIVE,
    )
    warmup_window: int = schema_field("passes the convergence rule looks at", 5, range=Range(low=2))
    warmup_max_calls: int = schema_field(
        "the convergence rule stops after this many warmup calls (recorded as not converged)",
        100,
        range=AT_LEAST_1,
    )
    warmup_max_seconds: float = schema_field(
        "the convergence rule stops after this much warmup time, seconds", 300.0, range=POSITIVE
    )
    min_repeats: int = schema_field(
        "measured passes over the workload, at least", 3, range=AT_LEAST_1
    )
    min_seconds: float = schema_field("measured time, at least (seconds)", 0.0, range=AT_LEAST_0)
    max_seconds: float = schema_field(
        "stop repeating after this much measured time (seconds; recorded as "
        "metrics.stopped_by); not below min_seconds",
        600.0,
        range=POSITIVE,
    )
    cooldown_seconds: float = schema_field(
        "a fixed gap before the run starts (after the previous job), seconds",
        0.0,
        range=AT_LEAST_0,
    )
    cooldown_until_idle: bool = schema_field(
        "then wait until the machine is idle: CPUs at most cooldown_cpu_busy busy, CPU and "
        "GPU temperatures no longer falling, GPU power settled (what the machine can tell)",
        False,
    )
    cooldown_max_seconds: float = schema_field(
        "wait for idle at most this long, then start anyway (recorded), seconds",
        120.0,
        range=POSITIVE,
    )
    cooldown_cpu_busy: float = schema_field(
        "the CPUs count as idle at or below this busy share of all CPU time",
        0.1,
        range=Range(low=0, high=1, low_open=True),
    )
    sample_hz: float = schema_field(
        "the run's hardware time series (timeseries.parquet: power, clocks, temperature, "
        "utilisation, throttle reasons), samples per second from 1 to 10; 0 turns it off",
        2.0,
        range=Range(low=0, high=10),
    )
    throttle_clock_drop: float = schema_field(
        "warn (hardware.clock_drop) when, within a measured window, a GPU's SM clock or the "
        "CPUs' mean frequency falls more than this fraction below its level at the window's "
        "start",
        0.1,
        range=Range(low=0, high=1, low_open=True, high_open=True),
    )
    interference_cores: float = schema_field(
        "warn (hardware.interference) when, over a measured window, processes outside the "
        "run kept more than this many CPU cores busy on average",
        0.5,
        range=POSITIVE,
    )
    isolation: Isolation = schema_field(
        "forkserver: each run in a fresh child process, forked from a server that has "
        "imported torch and transformers (never touched a GPU); spawn: each run in a fresh "
        "interpreter (slower start); inline: in the launcher's process",
        Isolation.forkserver,
    )


@dataclass
class EnergyConfig:
    """Energy tracking.

    CodeCarbon's offline tracker (no network ever) for CPU and RAM, plus the NVML energy
    counter on NVIDIA GPUs; ``energy=off`` records ``energy: null``. A country missing
    from CodeCarbon's packaged energy-mix table is refused, since CodeCarbon would
    silently use the world average.
    """

    backend: EnergyBackend = schema_field("codecarbon or off", MISSING)
    country_iso_code: str = schema_field(
        "ISO 3166 alpha-3 country for the offline carbon intensity", "USA"
    )
    measure_power_secs: float = schema_field(
        "CodeCarbon sampling interval (seconds)", 1.0, range=POSITIVE
    )
    pue: float = schema_field("power usage effectiveness multiplier", 1.0, range=Range(low=1))
    gpu_ids: list[int] | None = schema_field(
        "GPUs to meter, indices >= 0 (default: every GPU visible to the job)"
    )
    baseline_seconds: float = schema_field(
        "idle baseline before the model loads (seconds, 0 disables)", 3.0, range=AT_LEAST_0
    )
    cache_baseline: bool = schema_field(
        "in a sweep (-m), measure the idle baseline once per machine and reuse it in the "
        "sweep's later runs (a file in the sweep directory); its age and the run that "
        "measured it are recorded. A run on its own always measures its own",
        True,
    )
    baseline_max_age_s: float = schema_field(
        "with cache_baseline: a baseline older than this is measured again (seconds)",
        600.0,
        range=POSITIVE,
    )


@dataclass
class QualityConfig:
    """What a saving does to the output, measured after the timed and energy windows.

    ``perplexity`` (default) scores ``max_tokens`` tokens of an evaluation text,
    teacher-forced, with the model as it was measured (weights, quantization, dtype,
    placement); ``full`` scores the whole text; ``lm-eval`` adds
    lm-evaluation-harness tasks on the same loaded model (install the ``lm-eval`` extra);
    ``off`` skips all of it. The text is the built-in one (about 5,000 tokens of prose, code
    and dialogue written for this project, ``runner/data/EVAL_TEXT.md``) unless ``text_path``
    names a UTF-8 text file. The output token ids of every measured request are written to
    ``outputs.parquet`` in every mode, so a report can compare runs: with
    ``reference=<run dir>`` the run records its agreement with that run (same workload only,
    checked before anything is measured). A compiled model is scored with its eager forward
    (its compiled one would compile a graph for every window shape), and the method says
    so. Details: ``docs/quality.md``.
    """

    mode: QualityMode = schema_field("off, perplexity, full or lm_eval", MISSING)
    text_path: str | None = schema_field(
        "UTF-8 text file to score instead of the built-in evaluation text", only_with=QUALITY_ON
    )
    max_tokens: int | None = schema_field(
        "tokens to score: max_tokens // window full windows (at least one), spread evenly "
        "over the text (unset: every window)",
        range=AT_LEAST_1,
        only_with=QUALITY_ON,
    )
    window: int = schema_field(
        "tokens per teacher-forced window; the first token of each has no context and is "
        "not scored",
        256,
        range=Range(low=2),
    )
    batch_size: int = schema_field(
        "windows per forward pass (and lm-eval's batch size)", 4, range=AT_LEAST_1
    )
    reference: str | None = schema_field(
        "a run directory to compare this run's outputs with (token agreement, exact match, "
        "first divergence)",
        only_with=QUALITY_ON,
    )
    tasks: list[str] | None = schema_field(
        "lm-eval task names (the built-in offline task: sweep_runner_facts)",
        only_with=LM_EVAL_REQUIRED,
    )
    task_dir: str | None = schema_field(
        "a directory of your own lm-eval task YAML files (data on disk)", only_with=LM_EVAL
    )
    limit: int | None = schema_field(
        "lm-eval examples per task at most (unset: all)", range=AT_LEAST_1, only_with=LM_EVAL
    )
