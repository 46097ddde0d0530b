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
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from runner import environment, stop
from runner.config.resolved import config_dict
from runner.config.schema import (
    CacheImplementation,
    DecodingMode,
    EngineKind,
    MeasureConfig,
    OutputLength,
    RunConfig,
    ScenarioConfig,
    ScenarioKind,
)
from runner.config.validate import Facts, validate
from runner.engines.processes import tree_cpu_seconds
from runner.hardware.record import (
    ELEM_BYTES,
    finish_sampler,
    place_run,
    probe_for_run,
    start_sampler,
)
from runner.logs import RUN_LOG
from runner.measure.cooldown import MachineReader, cool_down
from runner.measure.energy import EnergyMeter
from runner.measure.generation import CallResult, eos_token_ids, timed_generate
from runner.measure.latency import BatchRecord, latency_metrics, records_for_call
from runner.measure.libwarnings import LibraryWarnings
from runner.measure.memory import model_footprint_bytes, track_memory
from runner.measure.nvml import cuda_to_nvml_indices, open_nvml
from runner.measure.timing import synchronize
from runner.measure.warmup import window_cv
from runner.models.context import check_workload_fits, max_positions
from runner.models.fallbacks import WARMUP_NOT_CONVERGED, compile_evidence, compile_fallbacks
from runner.models.load import input_device, load_model
from runner.models.readback import (
    FrameCount,
    VerificationError,
    compile_evidence_mismatches,
    compiled_frames,
    generation_mismatches,
    model_mismatches,
    read_back_generation,
    read_back_model,
)
from runner.progress import Display, pass_line
from runner.quality import phase as quality
from runner.quality.outputs import OUTPUTS_FILE, OutputRecord, output_records, write_outputs
from runner.results import Phase, RunError, RunResult, Status, write_result
from runner.sections.metrics import Latency, Memory, Metrics
from runner.sections.requests import REQUESTS_FILE, RequestRecord, write_requests
from runner.sections.warnings import NamedWarning, WarningsDetail
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
from runner.workload import Batch, Workload, build_workload

log = logging.getLogger(__name__)


def _now() -> str:
    # Milliseconds: the report orders runs by it (drift), and jobs start within a second.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclasses.dataclass
class _Progress:
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
    progress = _Progress(measure=cfg.measure)
    progress.sampler, progress.absent = start_sampler(
        cfg.measure, lambda: progress.phase.value, _visible_gpus(), result.warnings
    )
    if launched_at is not None:
        startup = time.time() - launched_at
        progress.metrics = dataclasses.replace(progress.metrics, startup_seconds=startup)
    with stop.guarded() as guard:
        was_live = guard.set_live(True)
        try:
            try:
                with progress.said.capture(lambda: progress.phase.value):
                    _enter(progress, Phase.config, guard)
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


def _enter(progress: _Progress, phase: Phase, guard: stop.StopGuard) -> None:
    """Move to ``phase``. A stop that a library swallowed is raised here, before the move,
    so it is recorded in the phase it arrived in."""
    guard.check()
    _set_phase(progress, phase)
    stop.park_for_tests(phase.value, guard)


def _set_phase(progress: _Progress, phase: Phase) -> None:
    """Move to ``phase``, adding the time spent in the one left to ``phase_seconds``."""
    now, left = time.perf_counter(), progress.phase.value
    spent = now - progress.phase_started
    progress.phase_seconds[left] = progress.phase_seconds.get(left, 0.0) + spent
    progress.phase, progress.phase_started = phase, now


def _mark_interrupted(result: RunResult, progress: _Progress, guard: stop.StopGuard) -> None:
    result.status = Status.interrupted
    signame = guard.signame
    # What the scheduler's signal means (preemption, time limit), as submitit will act on it.
    message = stop_message(guard.signum, guard.previous_handler(guard.signum))
    result.error = RunError("StopRequested", message, None, progress.phase.value)
    log.warning("run interrupted by %s during %s", signame, progress.phase.value)


def _note_late_stop(result: RunResult, progress: _Progress, guard: stop.StopGuard) -> None:
    """A stop recorded after the run settled still makes an ``ok`` run ``interrupted``."""
    if guard.requested and result.status is Status.ok:
        _mark_interrupted(result, progress, guard)


def _finish(result: RunResult, progress: _Progress, run_dir: Path, guard: stop.StopGuard) -> None:
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
        serving, latency = _serving_figures(progress)
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
        _enter(progress, Phase.energy, guard)
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
    _enter(progress, Phase.write, guard)
    # Seconds per phase until here: the result file's own write is not in it.
    result.metrics = dataclasses.replace(result.metrics, phase_seconds=dict(progress.phase_seconds))
    while True:
        seen = guard.count
        _note_late_stop(result, progress, guard)
        result.finished_at = _now()
        write_result(run_dir, result)
        if guard.count == seen:  # no signal arrived while writing: the file is final
            return


def _serving_figures(progress: _Progress) -> tuple[Any, Latency | None]:
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


def _fold_warnings(result: RunResult, progress: _Progress) -> None:
    """Named warnings first, then the runner's own, then one line per library warning."""
    named = tuple(progress.named)
    result.warnings_detail = WarningsDetail(named=named, library=progress.said.entries())
    result.warnings = [
        *(f"{w.name}: {w.message}" for w in named),
        *result.warnings,
        *progress.said.lines(),
    ]


# One generate call on one batch of the workload.
Call = Callable[[Batch], CallResult]


def _measure(
    cfg: RunConfig,
    run_dir: Path,
    result: RunResult,
    progress: _Progress,
    guard: stop.StopGuard,
    sweep_dir: Path | None,
) -> None:
    validate(cfg, Facts(cuda_available=torch.cuda.is_available()))
    if cfg.engine.kind is EngineKind.vllm:
        _measure_vllm(cfg, run_dir, result, progress, guard, sweep_dir)
        return
    load_kwargs = from_pretrained_kwargs(cfg)
    spec = compile_spec(cfg.compile)
    gen_kwargs = generate_kwargs(cfg.decoding, cfg.workload, cfg.compile)
    result.requested = {
        "from_pretrained": requested_from_pretrained(cfg),
        "generate": dict(gen_kwargs),
        "compile": spec.to_dict(),
    }
    meter = _prepare_machine(cfg, run_dir, progress, guard, sweep_dir)

    _enter(progress, Phase.load, guard)
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
        ELEM_BYTES.get(dtype),
        progress.display.step,
    )

    workload = build_workload(cfg.workload, tokenizer)
    result.workload = workload.summary()
    _note_workload(workload, result)
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

    _enter(progress, Phase.compile, guard)
    if spec.enabled:
        progress.display.step("compiling (the first warmup call compiles too)")
    apply_compile(model, spec, prime)

    _enter(progress, Phase.verify, guard)
    applied_model = read_back_model(model)
    applied_gen = read_back_generation(model, gen_kwargs)
    result.applied = {"model": applied_model, "generate": applied_gen, "model_path": loaded.path}
    problems = model_mismatches(result.requested["from_pretrained"], spec, applied_model)
    problems += generation_mismatches(gen_kwargs, applied_gen)
    if problems:
        raise VerificationError("; ".join(problems))

    eos_ids = eos_token_ids(model, tokenizer)
    if cfg.scenario.kind is ScenarioKind.online:
        session = _continuous_batching(cfg, model, eos_ids, result)
        try:
            _serve_session(cfg, workload, session, meter, progress, guard, result, device)
        finally:
            session.close()  # the plain model again, for the quality phase
        _enter(progress, Phase.quality, guard)
        result.quality = quality.measure_quality(
            cfg.quality, quality_plan, model, tokenizer, device, progress.outputs, guard.check
        )
        _set_phase(progress, Phase.write)
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

    _enter(progress, Phase.compile if spec.enabled else Phase.warmup, guard)
    with compiled_frames(spec.enabled) as frames:
        first = _warmup(cfg, workload, call, progress, spec.enabled, guard)
    if first is not None:
        result.applied["generate"]["sample_output"] = tokenizer.decode(list(first.first_row_ids))
    _verify_after_warmup(cfg, spec.enabled, result, first, frames, progress)

    _enter(progress, Phase.measure, guard)
    _announce_measure(cfg, workload, progress)
    window = None
    try:
        with (
            compiled_frames(spec.enabled, fresh=False) as measured_frames,
            track_memory(device) as window,
            meter.tracking(),
        ):
            _measured_loop(cfg, workload, call, progress, device, guard)
    finally:
        _keep_peak(progress, window)
    _check_fallbacks(measured_frames, Phase.measure, progress, cfg)

    _enter(progress, Phase.quality, guard)  # after the timed and energy windows
    result.quality = quality.measure_quality(
        cfg.quality, quality_plan, model, tokenizer, device, progress.outputs, guard.check
    )
    _set_phase(progress, Phase.write)


def _note_workload(workload: Workload, result: RunResult) -> None:
    """A workload file not measured as written is said at once and kept in the result."""
    note = workload.source_note()
    if note is not None:
        log.warning("%s", note)
        result.warnings.append(note)


def _continuous_batching(cfg: RunConfig, model: Any, eos_ids: Any, result: RunResult) -> Any:
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


def _serve_session(
    cfg: RunConfig,
    workload: Workload,
    session: Any,
    meter: EnergyMeter,
    progress: _Progress,
    guard: stop.StopGuard,
    result: RunResult,
    device: torch.device | None,
) -> None:
    """Warmup on the serving engine, its read-back checked, then the load with the memory
    and energy windows around it (transformers' continuous batching)."""
    from runner.engines.vllm_engine import prompt_token_ids

    prompts = {id(b): prompt_token_ids(b) for b in workload.batches}
    _enter(progress, Phase.warmup, guard)
    first = _warmup(cfg, workload, lambda b: session.call(prompts[id(b)]), progress, False, guard)
    _enter(progress, Phase.verify, guard)
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
    _enter(progress, Phase.measure, guard)
    window = None
    try:
        with track_memory(device) as window, meter.tracking():
            _serve(cfg, workload, session, progress, guard)
    finally:
        _keep_peak(progress, window)


def _keep_peak(progress: _Progress, window: Any) -> None:
    """The measured window's peak memory (also after an interruption: the peak so far
    belongs with what was measured), beside the model's footprint."""
    if window is not None and window.value is not None:
        footprint = progress.metrics.memory.model_footprint_bytes
        memory = dataclasses.replace(window.value, model_footprint_bytes=footprint)
        progress.metrics = dataclasses.replace(progress.metrics, memory=memory)


def _announce_measure(cfg: RunConfig, workload: Workload, progress: _Progress) -> None:
    m = cfg.measure
    progress.display.step(
        "measuring: passes of %d call(s) until >= %d passes and >= %g s (at most %g s)",
        len(workload.batches),
        m.min_repeats,
        m.min_seconds,
        m.max_seconds,
    )


def _measure_vllm(
    cfg: RunConfig,
    run_dir: Path,
    result: RunResult,
    progress: _Progress,
    guard: stop.StopGuard,
    sweep_dir: Path | None,
) -> None:
    """The same phases on vLLM (runner.engines): the same workload token ids, windows,
    baseline and quality text; its processes end with the run, whatever ends it."""
    from transformers import AutoConfig

    from runner.engines import vllm_args
    from runner.engines.processes import tree_peak_rss
    from runner.engines.vllm_engine import (
        PROMPT_LOGPROB_METHOD,
        VllmSession,
        prompt_token_ids,
        vllm_scorer,
    )
    from runner.engines.vllm_readback import engine_mismatches, sampling_mismatches
    from runner.models.load import load_tokenizer, resolve_checkpoint

    cuda = torch.cuda.is_available()
    load_kwargs = {
        "revision": cfg.loading.revision,
        "trust_remote_code": cfg.loading.trust_remote_code,
    }
    meter = _prepare_machine(cfg, run_dir, progress, guard, sweep_dir)

    _enter(progress, Phase.load, guard)
    t0 = time.perf_counter()
    path, provision = resolve_checkpoint(cfg.model, load_kwargs, cfg.cache_dir)
    model_config = AutoConfig.from_pretrained(path, **load_kwargs)
    dtype = getattr(model_config, "dtype", None)
    dtype = str(dtype).removeprefix("torch.") if dtype is not None else None
    llm_kwargs = vllm_args.llm_kwargs(cfg, path, cuda=cuda, checkpoint_dtype=dtype)
    sampling_kwargs = vllm_args.sampling_kwargs(cfg)
    result.requested = {"engine": "vllm", "llm": llm_kwargs, "sampling": sampling_kwargs}
    online = cfg.scenario.kind is ScenarioKind.online
    if online:
        from runner.engines.vllm_async import AsyncVllmSession

        session: Any = AsyncVllmSession(llm_kwargs, sampling_kwargs)
    else:
        session = VllmSession(llm_kwargs, sampling_kwargs)
    try:
        progress.display.step(
            "starting vLLM (engine and worker processes, weights, KV cache); their own "
            "output goes to %s",
            run_dir / RUN_LOG,
        )
        session.load(run_dir / RUN_LOG)
        tokenizer = load_tokenizer(path, load_kwargs)
        progress.metrics = dataclasses.replace(
            progress.metrics,
            provision_seconds=provision,
            load_seconds=time.perf_counter() - t0 - (provision or 0.0),
        )
        workload = build_workload(cfg.workload, tokenizer)
        result.workload = workload.summary()
        _note_workload(workload, result)
        check_workload_fits(cfg, result.workload["input_tokens_max"], model_config)
        quality_plan = quality.prepare(
            cfg.quality, workload.token_ids_sha256, max_positions(model_config.to_dict())
        )

        _enter(progress, Phase.verify, guard)
        applied = session.read_back()
        result.applied = {
            **applied,
            "model_path": path,
            "engine_processes": len(session.engine_pids()),
        }
        problems = engine_mismatches(llm_kwargs, applied["engine"])
        problems += sampling_mismatches(sampling_kwargs, applied["sampling"])
        if problems:
            raise VerificationError("; ".join(problems))
        engine = applied["engine"]
        kv = str(engine.get("kv_cache_dtype") or "auto")
        progress.placement = probe_for_run(
            model_config.to_dict(),
            "cuda" if cuda else "cpu",
            str(engine.get("dtype")),
            None,  # the weights are in vLLM's processes: estimated from the config
            1.0
            if kv.startswith("fp8")
            else ELEM_BYTES.get(kv, ELEM_BYTES.get(engine.get("dtype"))),
            progress.display.step,
        )

        prompts = {id(b): prompt_token_ids(b) for b in workload.batches}

        def call(batch: Batch) -> CallResult:
            return session.call(prompts[id(batch)])

        _enter(progress, Phase.warmup, guard)
        first = _warmup(cfg, workload, call, progress, False, guard)
        if first is not None:
            result.applied["sampling"]["sample_output"] = tokenizer.decode(
                list(first.first_row_ids)
            )

        _enter(progress, Phase.measure, guard)
        peak = None
        try:
            with tree_peak_rss() as peak, meter.tracking():
                if online:
                    _serve(cfg, workload, session, progress, guard)
                else:
                    _announce_measure(cfg, workload, progress)
                    _measured_loop(cfg, workload, call, progress, None, guard)
        finally:
            if peak is not None and peak["bytes"] is not None:
                memory = Memory(
                    peak_bytes=peak["bytes"],
                    peak_source=peak["source"],
                    peak_rss_bytes=peak["bytes"],
                )
                progress.metrics = dataclasses.replace(progress.metrics, memory=memory)

        _enter(progress, Phase.quality, guard)
        result.quality = quality.measure_quality(
            cfg.quality,
            quality_plan,
            None,
            tokenizer,
            None,
            progress.outputs,
            guard.check,
            scorer=vllm_scorer(session),
            how=PROMPT_LOGPROB_METHOD,
        )
        _set_phase(progress, Phase.write)
    finally:
        # Not live while vLLM shuts down: a second signal must not cut its processes loose.
        was_live = guard.set_live(False)
        try:
            ended = session.close(run_dir / RUN_LOG)
        finally:
            guard.set_live(was_live)
        if ended:
            result.warnings.append(
                f"vLLM left {len(ended)} process(es) after its shutdown; ended: {ended}"
            )


def _serve(
    cfg: RunConfig,
    workload: Workload,
    session: Any,
    progress: _Progress,
    guard: stop.StopGuard,
) -> None:
    """The load (runner.serving): requests sent by the scenario's arrival process into the
    session's engine; the energy window opens and closes with the steady-state window's
    first and last sends. A stop is polled, never raised inside the engine's own tasks."""
    from runner.config.schema import Arrival
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
    before = tree_cpu_seconds()
    try:
        session.run(
            serve(session, prompts, plan, progress.traces, on_submit=on_submit, check=stopped)
        )
        progress.stopped_by = "all_sent"
    finally:
        guard.set_live(was_live)
        progress.display.close()
        spent = tree_cpu_seconds() - before
        progress.metrics = dataclasses.replace(progress.metrics, measured_cpu_seconds=spent)


def _prepare_machine(
    cfg: RunConfig,
    run_dir: Path,
    progress: _Progress,
    guard: stop.StopGuard,
    sweep_dir: Path | None,
) -> EnergyMeter:
    """The cooldown, then the idle baseline, before any engine starts (so neither sees a
    model load or a compilation); returns the run's energy meter."""
    m = cfg.measure
    if m.cooldown_seconds > 0 or m.cooldown_until_idle:
        _enter(progress, Phase.cooldown, guard)
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
            _machine_reader(),
            check=guard.check,
        )
        progress.metrics = dataclasses.replace(progress.metrics, cooldown=record)

    _enter(progress, Phase.baseline, guard)
    meter = EnergyMeter(cfg.energy, run_dir, _visible_gpus(), logger=log, sweep_dir=sweep_dir)
    progress.meter = meter
    meter.measure_baseline()
    return meter


def _visible_gpus() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _machine_reader() -> MachineReader:
    """The cooldown's view of this machine: /proc, the thermal zones, the run's GPUs."""
    gpus = _visible_gpus()
    nvml = open_nvml() if gpus else None
    if nvml is None:
        return MachineReader()
    indices, _ = cuda_to_nvml_indices(gpus, nvml.device_count())
    return MachineReader(nvml=nvml, gpus=indices)


def _warmup(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: _Progress,
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
            _enter(progress, Phase.warmup, guard)  # the first call was the compile call
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
                        f"{m.warmup_window} passes at {_cv_text(cv)} (rule: <= "
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


def _cv_text(cv: float | None) -> str:
    return "unknown (too few calls)" if cv is None else f"{cv:.3f}"


def _verify_after_warmup(
    cfg: RunConfig,
    compiled: bool,
    result: RunResult,
    first: CallResult | None,
    frames: FrameCount,
    progress: _Progress,
) -> None:
    """Evidence from real calls: this run's warmup compiled frames (and where Dynamo fell
    back to eager, :mod:`runner.models.fallbacks`), beams multiplied the rows."""
    if compiled:
        result.applied["model"]["compiled_frames"] = frames.frames
        result.applied["model"].update(compile_evidence(frames))
    problems = compile_evidence_mismatches(compiled, cfg.measure.warmup, frames.frames)
    if problems:
        raise VerificationError("; ".join(problems))
    _check_fallbacks(frames, Phase.warmup, progress, cfg)
    rows = first.timing.rows if first is not None else None
    result.applied["generate"]["rows_per_step_in_warmup"] = rows


def _check_fallbacks(frames: FrameCount, phase: Phase, progress: _Progress, cfg: RunConfig) -> None:
    """Dynamo's fallbacks during ``phase`` become named warnings (runner.models.fallbacks)."""
    static = cfg.decoding.cache_implementation in (
        CacheImplementation.static,
        CacheImplementation.offloaded_static,
    )
    named = compile_fallbacks(frames, phase.value, dynamic=cfg.compile.dynamic, static_cache=static)
    progress.named += named
    for w in named:
        log.warning("%s: %s", w.name, w.message)


def _measured_loop(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: _Progress,
    device: torch.device | None,
    guard: stop.StopGuard,
) -> None:
    """The measured passes, and the CPU time the run's process tree spent in them (also
    when a stop cuts them short)."""
    before = tree_cpu_seconds()
    try:
        _passes(cfg, workload, call, progress, device, guard)
    finally:
        spent = tree_cpu_seconds() - before
        progress.metrics = dataclasses.replace(progress.metrics, measured_cpu_seconds=spent)


def _passes(
    cfg: RunConfig,
    workload: Workload,
    call: Call,
    progress: _Progress,
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
