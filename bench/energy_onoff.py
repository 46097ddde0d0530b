"""Energy tracking on vs off: does the CodeCarbon tracker slow the measured loop?

Inline ``runner.run.run`` with ``energy=codecarbon energy.baseline_seconds=0`` and with
``energy=off``, same model and workload, in pairs whose order alternates (off/on, on/off)
so drift cancels; each pair gives one ratio on/off of output tokens/s.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import TARGET_RATIO, check, compose, median, progress, ratio, rounded, section
from runner.sections.energy import Energy

BASE = ["loading=cpu", "measure.min_repeats=3"]
MODELS = {
    "tiny": ["model=tiny", "decoding.max_new_tokens=64", "measure.min_seconds=3"],
    "smollm2-135m": [
        "model=smollm2-135m",
        "workload.num_prompts=4",
        "decoding.max_new_tokens=16",
        "measure.min_seconds=0",
    ],
}
ENERGY = {"on": ["energy=codecarbon", "energy.baseline_seconds=0"], "off": ["energy=off"]}
PAIRS = {"tiny": 3, "smollm2-135m": 3}  # tiny runs are short: one more pair is cheap


def _run(overrides: list[str], root: Path) -> dict[str, Any]:
    from runner.run import run

    cfg = compose(overrides)
    result = run(cfg, Path(tempfile.mkdtemp(dir=root)), overrides)
    if result.status.value != "ok":
        err = result.error
        raise RuntimeError(f"run failed: {err.type if err else '?'}: {err.message if err else ''}")
    latency = result.metrics.latency
    return {
        "tps": latency.throughput.output_tokens_per_second,
        "measured_seconds": latency.measured_seconds,
        "energy": result.energy,
    }


def run(quick: bool) -> dict[str, Any]:
    name = "tiny" if quick else "smollm2-135m"
    overrides = BASE + MODELS[name]
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    root = Path(tempfile.mkdtemp(prefix="bench-energy-"))
    try:
        pairs = PAIRS[name]
        for i in range(pairs):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            progress(f"energy/{name}: pair {i + 1}/{pairs} ({order[0]}, then {order[1]})")
            for which in order:
                runs[which].append(_run(overrides + ENERGY[which], root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = [ratio(a["tps"], b["tps"]) for a, b in zip(runs["on"], runs["off"], strict=True)]
    energy = runs["on"][-1]["energy"] or Energy()
    per_token = energy.per_output_token_joules.gross
    cpu_method = energy.components["cpu"].method if "cpu" in energy.components else None
    data = {
        "model": name,
        "overrides": overrides,
        "on_tps": rounded([r["tps"] for r in runs["on"]], 2),
        "off_tps": rounded([r["tps"] for r in runs["off"]], 2),
        "measured_seconds": rounded([r["measured_seconds"] for r in runs["on"] + runs["off"]], 2),
        "ratios": rounded(ratios, 4),
        "median_ratio": median(ratios),
        "gross_joules_per_output_token": per_token,
        "cpu_method": cpu_method,
    }
    lines = [
        f"{name} ({' '.join(MODELS[name][1:])}, min_repeats=3): energy on {data['on_tps']} "
        f"tok/s vs off {data['off_tps']} tok/s; on/off per pair {data['ratios']}",
        f"energy reported with tracking on: {per_token:.3g} J/output token gross "
        f"(cpu method: {cpu_method})"
        if per_token is not None
        else f"energy reported with tracking on: none (cpu method: {cpu_method})",
    ]
    checks = [
        check(
            f"{name} energy on/off output tok/s, median of {PAIRS[name]} pairs",
            data["median_ratio"],
            at_least=TARGET_RATIO,
        )
    ]
    return section("energy tracking on vs off (inline runs)", lines, checks, data)
