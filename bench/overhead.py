"""Instrumentation overhead: the runner's measured throughput vs a bare ``generate`` loop.

One model, one set of batches, the same generate kwargs (greedy, fixed length). Both
paths are warmed up, then rounds alternate (runner first, then bare first, ...), and
each round gives one ratio runner/bare of output tokens/s over each path's own windows.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    TARGET_RATIO,
    bare_tps,
    check,
    compose,
    load,
    median,
    progress,
    ratio,
    rounded,
    runner_tps,
    section,
)

BASE = ["loading=cpu", "energy=off"]
# (label, overrides, workload passes per path and round): SmolLM2 is the realistic case
# (~100 ms steps), tiny the worst (~1 ms steps, so per-step marks weigh the most).
CASES = {
    "smollm2-135m": (
        ["model=smollm2-135m", "workload.num_prompts=4", "decoding.max_new_tokens=16"],
        1,
    ),
    "tiny": (["model=tiny", "workload.num_prompts=8", "decoding.max_new_tokens=32"], 4),
}


def _case(name: str, overrides: list[str], passes: int, rounds: int) -> dict[str, Any]:
    m = load(compose(BASE + overrides))
    progress(f"overhead/{name}: warmup, then {rounds} rounds of runner and bare")
    runner_tps(m, 1)
    bare_tps(m, 1)
    runs: dict[str, list[dict]] = {"runner": [], "bare": []}
    for i in range(rounds):
        order = ("runner", "bare") if i % 2 == 0 else ("bare", "runner")
        for path in order:
            fn = runner_tps if path == "runner" else bare_tps
            runs[path].append(fn(m, passes))
    tokens = {r["tokens"] for r in runs["runner"] + runs["bare"]}
    if len(tokens) != 1:
        raise RuntimeError(f"overhead/{name}: the paths generated different token counts {tokens}")
    ratios = [
        ratio(a["tokens_per_second"], b["tokens_per_second"])
        for a, b in zip(runs["runner"], runs["bare"], strict=True)
    ]
    return {
        "overrides": BASE + overrides,
        "passes_per_round": passes,
        "output_tokens_per_path_and_round": tokens.pop(),
        "runner_tps": rounded([r["tokens_per_second"] for r in runs["runner"]], 2),
        "bare_tps": rounded([r["tokens_per_second"] for r in runs["bare"]], 2),
        "runner_decode_tps": rounded([r["decode_tokens_per_second"] for r in runs["runner"]], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
    }


def run(quick: bool) -> dict[str, Any]:
    rounds = 3 if quick else 5
    names = ["tiny"] if quick else ["smollm2-135m", "tiny"]
    data, lines, checks = {}, [], []
    for name in names:
        overrides, passes = CASES[name]
        d = data[name] = _case(name, overrides, passes, rounds)
        lines.append(
            f"{name} ({' '.join(overrides[1:])}; {passes} pass(es)/round): "
            f"runner {median(d['runner_tps']):.1f} tok/s, bare {median(d['bare_tps']):.1f} tok/s "
            f"(medians); runner/bare per round {d['ratios']}"
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
