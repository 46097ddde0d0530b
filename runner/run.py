"""One run: load -> compile -> warmup -> measure -> verify -> RunResult.

:func:`run` never raises: any failure becomes a result with ``status: failed``,
the phase it happened in and its traceback; Ctrl-C or SIGTERM becomes
``status: interrupted`` with whatever had been measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
import traceback
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from runner import environment
from runner.config.schema import DecodingMode, RunConfig
from runner.config.validate import Facts, validate
from runner.measure.energy import EnergyMeter
from runner.measure.generation import CallResult, eos_token_ids, timed_generate
from runner.measure.latency import (
    BatchRecord,
    RequestRecord,
    latency_metrics,
    records_for_call,
    write_requests_csv,
)
from runner.measure.memory import model_footprint_bytes, track_memory
from runner.measure.timing import synchronize
from runner.models.load import load_model
from runner.models.readback import (
    VerificationError,
    generation_mismatches,
    model_mismatches,
    read_back_generation,
    read_back_model,
)
from runner.results import REQUESTS_FILE, Phase, RunError, RunResult, Status, write_result
from runner.slurm import share
from runner.slurm.stops import stop_message
from runner.translate import (
    apply_compile,
    compile_spec,
    from_pretrained_kwargs,
    generate_kwargs,
    requested_from_pretrained,
)
from runner.workload import build_workload

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """SIGTERM or SIGUSR2 (Slurm preemption or time limit) arrived during the run."""

    def __init__(self, message: str, signum: int | None = None, previous: Any = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.previous = previous  # the handler installed before the run (e.g. submitit's)

    def hand_over(self) -> None:
        """Call the handler that was installed before the run, now that the result is written.

        Under submitit that is its SIGUSR2 handler: it checkpoints the job, requeues it with
        ``scontrol requeue`` and exits (``SystemExit``); its SIGTERM handler only logs.
        When it does not requeue (time limit reached too often) it raises to end the job;
        the result already says so (runner.slurm.stops), so the job ends normally.
        """
        if self.signum is not None and callable(self.previous):
            try:
                self.previous(self.signum, None)
            except Exception as exc:
                log.info("submitit did not requeue the job: %s", exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_dict(cfg: RunConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


# SIGUSR2: what submitit has Slurm send signal_delay_s before the time limit (and at
# preemption where the cluster sends user signals); SIGTERM: scancel, preemption.
_STOP_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGUSR2")) if s is not None
)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGTERM/SIGUSR2 into :class:`RunInterrupted`, Ctrl-C into
    KeyboardInterrupt; a second signal ends at once."""
    handled = (*_STOP_SIGNALS, signal.SIGINT)

    def on_stop(signum: int, frame: Any) -> None:
        for s in handled:
            signal.signal(s, signal.SIG_DFL)
        raise RunInterrupted(
            f"received signal {signal.Signals(signum).name}", signum, old.get(signum)
        )

    def on_int(signum: int, frame: Any) -> None:
        for s in handled:
            signal.signal(s, signal.SIG_DFL)
        raise KeyboardInterrupt

    old: dict[int, Any] = {}
    try:
        for s in handled:
            old[s] = signal.signal(s, on_int if s == signal.SIGINT else on_stop)
    except ValueError:  # not the main thread: leave signal handling to the caller
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclasses.dataclass
class _Progress:
    """What a run has gathered so far; survives a failure or interruption."""

    phase: Phase = Phase.config
    records: list[RequestRecord] = dataclasses.field(default_factory=list)
    batches: list[BatchRecord] = dataclasses.field(default_factory=list)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    meter: EnergyMeter | None = None
    stopped_by: str | None = None


def run(
    cfg: RunConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    config_hash: str = "",
) -> RunResult:
    """Measure one configuration; write ``result.json`` and ``requests.csv`` into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult(
        status=Status.failed,
        run_id=run_dir.name,
        config_hash=config_hash,
        overrides=list(overrides or []),
        started_at=_now(),
        config=config_dict(cfg),
    )
    progress = _Progress()
    stopped: RunInterrupted | None = None
    try:
        with interruptible():
            result.environment = environment.snapshot()
            _measure(cfg, run_dir, result, progress)
        result.status = Status.ok
    except (KeyboardInterrupt, RunInterrupted) as exc:
        stopped = exc if isinstance(exc, RunInterrupted) else None
        result.status = Status.interrupted
        # What the scheduler's signal means (preemption, time limit), as submitit will act on it.
        message = stop_message(stopped.signum, stopped.previous) if stopped else str(exc)
        result.error = RunError(
            type(exc).__name__, message or "interrupted", None, progress.phase.value
        )
        log.warning("run interrupted during %s", progress.phase.value)
    except Exception as exc:
        result.error = RunError(
            type(exc).__name__, str(exc), traceback.format_exc(), progress.phase.value
        )
        log.error("run failed during %s: %s: %s", progress.phase.value, type(exc).__name__, exc)
    finally:
        _finish(result, progress, run_dir)
    if stopped is not None:
        stopped.hand_over()  # recorded first; then submitit may requeue and exit
    return result


def _finish(result: RunResult, progress: _Progress, run_dir: Path) -> None:
    """Fold in whatever was measured (also after a failure) and write atomically."""
    if progress.records:
        result.metrics.update(latency_metrics(progress.records, progress.batches))
        with contextlib.suppress(OSError):
            write_requests_csv(run_dir / REQUESTS_FILE, progress.records)
    result.metrics.update(progress.metrics)
    if progress.stopped_by:
        result.metrics["stopped_by"] = progress.stopped_by
    if progress.meter is not None:
        try:
            result.energy = progress.meter.summary(
                output_tokens=result.metrics.get("output_tokens", 0),
                requests=result.metrics.get("requests", 0),
            )
        except Exception as exc:  # energy must not cost the timing results
            result.warnings.append(f"energy summary failed: {type(exc).__name__}: {exc}")
            if result.status is Status.ok:
                result.status = Status.failed
                result.error = RunError(
                    type(exc).__name__, str(exc), traceback.format_exc(), Phase.energy.value
                )
    # Slurm jobs: was the node ours? (No squeue after a stop: the job may be killed soon.)
    share.at_end(result.environment, result.energy, query=result.status is not Status.interrupted)
    result.finished_at = _now()
    write_result(run_dir, result)


def _used_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _measure(cfg: RunConfig, run_dir: Path, result: RunResult, progress: _Progress) -> None:
    progress.phase = Phase.config
    validate(cfg, Facts(cuda_available=torch.cuda.is_available()))
    load_kwargs = from_pretrained_kwargs(cfg)
    spec = compile_spec(cfg.compile)
    gen_kwargs = generate_kwargs(cfg.decoding, cfg.workload)
    if not spec.enabled and cfg.decoding.cache_implementation is not None:
        # On accelerators transformers auto-compiles decoding with static caches;
        # compile=off must mean no compilation.
        gen_kwargs["disable_compile"] = True
    result.requested = {
        "from_pretrained": requested_from_pretrained(cfg),
        "generate": dict(gen_kwargs),
        "compile": spec.to_dict(),
    }

    progress.phase = Phase.energy
    meter = EnergyMeter(cfg.energy, run_dir, _visible_gpus(), logger=log)
    progress.meter = meter
    meter.measure_baseline()

    progress.phase = Phase.load
    t0 = time.perf_counter()
    loaded = load_model(cfg.model, load_kwargs, cfg.cache_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    device = _used_device(model)
    synchronize(device)
    progress.metrics["load_seconds"] = time.perf_counter() - t0
    progress.metrics["memory"] = {"model_footprint_bytes": model_footprint_bytes(model)}

    workload = build_workload(cfg.workload, tokenizer)
    result.workload = workload.summary()

    def prime() -> None:
        first = workload.batches[0]
        with torch.inference_mode():
            model(
                input_ids=first.input_ids[:1].to(device),
                attention_mask=first.attention_mask[:1].to(device),
            )

    progress.phase = Phase.compile
    apply_compile(model, spec, prime)

    progress.phase = Phase.verify
    applied_model = read_back_model(model)
    applied_gen = read_back_generation(model, gen_kwargs)
    result.applied = {"model": applied_model, "generate": applied_gen, "model_path": loaded.path}
    problems = model_mismatches(result.requested["from_pretrained"], spec, applied_model)
    problems += generation_mismatches(gen_kwargs, applied_gen)
    if problems:
        raise VerificationError("; ".join(problems))

    eos_ids = eos_token_ids(model, tokenizer)
    use_streamer = cfg.decoding.mode is DecodingMode.prompt_lookup
    call_kwargs = {**gen_kwargs, "pad_token_id": tokenizer.pad_token_id}

    def call(batch: Any) -> Any:
        return timed_generate(
            model,
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
            call_kwargs,
            eos_ids=eos_ids,
            use_streamer=use_streamer,
            seed=cfg.decoding.seed,
        )

    progress.phase = Phase.compile if spec.enabled else Phase.warmup
    first = _warmup(cfg, workload, call, progress, result, spec.enabled)
    if first is not None:
        result.applied["generate"]["sample_output"] = tokenizer.decode(list(first.first_row_ids))
    _verify_after_warmup(cfg, spec.enabled, result, first)

    progress.phase = Phase.measure
    window = None
    try:
        with track_memory(device) as window, meter.tracking():
            _measured_loop(cfg, workload, call, meter, progress, device)
    finally:
        # Also after an interruption: the peak so far belongs with what was measured.
        if window is not None and window.value is not None:
            progress.metrics["memory"].update(dataclasses.asdict(window.value))
    progress.phase = Phase.write


def _visible_gpus() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _warmup(
    cfg, workload, call, progress: _Progress, result: RunResult, compiled: bool
) -> CallResult | None:
    """Full-length generations on the real batches; the first is the compile call.

    With compilation every batch of the workload is warmed up once, so no
    (re)compilation for a new input shape lands in the measured window.
    Returns the first call's result (the evidence ``applied`` quotes), if any.
    """
    t0 = time.perf_counter()
    first: CallResult | None = None
    calls = max(cfg.measure.warmup, len(workload.batches)) if compiled else cfg.measure.warmup
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(calls):
            batch = workload.batches[i % len(workload.batches)]
            res = call(batch)
            if first is None:
                first = res
                progress.phase = Phase.warmup
    for w in caught:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in result.warnings:
            result.warnings.append(msg)
    progress.metrics["warmup_seconds"] = time.perf_counter() - t0
    progress.metrics["warmup_calls"] = calls
    progress.metrics["compile_seconds"] = (
        first.timing.total_seconds if compiled and first is not None else None
    )
    return first


def _verify_after_warmup(cfg, compiled: bool, result: RunResult, first: CallResult | None) -> None:
    """Evidence from real calls: compiled frames ran, beams multiplied the rows."""
    if compiled:
        from torch._dynamo.utils import counters

        frames = int(counters["frames"]["ok"])
        result.applied["model"]["compiled_frames"] = frames
        if cfg.measure.warmup and frames == 0:
            raise VerificationError("compile.enabled: no frame was compiled during warmup")
    rows = first.timing.rows if first is not None else None
    result.applied["generate"]["rows_per_step_in_warmup"] = rows


def _measured_loop(cfg, workload, call, meter: EnergyMeter, progress: _Progress, device) -> None:
    """Repeat passes until min_repeats and min_seconds are met, or max_seconds passes.

    Energy windows span one pass each, their edges synchronised with the device.
    """
    m = cfg.measure
    measured = 0.0
    repeat = 0
    log.info("measuring: at least %d repeat(s) and %g s", m.min_repeats, m.min_seconds)
    while True:
        synchronize(device)
        meter.begin_window()
        try:
            for b_index, batch in enumerate(workload.batches):
                res = call(batch)
                reqs, brec = records_for_call(
                    repeat, b_index, batch.requests, res.output_tokens, res.timing
                )
                progress.records.extend(reqs)
                progress.batches.append(brec)
                measured += res.timing.total_seconds
                if measured >= m.max_seconds:
                    progress.stopped_by = "max_seconds"
                    break
        finally:
            synchronize(device)
            meter.end_window()
        repeat += 1
        progress.metrics["repeats"] = repeat
        if progress.stopped_by or (repeat >= m.min_repeats and measured >= m.min_seconds):
            progress.stopped_by = progress.stopped_by or "criteria_met"
            log.info("measured %d repeat(s), %.2f s", repeat, measured)
            return
