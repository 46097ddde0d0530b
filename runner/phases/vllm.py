"""The run's phases on vLLM (runner.engines): the same workload, windows, baseline and
quality text as on transformers."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from runner import stop
from runner.config.schema import RunConfig
from runner.config.schema_serving import ScenarioKind
from runner.hardware.record import probe_for_run
from runner.logs import RUN_LOG
from runner.measure.generation import CallResult
from runner.models.context import check_workload_fits, max_positions
from runner.models.readback import (
    VerificationError,
)
from runner.phases.machine import prepare_machine
from runner.phases.measured import announce_measure, measured_loop
from runner.phases.serving import serve_requests
from runner.phases.state import Progress, enter, note_workload, set_phase
from runner.phases.warmup import warmup
from runner.quality import phase as quality
from runner.results import Phase, RunResult
from runner.sections.metrics import Memory
from runner.workload import Batch, build_workload

log = logging.getLogger(__name__)


def measure_vllm(
    cfg: RunConfig,
    run_dir: Path,
    result: RunResult,
    progress: Progress,
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
    meter = prepare_machine(cfg, run_dir, progress, guard, sweep_dir)

    enter(progress, Phase.load, guard)
    t0 = time.perf_counter()
    path, provision = resolve_checkpoint(cfg.model, load_kwargs, cfg.cache_dir)
    model_config = AutoConfig.from_pretrained(path, **load_kwargs)
    dtype = vllm_args.checkpoint_dtype(model_config)
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
        note_workload(workload, result)
        check_workload_fits(cfg, result.workload["input_tokens_max"], model_config)
        quality_plan = quality.prepare(
            cfg.quality, workload.token_ids_sha256, max_positions(model_config.to_dict())
        )

        enter(progress, Phase.verify, guard)
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
        progress.placement = probe_for_run(
            model_config.to_dict(),
            "cuda" if cuda else "cpu",
            str(engine.get("dtype")),
            None,  # the weights are in vLLM's processes: estimated from the config
            vllm_args.kv_cache_width(engine.get("kv_cache_dtype"), engine.get("dtype")),
            progress.display.step,
        )

        prompts = {id(b): prompt_token_ids(b) for b in workload.batches}

        def call(batch: Batch) -> CallResult:
            return session.call(prompts[id(batch)])

        enter(progress, Phase.warmup, guard)
        first = warmup(cfg, workload, call, progress, False, guard)
        if first is not None:
            result.applied["sampling"]["sample_output"] = tokenizer.decode(
                list(first.first_row_ids)
            )

        enter(progress, Phase.measure, guard)
        peak = None
        try:
            with tree_peak_rss() as peak, meter.tracking():
                if online:
                    serve_requests(cfg, workload, session, progress, guard)
                else:
                    announce_measure(cfg, workload, progress)
                    measured_loop(cfg, workload, call, progress, None, guard)
        finally:
            if peak is not None and peak["bytes"] is not None:
                memory = Memory(
                    peak_bytes=peak["bytes"],
                    peak_source=peak["source"],
                    peak_rss_bytes=peak["bytes"],
                )
                progress.metrics = dataclasses.replace(progress.metrics, memory=memory)

        enter(progress, Phase.quality, guard)
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
        set_phase(progress, Phase.write)
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
