"""The runner's vLLM path against a bare ``LLM.generate`` loop on the same prompts.

One engine (SmolLM2-135M, eager, as ``engine=vllm`` starts it), one set of batches (the
runner's own workload token ids). In every round each batch goes through both paths back to
back, which one first alternating by batch and round: the runner's streamed call
(``VllmSession.call``: every token stamped as its step's output arrives, then its records)
and a bare ``LLM.generate`` on the same token ids with the same sampling parameters, timed
with ``time.perf_counter``. Each round gives one ratio runner/bare of output tokens/s, the
runner's from ``latency_metrics`` exactly as it reports it. Target: >= 0.95.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    check,
    compose,
    median,
    paired_rounds,
    progress,
    rounded,
    runner_figures,
    section,
)

TARGET = 0.95
ROUNDS, QUICK_ROUNDS = 5, 3
OVERRIDES = [
    "engine=vllm",
    "model=smollm2-135m",
    "energy=off",
    "workload.num_prompts=8",
    "workload.batch_size=4",
    "decoding.max_new_tokens=32",
]


def _paths(cfg: Any) -> tuple[Any, Any, list[list[list[int]]]]:
    import time

    import torch
    from transformers import AutoConfig

    from runner.engines import vllm_args
    from runner.engines.vllm_engine import VllmSession, prompt_token_ids
    from runner.measure.latency import records_for_call
    from runner.models.load import load_tokenizer, resolve_checkpoint
    from runner.workload import build_workload

    path, _ = resolve_checkpoint(cfg.model, {}, cfg.cache_dir)
    # As the runner's vLLM phase starts the engine: the checkpoint's own dtype, CUDA if any.
    dtype = vllm_args.checkpoint_dtype(AutoConfig.from_pretrained(path))
    session = VllmSession(
        vllm_args.llm_kwargs(cfg, path, cuda=torch.cuda.is_available(), checkpoint_dtype=dtype),
        vllm_args.sampling_kwargs(cfg),
    )
    session.load()
    workload = build_workload(cfg.workload, load_tokenizer(path, {}))
    prompts = [prompt_token_ids(b) for b in workload.batches]
    bare_params = session._vllm.SamplingParams(**vllm_args.sampling_kwargs(cfg))

    def bare(batch: list[list[int]]) -> tuple[int, float]:
        t0 = time.perf_counter()
        outs = session.llm.generate(
            [{"prompt_token_ids": p} for p in batch], bare_params, use_tqdm=False
        )
        seconds = time.perf_counter() - t0
        return sum(len(o.outputs[0].token_ids) for o in outs), seconds

    def runner(batch: list[list[int]], repeat: int, index: int) -> tuple[list, Any]:
        res = session.call(batch)
        requests = workload.batches[index].requests
        return records_for_call(
            repeat, index, requests, res.output_tokens, res.timing, res.request_timings
        )

    return session, (runner, bare), prompts


def _round(paths: Any, prompts: list, flip: bool) -> tuple[dict, dict]:
    runner, bare = paths
    records, brecs, tokens, seconds = [], [], 0, 0.0
    for index, batch in enumerate(prompts):
        runner_first = (index + flip) % 2 == 0
        if not runner_first:
            n, s = bare(batch)
        r, b = runner(batch, 0, index)
        records += r
        brecs.append(b)
        if runner_first:
            n, s = bare(batch)
        tokens, seconds = tokens + n, seconds + s
    return runner_figures(records, brecs), {"tokens_per_second": tokens / seconds, "tokens": tokens}


def compare(cfg: Any, rounds: int) -> dict[str, Any]:
    """Paired rounds of the runner's vLLM path and a bare ``LLM.generate`` for ``cfg``."""
    session, paths, prompts = _paths(cfg)
    try:
        _round(paths, prompts, False)  # warmup of both paths
        runs: dict[str, list[dict]] = {"runner": [], "bare": []}
        for i in range(rounds):
            r, b = _round(paths, prompts, i % 2 == 1)
            runs["runner"].append(r)
            runs["bare"].append(b)
    finally:
        session.close()
    tokens, ratios = paired_rounds(runs, "vllm")
    return {
        "output_tokens_per_path_and_round": tokens,
        "runner_tps": rounded([r["tokens_per_second"] for r in runs["runner"]], 2),
        "bare_tps": rounded([r["tokens_per_second"] for r in runs["bare"]], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
    }


def run(quick: bool) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return section(
            "vLLM path vs bare LLM.generate",
            ["skipped: vLLM is not installed (python -m runner.engines.install)"],
            [],
            {},
        )
    rounds = QUICK_ROUNDS if quick else ROUNDS
    progress("vllm: starting the engine (half a minute), then warmup and rounds")
    data = {"overrides": OVERRIDES, **compare(compose(OVERRIDES), rounds)}
    lines = [
        f"smollm2-135m ({' '.join(OVERRIDES[3:])}): runner {median(data['runner_tps']):.1f} "
        f"tok/s, bare LLM.generate {median(data['bare_tps']):.1f} tok/s (medians); "
        f"runner/bare per round {data['ratios']}"
    ]
    checks = [
        check(
            f"runner/bare output tok/s, median of {rounds}", data["median_ratio"], at_least=TARGET
        )
    ]
    return section("vLLM path vs bare LLM.generate", lines, checks, data)
