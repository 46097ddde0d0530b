"""What ``make gpu-check`` checks in its results: pure functions of the sweep's
``result.json`` files and of the paired comparisons' figures, one line per failure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.vllm_overhead import TARGET as VLLM_TARGET  # as make bench judges it
from runner.sections.metrics import CUDA_EVENTS

# The lean grid's jobs as (quant, compile): every quantization uncompiled (footprint,
# read-back, energy, latency), bf16 compiled in the default mode, and bf16 with CUDA
# graphs (reduce-overhead) on a static cache. --full-grid compiles int8 and nf4 too.
LEAN_JOBS = {
    ("none", "off"),
    ("int8", "off"),
    ("nf4", "off"),
    ("none", "on"),
    ("none", "reduce-overhead"),
}
FULL_JOBS = LEAN_JOBS | {("int8", "on"), ("nf4", "on")}
RATIO_TARGET = 0.98  # runner vs bare loop: TTFT and ITL agreement, throughput ratio


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _scale(value: Any, factor: float) -> float | None:
    v = _num(value)
    return None if v is None else v * factor


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def compile_label(compile_cfg: dict[str, Any] | None) -> str:
    """``off``, ``on`` (the default mode) or the mode as the config group names it."""
    compile_cfg = compile_cfg or {}
    if not compile_cfg.get("enabled"):
        return "off"
    mode = compile_cfg.get("mode")
    return "on" if mode in (None, "default") else str(mode).replace("_", "-")


def read_rows(sweeps: list[Path]) -> list[dict[str, Any]]:
    """One row per job's ``result.json`` in the sweep directories."""
    rows = []
    for path in sorted(p for sweep in sweeps for p in sweep.glob("*/result.json")):
        r = json.loads(path.read_text())
        mib = 2**-20
        rows.append(
            {
                "dir": path.parent.name,
                "quant": _get(r, "config.quant.name"),
                "compile": compile_label(_get(r, "config.compile")),
                "cache": _get(r, "applied.generate.cache_implementation"),
                "status": r.get("status"),
                "error": _get(r, "error.message"),
                "footprint_mib": _scale(_get(r, "metrics.memory.model_footprint_bytes"), mib),
                "peak_alloc_mib": _scale(_get(r, "metrics.memory.peak_allocated_bytes"), mib),
                "peak_reserved_mib": _scale(_get(r, "metrics.memory.peak_reserved_bytes"), mib),
                "peak_source": _get(r, "metrics.memory.peak_source"),
                "ttft_ms": _scale(_get(r, "metrics.ttft_seconds.mean"), 1e3),
                "itl_ms": _scale(_get(r, "metrics.itl_seconds.mean"), 1e3),
                "clock": _get(r, "metrics.clock"),
                "tok_s": _num(_get(r, "metrics.throughput.output_tokens_per_second")),
                "compile_s": _num(_get(r, "metrics.compile_seconds")),
                "warmup_s": _num(_get(r, "metrics.warmup_seconds")),
                "nvml_j": _num(_get(r, "energy.gpu_nvml.joules")),
                "nvml_method": _get(r, "energy.gpu_nvml.method"),
                "cc_gpu_j": _num(_get(r, "energy.codecarbon_gpu_joules")),
                "diff_pct": _scale(_get(r, "energy.gpu_relative_difference"), 100),
                "compiled": _get(r, "applied.model.compiled"),
                "compiled_frames": _get(r, "applied.model.compiled_frames"),
                "devices": sorted(_get(r, "applied.model.parameter_devices") or {}),
                "linear_8bit": _get(r, "applied.model.quantization.linear_8bit"),
                "linear_4bit": _get(r, "applied.model.quantization.linear_4bit"),
                "quant_type": _get(r, "applied.model.quantization.bnb_4bit_quant_type"),
                "series": _get(r, "metrics.timeseries.sources") or [],
                "roofline_device": _get(r, "metrics.roofline.device"),
                "bandwidth_gbs": _num(_get(r, "metrics.roofline.peak_bandwidth_gbs")),
                "datasheet_gbs": _num(_get(r, "metrics.roofline.theoretical_bandwidth_gbs")),
            }
        )
    order = {"none": 0, "int8": 1, "nf4": 2}
    return sorted(rows, key=lambda x: (x["compile"], order.get(x["quant"], 9), x["dir"]))


def _job_problems(r: dict[str, Any], tolerance: float) -> list[str]:
    job = f"quant={r['quant']} compile={r['compile']}"
    if r["status"] != "ok":
        return [f"{job}: status {r['status']}: {r['error']}"]
    out = []
    for key, field in (("ttft_ms", "ttft_seconds"), ("itl_ms", "itl_seconds")):
        if not (r[key] or 0) > 0:
            out.append(f"{job}: metrics.{field}.mean missing or not > 0")
    if r["clock"] != CUDA_EVENTS:
        out.append(f"{job}: latencies stamped by {r['clock']!r}, not {CUDA_EVENTS!r}")
    if not r["devices"] or any(not d.startswith("cuda") for d in r["devices"]):
        out.append(f"{job}: parameters on {r['devices']}, not all on CUDA")
    # Read-back: the layers bitsandbytes put in, on CUDA (parameters checked just above).
    n8, n4 = r["linear_8bit"] or 0, r["linear_4bit"] or 0
    layers_ok = {"none": n8 == n4 == 0, "int8": n8 > 0 and n4 == 0, "nf4": n4 > 0 and n8 == 0}
    if not layers_ok.get(r["quant"], True):
        out.append(f"{job}: read back {n8} Linear8bitLt and {n4} Linear4bit layers")
    if r["quant"] == "nf4" and r["quant_type"] != ["nf4"]:
        out.append(f"{job}: 4-bit quant type read back {r['quant_type']}, not ['nf4']")
    # Memory: the CUDA allocator's peaks over the measured window.
    if r["peak_source"] != "cuda-max-allocated":
        out.append(f"{job}: peak memory source {r['peak_source']!r}, not 'cuda-max-allocated'")
    alloc, reserved, footprint = r["peak_alloc_mib"], r["peak_reserved_mib"], r["footprint_mib"]
    if alloc is None or reserved is None or not 0 < alloc <= reserved:
        out.append(f"{job}: peak allocated {alloc} MiB, reserved {reserved} MiB: need 0 < a <= r")
    elif footprint is not None and alloc < footprint:
        out.append(f"{job}: peak allocated {alloc:.0f} MiB below the weights' {footprint:.0f}")
    # Compilation: the compiled forward ran, its time is reported apart from warmup.
    if r["compile"] == "off":
        if r["compile_s"] is not None:
            out.append(f"{job}: compile_seconds {r['compile_s']} without compile")
    else:
        if not (r["compiled"] is True and (r["compiled_frames"] or 0) > 0):
            out.append(
                f"{job}: compiled forward not used (applied.model.compiled={r['compiled']}, "
                f"compiled_frames={r['compiled_frames']})"
            )
        if not (r["compile_s"] or 0) > 0:
            out.append(f"{job}: metrics.compile_seconds {r['compile_s']} not reported")
    if r["compile"] == "reduce-overhead" and r["cache"] != "static":
        out.append(f"{job}: cache read back as {r['cache']!r}, not 'static'")
    # The hardware's side: NVML sampled through the run, the measured limit on the GPU.
    if not any(name.startswith("gpu") for name in r["series"]):
        out.append(f"{job}: no GPU series in metrics.timeseries (sources {r['series']})")
    if not str(r["roofline_device"]).startswith("cuda"):
        out.append(f"{job}: roofline measured on {r['roofline_device']!r}, not the GPU")
    measured, datasheet = r["bandwidth_gbs"], r["datasheet_gbs"]
    if measured is None or datasheet is None or not 0 < measured <= datasheet:
        out.append(
            f"{job}: measured memory bandwidth {measured} GB/s against the datasheet's "
            f"{datasheet} GB/s: need 0 < measured <= datasheet"
        )
    # Energy: the NVML counter against CodeCarbon's GPU figure over the same windows.
    if r["nvml_method"] != "nvml-counter":
        out.append(f"{job}: GPU energy method {r['nvml_method']!r}, not 'nvml-counter'")
    if not (r["nvml_j"] or 0) > 0:
        out.append(f"{job}: energy.gpu_nvml.joules {r['nvml_j']} is not > 0")
    if r["diff_pct"] is None:
        out.append(f"{job}: no CodeCarbon GPU figure to compare NVML with")
    elif abs(r["diff_pct"]) > tolerance * 100:
        out.append(
            f"{job}: NVML {r['nvml_j']:.1f} J vs CodeCarbon {r['cc_gpu_j']:.1f} J: "
            f"{r['diff_pct']:+.1f}% exceeds +-{tolerance * 100:g}%"
        )
    return out


def check_rows(rows: list[dict[str, Any]], full_grid: bool, tolerance: float) -> list[str]:
    """Everything a user would verify in the sweep's results before trusting them."""
    expected = FULL_JOBS if full_grid else LEAN_JOBS
    found = {(r["quant"], r["compile"]) for r in rows}
    problems = [f"no result for quant={q} compile={c}" for q, c in sorted(expected - found)]
    for r in rows:
        problems += _job_problems(r, tolerance)
    for comp in ("off", "on") if full_grid else ("off",):
        fp = {r["quant"]: r["footprint_mib"] for r in rows if r["compile"] == comp}
        if all(fp.get(q) is not None for q in ("none", "int8", "nf4")):
            if not fp["nf4"] < fp["int8"] < fp["none"]:
                problems.append(
                    f"compile={comp}: footprint not nf4 < int8 < bf16: nf4 {fp['nf4']:.0f} MiB, "
                    f"int8 {fp['int8']:.0f} MiB, bf16 {fp['none']:.0f} MiB"
                )
        else:
            problems.append(f"compile={comp}: footprint missing for a quantization: {fp}")
    return problems


def check_latency(figures: dict[str, Any]) -> list[str]:
    """The runner's TTFT, ITL and throughput against the bare loop (bench.gpu_latency)."""
    problems = []
    if figures.get("clock") != [CUDA_EVENTS]:
        problems.append(f"runner vs bare loop: stamped by {figures.get('clock')}, not CUDA events")
    for key, name in (("ttft", "TTFT"), ("itl", "inter-token latency")):
        value = figures[key]["agreement"]
        if value is None or value < RATIO_TARGET:
            problems.append(
                f"{name}: runner vs bare loop agree to {_fmt(value)}, below {RATIO_TARGET} "
                f"(median runner/bare {_fmt(figures[key]['median_ratio'])})"
            )
    tps = figures["tps"]["median_ratio"]
    if tps is None or tps < RATIO_TARGET:
        problems.append(f"throughput: runner/bare {_fmt(tps)}, below {RATIO_TARGET}")
    return problems


def check_vllm(figures: dict[str, Any]) -> list[str]:
    """The runner's vLLM path against a bare ``LLM.generate`` (bench.vllm_overhead)."""
    ratio = figures.get("median_ratio")
    if ratio is None or ratio < VLLM_TARGET:
        return [f"vLLM: runner/bare LLM.generate output tok/s {_fmt(ratio)}, below {VLLM_TARGET}"]
    return []


COLUMNS = [
    ("quant", "quant", "{}"),
    ("compile", "compile", "{}"),
    ("status", "status", "{}"),
    ("footprint MiB", "footprint_mib", "{:.0f}"),
    ("peak alloc MiB", "peak_alloc_mib", "{:.0f}"),
    ("peak reserved MiB", "peak_reserved_mib", "{:.0f}"),
    ("TTFT ms", "ttft_ms", "{:.2f}"),
    ("ITL ms", "itl_ms", "{:.2f}"),
    ("tok/s", "tok_s", "{:.1f}"),
    ("compile s", "compile_s", "{:.1f}"),
    ("NVML J", "nvml_j", "{:.1f}"),
    ("CodeCarbon GPU J", "cc_gpu_j", "{:.1f}"),
    ("diff %", "diff_pct", "{:+.1f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned text columns."""
    cells = [[h for h, _, _ in COLUMNS]]
    for r in rows:
        cells.append(["-" if r[k] is None else f.format(r[k]) for _, k, f in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.rjust(w) if i > 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, for docs/gpu-validation.md."""
    head = "| " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = [
        "| " + " | ".join("-" if r[k] is None else f.format(r[k]) for _, k, f in COLUMNS) + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body])
