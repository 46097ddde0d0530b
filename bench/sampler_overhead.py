"""The hardware sampler's overhead: bare ``generate`` passes with the sampler running at
10 Hz (the highest rate ``measure.sample_hz`` allows) over every source this machine has,
against the same passes without it.

Rounds alternate which comes first; each round gives one ratio sampled/unsampled of output
tokens/s, and the median over rounds is checked against the runner's overhead target.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    TARGET_RATIO,
    Cases,
    bare_tps,
    check,
    chosen_cases,
    compose,
    load,
    median,
    paired_rounds,
    progress,
    rounded,
    section,
)

HZ = 10.0
BASE = ["loading=cpu", "energy=off"]
# label: (overrides, workload passes per side and round, rounds quick, rounds full); the
# passes make each side last about a second or more, a fixed count so both do the same work.
CASES: Cases = {
    "smollm2-135m": (["model=smollm2-135m", "workload.num_prompts=4"], 1, 3, 5),
    "tiny": (["model=tiny", "workload.num_prompts=8", "decoding.max_new_tokens=32"], 4, 6, 10),
}


def _sampled(m: Any, sources: list, passes: int) -> tuple[dict, int]:
    from runner.hardware.sampler import Sampler

    sampler = Sampler(sources, HZ, lambda: "measure")
    sampler.start()
    try:
        figures = bare_tps(m, passes=passes)
    finally:
        sampler.stop()
    return figures, len(sampler.rows)


def _case(name: str, overrides: list[str], passes: int, rounds: int) -> dict[str, Any]:
    from runner.hardware.cpu import cpu_sources

    m = load(compose(BASE + overrides))
    sources, absent = cpu_sources()
    progress(f"sampler/{name}: warmup, then {rounds} rounds")
    bare_tps(m)
    runs: dict[str, list[dict]] = {"runner": [], "bare": []}
    samples = []
    for i in range(rounds):
        if i % 2:
            bare = bare_tps(m, passes=passes)
            sampled, n = _sampled(m, sources, passes)
        else:
            sampled, n = _sampled(m, sources, passes)
            bare = bare_tps(m, passes=passes)
        runs["runner"].append(sampled)
        runs["bare"].append(bare)
        samples.append(n)
    _, ratios = paired_rounds(runs, f"sampler/{name}")
    return {
        "sources": sorted({s.name for s in sources}),
        "absent": [a.line() for a in absent],
        "samples_per_round": samples,
        "sampled_tps": rounded([r["tokens_per_second"] for r in runs["runner"]], 2),
        "unsampled_tps": rounded([r["tokens_per_second"] for r in runs["bare"]], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
    }


def run(quick: bool) -> dict[str, Any]:
    data, lines, checks = {}, [], []
    for name, overrides, passes, rounds in chosen_cases(CASES, quick):
        d = data[name] = _case(name, overrides, passes, rounds)
        lines.append(
            f"{name}: sampled at {HZ:g} Hz ({', '.join(d['sources'])}) "
            f"{median(d['sampled_tps']):.1f} tok/s, unsampled {median(d['unsampled_tps']):.1f} "
            f"tok/s (medians); per round {d['ratios']}"
        )
        checks.append(
            check(
                f"{name} sampled/unsampled output tok/s, median of {rounds}",
                d["median_ratio"],
                at_least=TARGET_RATIO,
            )
        )
    return section(f"hardware sampler overhead at {HZ:g} Hz", lines, checks, data)
