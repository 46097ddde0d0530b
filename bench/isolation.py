"""Isolation: an isolated job's measured throughput vs a bare loop here, and per-job fixed cost.

Throughput: ``runner.job.execute(..., isolation=forkserver)`` (a fresh child process forked
from the fork server, the default) against a bare ``generate`` loop in this process over the
same batches, interleaved bare, job, bare, job. The bare loop follows the runner's stopping
rule (at least min_repeats passes and min_seconds).

Fixed cost per job: execute()'s wall time minus what the run itself measured as load,
warmup and measured windows, i.e. process start, imports, config, environment snapshot,
tracker start, verification and result writing; for forkserver, spawn and inline.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
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
    section,
)

BASE = ["loading=cpu", "energy=off", "measure.min_repeats=3"]
# name: (overrides, pairs). Tiny: the default workload (8 prompts x 32 new tokens) and
# short windows; this VM's speed drifts by several % over seconds, so more pairs help
# more than longer windows, and the order alternates within pairs.
MODELS = {
    "tiny": (["model=tiny", "measure.min_seconds=2"], 3),
    "smollm2-135m": (
        [
            "model=smollm2-135m",
            "workload.num_prompts=4",
            "decoding.max_new_tokens=16",
            "measure.min_seconds=0",
        ],
        3,
    ),
}


def _execute(overrides: list[str], isolation: str, root: Path) -> dict[str, Any]:
    """One job in a fresh run dir: its result, wall time and fixed cost."""
    from runner.config.schema_measure import Isolation
    from runner.job import execute

    cfg = compose(overrides)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{isolation}-", dir=root))
    t0 = time.perf_counter()
    outcome = execute(cfg, run_dir, [], isolation=Isolation(isolation))
    wall = time.perf_counter() - t0
    result = outcome.result or {}
    if outcome.status != "ok":
        err = result.get("error") or {}
        raise RuntimeError(f"{isolation} job failed: {err.get('type')}: {err.get('message')}")
    m = result["metrics"]
    inside = m["load_seconds"] + m["warmup_seconds"] + m["measured_seconds"]
    return {
        "tps": m["throughput"]["output_tokens_per_second"],
        "wall_seconds": wall,
        "fixed_seconds": wall - inside,
        "load_seconds": m["load_seconds"],
        "warmup_seconds": m["warmup_seconds"],
        "measured_seconds": m["measured_seconds"],
        "repeats": m["repeats"],
    }


def _throughput(name: str, overrides: list[str], pairs: int, root: Path) -> dict[str, Any]:
    cfg = compose(overrides)
    reps, min_s = cfg.measure.min_repeats, cfg.measure.min_seconds
    m = load(cfg)
    bare_tps(m, 1)  # warmup
    bare, jobs = [], []
    for i in range(pairs):
        # Alternate the order so a drift of the machine's speed does not favour one side.
        first = "bare loop here" if i % 2 == 0 else "isolated job"
        progress(f"isolation/{name}: pair {i + 1}/{pairs}: {first} first")
        if i % 2 == 0:
            bare.append(bare_tps(m, reps, min_s))
            jobs.append(_execute(overrides, "forkserver", root))
        else:
            jobs.append(_execute(overrides, "forkserver", root))
            bare.append(bare_tps(m, reps, min_s))
    ratios = [ratio(s["tps"], b["tokens_per_second"]) for s, b in zip(jobs, bare, strict=True)]
    return {
        "overrides": overrides,
        "bare_tps": rounded([b["tokens_per_second"] for b in bare], 2),
        "job_tps": rounded([s["tps"] for s in jobs], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
        "jobs": jobs,
    }


def run(quick: bool) -> dict[str, Any]:
    names = ["tiny"] if quick else ["tiny", "smollm2-135m"]
    data: dict[str, Any] = {}
    lines, checks = [], []
    root = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    try:
        for name in names:
            overrides, pairs = MODELS[name]
            d = data[name] = _throughput(name, BASE + overrides, pairs, root)
            lines.append(
                f"{name}: forkserver job {d['job_tps']} tok/s vs bare loop {d['bare_tps']} "
                f"tok/s; ratio per pair {d['ratios']}"
            )
            checks.append(
                check(
                    f"{name} forkserver job/bare output tok/s, median of {pairs} pairs",
                    d["median_ratio"],
                    at_least=TARGET_RATIO,
                )
            )
        progress("isolation: fixed cost spawned, inline, forkserver with codecarbon (tiny)")
        tiny = BASE + MODELS["tiny"][0]
        cc = [o for o in tiny if o != "energy=off"] + [
            "energy=codecarbon",
            "energy.baseline_seconds=0",
        ]
        fixed = {
            # Its first job waited for the server's imports, once: the median skips it.
            "forkserver": data["tiny"]["jobs"],
            "spawn": [_execute(tiny, "spawn", root)],
            "inline": [_execute(tiny, "inline", root)],
            "forkserver+codecarbon": [_execute(cc, "forkserver", root)],
        }
        if "smollm2-135m" in data:
            fixed["forkserver (smollm2-135m)"] = data["smollm2-135m"]["jobs"]
        cost = {k: median([j["fixed_seconds"] for j in v]) for k, v in fixed.items()}
        data["fixed_seconds"] = cost
        data["spawn_tps"] = fixed["spawn"][0]["tps"]
        lines.append(
            f"tiny: one spawned job (the former default) {data['spawn_tps']:.1f} tok/s, for "
            f"reference beside the forkserver jobs above (not interleaved: no ratio)"
        )
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in cost.items())
        lines.append(f"per-job fixed cost (wall - load - warmup - measured): {parts}")
        lines.append(
            f"process start + imports (tiny): spawn - inline "
            f"{cost['spawn'] - cost['inline']:.2f} s, forkserver - inline "
            f"{cost['forkserver'] - cost['inline']:.2f} s; codecarbon tracker start "
            f"(forkserver+codecarbon - forkserver): "
            f"{cost['forkserver+codecarbon'] - cost['forkserver']:.2f} s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    title = "isolation: forkserver job vs bare loop, per-job fixed cost"
    return section(title, lines, checks, data)
