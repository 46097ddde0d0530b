"""The record ``make gpu-check`` writes for ``docs/gpu-validation.md``: when, on which
GPU, driver and library versions, the jobs' table, the paired comparisons, the verdict."""

from __future__ import annotations

import os
from typing import Any

from bench.common import median
from bench.gpu_verdicts import RATIO_TARGET, VLLM_TARGET, markdown_table


def environment() -> dict[str, Any]:
    """The runner's own environment record (versions of vLLM and nvidia-ml-py included).

    A copy of the repository without its ``.git`` (a device machine's) has no commit to
    read: ``GPU_CHECK_COMMIT``, set by whoever sends the copy, names it instead."""
    from runner import environment as runner_environment

    env = runner_environment.snapshot()
    if env.get("git_commit") is None and os.environ.get("GPU_CHECK_COMMIT"):
        env["git_commit"] = f"{os.environ['GPU_CHECK_COMMIT']} (GPU_CHECK_COMMIT)"
    return env


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def latency_lines(latency: dict[str, Any] | None, error: str | None) -> list[str]:
    if latency is None:
        return [f"Not run: {error}" if error else "Not run."]
    rows = [
        ("TTFT", "ttft", 1e3, "ms"),
        ("inter-token latency", "itl", 1e3, "ms"),
        ("output throughput", "tps", 1, "tok/s"),
    ]
    out = [
        f"{latency['rounds']} rounds, {latency['new_tokens']} new tokens per request, "
        f"runner stamped by {', '.join(latency['clock'])} on {latency['device']}.",
        "",
        "| figure | runner (median) | bare loop (median) | runner/bare (median) | "
        "agreement | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, key, scale, unit in rows:
        f = latency[key]
        runner, bare = median(f["runner"]) * scale, median(f["bare"]) * scale
        target = f"ratio >= {RATIO_TARGET}" if key == "tps" else f"agreement >= {RATIO_TARGET}"
        out.append(
            f"| {name} | {runner:.3f} {unit} | {bare:.3f} {unit} | "
            f"{_fmt(f['median_ratio'], '.4f')} | {_fmt(f['agreement'], '.4f')} | {target} |"
        )
    return out


def _vllm_lines(vllm: dict[str, Any] | None, skipped: str | None) -> list[str]:
    if vllm is None:
        return [f"Not run: {skipped}."]
    return [
        f"Runner/bare `LLM.generate` output tok/s per round {vllm['ratios']}, median "
        f"{_fmt(vllm['median_ratio'], '.4f')} (target >= {VLLM_TARGET}); runner "
        f"{vllm['runner_tps']} tok/s, bare {vllm['bare_tps']} tok/s."
    ]


def markdown(summary: dict[str, Any]) -> str:
    """The whole record, ready to commit as ``docs/gpu-validation.md``."""
    env = summary["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(env["versions"].items()) if v)
    problems = summary["problems"]
    verdict = (
        f"**Passed**: every check, in {summary['seconds']:.0f} s."
        if not problems
        else f"**Failed**: {len(problems)} check(s), in {summary['seconds']:.0f} s:"
    )
    lines = [
        "# GPU validation (`make gpu-check`)",
        "",
        f"Run on {summary['date']} with commit `{env.get('git_commit')}` "
        f"(uncommitted changes: {env.get('git_dirty')}).",
        "",
        f"- GPU: {', '.join(env.get('gpus') or ['none'])}; driver {env.get('driver_version')}, "
        f"CUDA {env.get('cuda_version')}, power limit {env.get('gpu_power_limit_watts')} W",
        f"- host: {env.get('cpu_model')}, {env.get('cpu_count')} CPUs, "
        f"Python {env.get('python')}, {env.get('platform')}",
        f"- libraries: {versions}",
        f"- model: {summary['model']}",
        f"- command: `{summary['command']}`",
        "",
        verdict,
        *[f"- {p}" for p in problems],
        "",
        "## The sweep",
        "",
        "One row per job (`result.json`); energy over the measured windows, NVML's counter "
        f"against CodeCarbon's GPU figure (tolerance +-{summary['tolerance'] * 100:g}%).",
        "",
        markdown_table(summary["rows"]),
        "",
        "## The runner against a bare loop",
        "",
        *latency_lines(summary.get("latency"), summary.get("latency_error")),
        "",
        "## vLLM against a bare `LLM.generate`",
        "",
        *_vllm_lines(summary.get("vllm"), summary.get("vllm_skipped")),
        "",
    ]
    return "\n".join(lines)
