"""One run: load -> compile -> warmup -> measure -> verify -> RunResult.

:func:`run` never raises: any failure becomes a result with ``status: failed``,
the phase it happened in and its traceback; Ctrl-C or SIGTERM becomes
``status: interrupted`` with whatever had been measured.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

from runner import environment, stop
from runner.config.resolved import config_dict
from runner.config.schema import RunConfig
from runner.config.schema_generation import DecodingMode
from runner.config.schema_serving import EngineKind, ScenarioKind
from runner.config.validate import Facts, validate
from runner.hardware.record import (
    finish_sampler,
    place_run,
    probe_for_run,
    start_sampler,
)
from runner.hardware.roofline import DTYPE_BYTES
from runner.measure.generation import CallResult, eos_token_ids, timed_generate
from runner.measure.latency import latency_metrics
from runner.measure.memory import model_footprint_bytes, track_memory
from runner.measure.timing import synchronize
from runner.models.context import check_workload_fits, max_positions
from runner.models.load import input_device, load_model
from runner.models.readback import (
    VerificationError,
    compiled_frames,
    generation_mismatches,
    model_mismatches,
    read_back_generation,
    read_back_model,
)
from runner.phases.machine import prepare_machine, visible_gpus
from runner.phases.measured import announce_measure, keep_peak, measured_loop
from runner.phases.serving import continuous_batching, serve_session, serving_figures
from runner.phases.state import Progress, enter, note_workload, set_phase
from runner.phases.vllm import measure_vllm
from runner.phases.warmup import check_fallbacks, verify_after_warmup, warmup
from runner.quality import phase as quality
from runner.quality.outputs import OUTPUTS_FILE, write_outputs
from runner.results import Phase, RunError, RunResult, Status, write_result
from runner.sections.metrics import Latency, Memory
from runner.sections.requests import REQUESTS_FILE, write_requests
from runner.sections.warnings import WarningsDetail
from runner.slurm import share
from runner.slurm.stops import stop_message
from runner.stop import StopRequested
from runner.translate import (
    apply_compile,
    compile_spec,
    from_pretrained_kwargs,
    generate_kwargs,
    requested_from_pretrained,
)
from runner.workload import Batch, build_workload

log = logging.getLogger(__name__)


def _now() -> str:
    # Milliseconds: the report orders runs by it (drift), and jobs start within a second.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run(
    cfg: RunConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    config_hash: str = "",
    *,
    sweep_dir: Path | None = None,
    launched_at: float | None = None,
) -> RunResult:
    """Measure one configuration; write ``result.json`` and ``requests.parquet`` into ``run_dir``.

    A stop signal (see :mod:`runner.stop`) in any phase ends as ``interrupted`` with that
    phase and whatever was measured; under submitit the signal is then handed to its
    handler (which may requeue the job and exit). ``sweep_dir``: the sweep this run is a
    point of (None on its own); ``launched_at``: when the launcher started this run's
    process (``time.time()``), for ``metrics.startup_seconds``.
    """
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
    progress = Progress(measure=cfg.measure)
    progress.sampler, progress.absent = start_sampler(
        cfg.measure, lambda: progress.phase.value, visible_gpus(), result.warnings
    )
    if launched_at is not None:
        startup = time.time() - launched_at
        progress.metrics = dataclasses.replace(progress.metrics, startup_seconds=startup)
    with stop.guarded() as guard:
        was_live = guard.set_live(True)
        try:
            try:
                with progress.said.capture(lambda: progress.phase.value):
                    enter(progress, Phase.config, guard)
                    result.environment = environment.snapshot()
                    _measure(cfg, run_dir, result, progress, guard, sweep_dir)
                result.status = Status.ok
            finally:
                # From here a signal is recorded, never raised: nothing may cut the write.
                guard.set_live(False)
        except (StopRequested, KeyboardInterrupt):
            _mark_interrupted(result, progress, guard)
        except Exception as exc:
            result.error = RunError(
                type(exc).__name__, str(exc), traceback.format_exc(), progress.phase.value
            )
            log.error("run failed during %s: %s: %s", progress.phase.value, type(exc).__name__, exc)
        progress.display.close()
        _finish(result, progress, run_dir, guard)
        guard.set_live(was_live)
    if result.status is Status.interrupted:
        guard.hand_over()  # recorded first; then submitit may requeue and exit
    return result


def _mark_interrupted(result: RunResult, progress: Progress, guard: stop.StopGuard) -> None:
    result.status = Status.interrupted
    signame = guard.signame
    # What the scheduler's signal means (preemption, time limit), as submitit will act on it.
    message = stop_message(guard.signum, guard.previous_handler(guard.signum))
    result.error = RunError("StopRequested", message, None, progress.phase.value)
    log.warning("run interrupted by %s during %s", signame, progress.phase.value)


def _note_late_stop(result: RunResult, progress: Progress, guard: stop.StopGuard) -> None:
    """A stop recorded after the run settled still makes an ``ok`` run ``interrupted``."""
    if guard.requested and result.status is Status.ok:
        _mark_interrupted(result, progress, guard)


def _finish(result: RunResult, progress: Progress, run_dir: Path, guard: stop.StopGuard) -> None:
    """Fold in whatever was measured (also after a failure) and write atomically.

    Not live: signals are only recorded here, and checked before and after each step.
    """
    assert progress.measure is not None
    timeseries, named = finish_sampler(
        progress.sampler,
        progress.absent,
        run_dir,
        progress.measure,
        Phase.measure.value,
        result.warnings,
    )
    progress.named += named
    serving = None
    if progress.traces is not None and progress.scenario is not None:
        serving, latency = serving_figures(progress)
    else:
        latency = latency_metrics(progress.records, progress.batches) if progress.records else None
    _fold_warnings(result, progress)
    if progress.records:
        try:
            write_requests(run_dir / REQUESTS_FILE, progress.records)
        except Exception as exc:  # the table must not cost the result
            result.warnings.append(f"{REQUESTS_FILE} not written: {type(exc).__name__}: {exc}")
    if progress.outputs:
        try:
            write_outputs(run_dir / OUTPUTS_FILE, progress.outputs)
        except Exception as exc:  # the outputs must not cost the result either
            result.warnings.append(f"{OUTPUTS_FILE} not written: {type(exc).__name__}: {exc}")
    try:
        roofline = place_run(progress.placement, latency, serving is not None)
    except Exception as exc:  # the placement must not cost the result
        roofline = None
        result.warnings.append(f"roofline not placed: {type(exc).__name__}: {exc}")
    result.metrics = dataclasses.replace(
        progress.metrics,
        latency=latency,
        stopped_by=progress.stopped_by,
        serving=serving,
        timeseries=timeseries,
        roofline=roofline,
    )
    _note_late_stop(result, progress, guard)
    if progress.meter is not None:
        enter(progress, Phase.energy, guard)
        try:
            measured = latency or Latency()
            # Under load: per request of output served in the steady-state window.
            requests = serving.served_requests if serving is not None else measured.requests
            result.energy = progress.meter.summary(
                output_tokens=measured.output_tokens or 0, requests=requests or 0
            )
        except Exception as exc:  # energy must not cost the timing results
            result.warnings.append(f"energy summary failed: {type(exc).__name__}: {exc}")
            if result.status is Status.ok:
                result.status = Status.failed
                result.error = RunError(
                    type(exc).__name__, str(exc), traceback.format_exc(), Phase.energy.value
                )
        _note_late_stop(result, progress, guard)
    # Slurm jobs: was the node ours? (No squeue after a stop: the job may be killed soon.)
    result.energy = share.at_end(
        result.environment, result.energy, query=result.status is not Status.interrupted
    )
    enter(progress, Phase.write, guard)
    # Seconds per phase until here: the result file's own write is not in it.
    result.metrics = dataclasses.replace(result.metrics, phase_seconds=dict(progress.phase_seconds))
    while True:
        seen = guard.count
        _note_late_stop(result, progress, guard)
        result.finished_at = _now()
        write_result(run_dir, result)
        if guard.count == seen:  # no signal arrived while writing: the file is final
            return


def _fold_warnings(result: RunResult, progress: Progress) -> None:
    """Named warnings first, then the runner's own, then one line per library warning."""
    named = tuple(progress.named)
    result.warnings_detail = WarningsDetail(named=named, library=progress.said.entries())
    result.warnings = [
        *(f"{w.name}: {w.message}" for w in named),
        *result.warnings,
        *progress.said.lines(),
    ]


def _measure(
    cfg: RunConfig,
    run_dir: Path,
    result: RunResult,
    progress: Progress,
    guard: stop.StopGuard,
    sweep_dir: Path | None,
) -> None:
    validate(cfg, Facts(cuda_available=torch.cuda.is_available()))
    if cfg.engine.kind is EngineKind.vllm:
        measure_vllm(cfg, run_dir, result, progress, guard, sweep_dir)
        return
    load_kwargs = from_pretrained_kwargs(cfg)
    spec = compile_spec(cfg.compile)
    gen_kwargs = generate_kwargs(cfg.decoding, cfg.workload, cfg.compile)
    result.requested = {
        "from_pretrained": requested_from_pretrained(cfg),
        "generate": dict(gen_kwargs),
        "compile": spec.to_dict(),
    }
    meter = prepare_machine(cfg, run_dir, progress, guard, sweep_dir)

    enter(progress, Phase.load, guard)
    t0 = time.perf_counter()
    loaded = load_model(cfg.model, load_kwargs, cfg.cache_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    device = input_device(model)
    synchronize(device)
    progress.metrics = dataclasses.replace(
        progress.metrics,
        provision_seconds=loaded.provision_seconds,
        load_seconds=time.perf_counter() - t0 - (loaded.provision_seconds or 0.0),
        memory=Memory(model_footprint_bytes=model_footprint_bytes(model)),
    )

    dtype = str(model.dtype).removeprefix("torch.")
    progress.placement = probe_for_run(
        model.config.to_dict(),
        device.type if device is not None else "cpu",
        dtype,
        progress.metrics.memory.model_footprint_bytes,
        DTYPE_BYTES.get(dtype),
        progress.display.step,
    )

    workload = build_workload(cfg.workload, tokenizer)
    result.workload = workload.summary()
    note_workload(workload, result)
    check_workload_fits(cfg, result.workload["input_tokens_max"], model.config)
    # Before anything is measured: a reference with another workload is refused now.
    context = max_positions(model.config.to_dict())
    quality_plan = quality.prepare(cfg.quality, workload.token_ids_sha256, context)

    def prime() -> None:
        first = workload.batches[0]
        with torch.inference_mode():
            model(
                input_ids=first.input_ids[:1].to(device),
                attention_mask=first.attention_mask[:1].to(device),
            )

    enter(progress, Phase.compile, guard)
    if spec.enabled:
        progress.display.step("compiling (the first warmup call compiles too)")
    apply_compile(model, spec, prime)

    enter(progress, Phase.verify, guard)
    applied_model = read_back_model(model)
    applied_gen = read_back_generation(model, gen_kwargs)
    result.applied = {"model": applied_model, "generate": applied_gen, "model_path": loaded.path}
    problems = model_mismatches(result.requested["from_pretrained"], spec, applied_model)
    problems += generation_mismatches(gen_kwargs, applied_gen)
    if problems:
        raise VerificationError("; ".join(problems))

    eos_ids = eos_token_ids(model, tokenizer)
    if cfg.scenario.kind is ScenarioKind.online:
        session = continuous_batching(cfg, model, eos_ids, result)
        try:
            serve_session(cfg, workload, session, meter, progress, guard, result, device)
        finally:
            session.close()  # the plain model again, for the quality phase
        enter(progress, Phase.quality, guard)
        result.quality = quality.measure_quality(
            cfg.quality, quality_plan, model, tokenizer, device, progress.outputs, guard.check
        )
        set_phase(progress, Phase.write)
        return
    use_streamer = cfg.decoding.mode is DecodingMode.prompt_lookup
    call_kwargs = {**gen_kwargs, "pad_token_id": tokenizer.pad_token_id}

    def call(batch: Batch) -> CallResult:
        return timed_generate(
            model,
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
            call_kwargs,
            eos_ids=eos_ids,
            use_streamer=use_streamer,
            seed=cfg.decoding.seed,
        )

    enter(progress, Phase.compile if spec.enabled else Phase.warmup, guard)
    with compiled_frames(spec.enabled) as frames:
        first = warmup(cfg, workload, call, progress, spec.enabled, guard)
    if first is not None:
        result.applied["generate"]["sample_output"] = tokenizer.decode(list(first.first_row_ids))
    verify_after_warmup(cfg, spec.enabled, result, first, frames, progress)

    enter(progress, Phase.measure, guard)
    announce_measure(cfg, workload, progress)
    window = None
    try:
        with (
            compiled_frames(spec.enabled, fresh=False) as measured_frames,
            track_memory(device) as window,
            meter.tracking(),
        ):
            measured_loop(cfg, workload, call, progress, device, guard)
    finally:
        keep_peak(progress, window)
    check_fallbacks(measured_frames, Phase.measure, progress, cfg)

    enter(progress, Phase.quality, guard)  # after the timed and energy windows
    result.quality = quality.measure_quality(
        cfg.quality, quality_plan, model, tokenizer, device, progress.outputs, guard.check
    )
    set_phase(progress, Phase.write)
