"""Instrumentation overhead: the runner's measured throughput vs a bare ``generate`` loop.

One model, one set of batches, the same generate kwargs (greedy, fixed length). Both
paths are warmed up; then in every round each batch goes through both paths back to
back, which one first alternating by batch and round, so a change of load on the machine
hits both alike. Each round gives one ratio runner/bare of output tokens/s, each path
over its own windows (the runner's from ``latency_metrics``, exactly as it reports it).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    TARGET_RATIO,
    Cases,
    Loaded,
    bare_call,
    check,
    chosen_cases,
    compose,
    load,
    median,
    paired_rounds,
    progress,
    rounded,
    runner_call,
    runner_figures,
    section,
)

BASE = ["loading=cpu", "energy=off"]
# label: (overrides, workload passes per round, rounds quick, rounds full). SmolLM2 is the
# realistic case (~100 ms steps), tiny the worst (~1 ms steps: per-step marks weigh most).
CASES: Cases = {
    "smollm2-135m": (
        ["model=smollm2-135m", "workload.num_prompts=4", "decoding.max_new_tokens=16"],
        1,
        3,
        5,
    ),
    "tiny": (["model=tiny", "workload.num_prompts=8", "decoding.max_new_tokens=32"], 2, 6, 10),
}


def _round(m: Loaded, passes: int, flip: bool) -> tuple[dict, dict]:
    """One round: every batch through both paths, back to back, the order alternating."""
    records, brecs, tokens, seconds = [], [], 0, 0.0
    for repeat in range(passes):
        for index, batch in enumerate(m.batches):
            runner_first = (index + repeat + flip) % 2 == 0
            if not runner_first:
                n, s = bare_call(m, batch)
            r, b = runner_call(m, batch, repeat, index)
            records += r
            brecs.append(b)
            if runner_first:
                n, s = bare_call(m, batch)
            tokens, seconds = tokens + n, seconds + s
    bare = {"tokens_per_second": tokens / seconds, "tokens": tokens, "seconds": seconds}
    return runner_figures(records, brecs), bare


def step_cost_seconds(rows: int, vocab: int, n: int = 5000) -> float:
    """What the runner adds to every decoding step: its StepTimingProcessor called through
    transformers' LogitsProcessorList (which runs ``inspect.signature`` per processor)."""
    import torch
    from transformers import LogitsProcessorList

    from runner.measure.timing import StepRecorder, StepTimingProcessor

    recorder = StepRecorder(torch.device("cpu"))
    recorder.start()
    processors = LogitsProcessorList([StepTimingProcessor(recorder)])
    ids, scores = torch.zeros(rows, 8, dtype=torch.long), torch.zeros(rows, vocab)
    t0 = time.perf_counter()
    for _ in range(n):
        processors(ids, scores)
    return (time.perf_counter() - t0) / n


def _case(name: str, overrides: list[str], passes: int, rounds: int) -> dict[str, Any]:
    m = load(compose(BASE + overrides))
    progress(f"overhead/{name}: warmup, then {rounds} rounds")
    _round(m, 1, False)  # warmup of both paths
    runs: dict[str, list[dict]] = {"runner": [], "bare": []}
    for i in range(rounds):
        runner, bare = _round(m, passes, i % 2 == 1)
        runs["runner"].append(runner)
        runs["bare"].append(bare)
    tokens, ratios = paired_rounds(runs, f"overhead/{name}")
    # Expected ratio from the per-step cost alone: bare time / (bare time + steps x cost).
    step_s = step_cost_seconds(m.batches[0].input_ids.shape[0], m.model.config.vocab_size)
    steps = passes * len(m.batches) * m.gen_kwargs["max_new_tokens"]
    bare_s = median([b["seconds"] for b in runs["bare"]])
    return {
        "step_cost_us": step_s * 1e6,
        "steps_per_round": steps,
        "expected_ratio_from_step_cost": bare_s / (bare_s + steps * step_s),
        "overrides": BASE + overrides,
        "passes_per_round": passes,
        "output_tokens_per_path_and_round": tokens,
        "runner_tps": rounded([r["tokens_per_second"] for r in runs["runner"]], 2),
        "bare_tps": rounded([r["tokens_per_second"] for r in runs["bare"]], 2),
        "runner_decode_tps": rounded([r["decode_tokens_per_second"] for r in runs["runner"]], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
    }


def run(quick: bool) -> dict[str, Any]:
    data, lines, checks = {}, [], []
    for name, overrides, passes, rounds in chosen_cases(CASES, quick):
        d = data[name] = _case(name, overrides, passes, rounds)
        lines.append(
            f"{name} ({' '.join(overrides[1:])}; {passes} pass(es)/round): "
            f"runner {median(d['runner_tps']):.1f} tok/s, bare {median(d['bare_tps']):.1f} tok/s "
            f"(medians); runner/bare per round {d['ratios']}"
        )
        lines.append(
            f"{name}: the runner adds {d['step_cost_us']:.1f} us per decoding step (its logits "
            f"processor via LogitsProcessorList); over {d['steps_per_round']} steps per round "
            f"that alone predicts a ratio of {d['expected_ratio_from_step_cost']:.4f}"
        )
        lines.append(
            f"{name} decode-only: runner {median(d['runner_decode_tps']):.1f} tok/s; no ratio "
            "(a bare generate loop has no per-step marks, so it cannot separate decode)"
        )
        checks.append(
            check(
                f"{name} runner/bare output tok/s, median of {rounds}",
                d["median_ratio"],
                at_least=TARGET_RATIO,
            )
        )
    return section("instrumentation overhead: runner vs bare model.generate", lines, checks, data)
