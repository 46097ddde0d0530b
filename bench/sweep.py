"""A sweep point's cost: the 2x2 tiny sweep before and after the per-job overhead levers.

``python -m runner -m model=tiny quant=none,nf4 decoding=greedy,beam`` (isolation and
energy on, everything else default) run as a user runs it, in a subprocess, twice:

- **before**: ``measure.isolation=spawn energy.cache_baseline=false``, i.e. every job a
  fresh interpreter (imports and CodeCarbon's hardware probe paid per job) measuring its
  own idle baseline;
- **after**: the defaults: jobs forked from the fork server, the idle baseline measured
  once per sweep and reused.

Per point, each run's ``result.json`` says where its time went (``metrics.startup_seconds``,
``metrics.phase_seconds``, the trackers' ``tracker_start_seconds``); what no run sees (the
launcher, process exit, the sweep's start and its report) is the sweep's wall time minus
the runs' own, spread over the points. ``--quick`` runs the "after" sweep only.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import check, median, progress, section

SWEEP = ["-m", "model=tiny", "quant=none,nf4", "decoding=greedy,beam"]
VARIANTS = {
    "before": ["measure.isolation=spawn", "energy.cache_baseline=false"],
    "after": [],
}
WALL_PER_POINT_MAX_S = 10.0
WALL_OVER_INSIDE_MAX = 1.5
# (label, how one run's figure is read from its result.json). The parts of a point's
# fixed cost, in the order a job pays them; "measured" is the point's work itself.
PARTS = (
    "process start + imports",
    "config (validation, environment snapshot)",
    "energy tracker start",
    "idle baseline",
    "load (incl. provisioning)",
    "compile + verify",
    "warmup",
    "measure phase outside the windows",
    "quality (perplexity, after the windows)",
    "energy summary + requests table",
    "outside the runs (launcher, exit, sweep start/report)",
)


def _parts(result: dict[str, Any]) -> dict[str, float]:
    """One run's seconds per part of its cost, from its result.json."""
    m, energy = result["metrics"], result.get("energy") or {}
    phases = {k: float(v) for k, v in (m.get("phase_seconds") or {}).items()}
    base = energy.get("baseline") or {}
    base_tracker = 0.0 if base.get("cached") else float(base.get("tracker_start_seconds") or 0)
    run_tracker = float(energy.get("tracker_start_seconds") or 0)
    measured = float(m.get("measured_seconds") or 0)
    return {
        "process start + imports": float(m.get("startup_seconds") or 0),
        "config (validation, environment snapshot)": phases.get("config", 0.0),
        "energy tracker start": base_tracker + run_tracker,
        "idle baseline": phases.get("baseline", 0.0) - base_tracker,
        "load (incl. provisioning)": phases.get("load", 0.0),
        "compile + verify": phases.get("compile", 0.0) + phases.get("verify", 0.0),
        "warmup": phases.get("warmup", 0.0),
        "measure phase outside the windows": phases.get("measure", 0.0) - measured - run_tracker,
        "quality (perplexity, after the windows)": phases.get("quality", 0.0),
        "energy summary + requests table": phases.get("energy", 0.0) + phases.get("write", 0.0),
        "measured": measured,
        "inside": measured
        + float(m.get("load_seconds") or 0)
        + float(m.get("provision_seconds") or 0)
        + float(m.get("warmup_seconds") or 0),
        "run": float(m.get("startup_seconds") or 0) + sum(phases.values()),
        "peak_rss_mib": float((m.get("memory") or {}).get("peak_rss_bytes") or 0) / 2**20,
        "baseline_reused": bool(base.get("cached")),
    }


def _cpu_lookup_kept() -> bool:
    """Whether CodeCarbon's CPU lookup for this machine is kept on disk (cpu_power_cache)."""
    from runner.measure import cpu_power_cache

    key = cpu_power_cache.machine_key()
    return key is not None and cpu_power_cache.kept_path(key).is_file()


def _sweep(name: str, extra: list[str], root: Path) -> dict[str, Any]:
    sweep_dir = root / name
    kept = _cpu_lookup_kept()
    cmd = [sys.executable, "-m", "runner", *SWEEP, *extra, f"hydra.sweep.dir={sweep_dir}"]
    progress(f"sweep/{name}: {' '.join(cmd[3:-1])}")
    print(f"\n=== bench sweep/{name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # Its output goes where this process's stderr goes: the bench log.
    proc = subprocess.run(cmd, stdout=2, stderr=2, check=False)
    wall = time.perf_counter() - t0
    results = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))]
    bad = [r["run_id"] for r in results if r.get("status") != "ok"]
    if proc.returncode != 0 or len(results) != 4 or bad:
        raise RuntimeError(
            f"sweep/{name} exited {proc.returncode} with {len(results)} results, not ok: {bad}"
        )
    runs = [_parts(r) for r in results]
    points = len(runs)
    outside = (wall - sum(r["run"] for r in runs)) / points
    # Means, so the parts and the measured seconds add up to the wall time per point.
    per_part = {p: statistics.fmean(r[p] for r in runs) for p in PARTS[:-1]}
    per_part[PARTS[-1]] = outside
    inside = sum(r["inside"] for r in runs)
    return {
        "overrides": extra,
        "wall_seconds": wall,
        "points": points,
        "wall_per_point_seconds": wall / points,
        "measured_per_point_seconds": statistics.fmean(r["measured"] for r in runs),
        "inside_seconds": inside,
        "wall_over_inside": wall / inside if inside else None,
        "fixed_per_point_mean_seconds": per_part,
        "baselines_reused": sum(r["baseline_reused"] for r in runs),
        "cpu_lookup_kept": "yes" if kept else "no",
        "peak_rss_mib_median": median([r["peak_rss_mib"] for r in runs]),
        "runs": runs,
    }


def _table(data: dict[str, dict[str, Any]]) -> list[str]:
    names = list(data)
    head = f"{'per point, s (mean of the 4 points)':<56}" + "".join(f"{n:>9}" for n in names)
    lines = [head]
    for part in PARTS:
        row = [data[n]["fixed_per_point_mean_seconds"][part] for n in names]
        lines.append(f"  {part:<54}" + "".join(f"{v:9.2f}" for v in row))
    for label, key, fmt in (
        ("measured (the point's work)", "measured_per_point_seconds", "{:9.2f}"),
        ("wall per point (sweep wall / 4)", "wall_per_point_seconds", "{:9.2f}"),
        ("sweep wall, s", "wall_seconds", "{:9.1f}"),
        ("sweep wall / sum(measured + load + warmup)", "wall_over_inside", "{:8.2f}x"),
        ("idle baselines reused (of 4)", "baselines_reused", "{:9d}"),
        ("CodeCarbon's CPU lookup on disk at the start", "cpu_lookup_kept", "{:>9}"),
        ("peak RSS in the window, MiB (median)", "peak_rss_mib_median", "{:9.0f}"),
    ):
        lines.append(f"{label:<56}" + "".join(fmt.format(data[n][key]) for n in names))
    return lines


def run(quick: bool) -> dict[str, Any]:
    names = ["after"] if quick else ["before", "after"]
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        data = {n: _sweep(n, VARIANTS[n], root) for n in names}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"`python -m runner {' '.join(SWEEP)}`, isolation and energy on; "
        + "; ".join(f"{n}: {' '.join(VARIANTS[n]) or '(defaults)'}" for n in names),
        *_table(data),
    ]
    after = data["after"]
    checks = [
        check(
            "after: sweep wall per point",
            after["wall_per_point_seconds"],
            at_most=WALL_PER_POINT_MAX_S,
            unit=" s",
        ),
        check(
            "after: sweep wall / sum(measured + load + warmup)",
            after["wall_over_inside"],
            at_most=WALL_OVER_INSIDE_MAX,
        ),
    ]
    title = "sweep: the 2x2 tiny sweep, per-point fixed cost before/after"
    return section(title, lines, checks, data)
