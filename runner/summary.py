"""The short human summary printed at the end of a run."""

from __future__ import annotations

from typing import Any


def _ms(stats: dict[str, Any] | None) -> str:
    """``mean ± half-CI (n=observations over N units)``: the CI is over the independent units."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    text = f"{stats['mean'] * 1000:.2f} ms"
    if stats.get("ci95_low") is not None:
        half = (stats["ci95_high"] - stats["ci95_low"]) / 2 * 1000
        text += f" ± {half:.2f}"
    units = stats.get("ci_units")
    if units is not None and units != stats["count"]:
        unit = stats.get("ci_unit") or "unit"
        return text + f" (n={stats['count']} over {units} {unit}{'' if units == 1 else 's'})"
    return text + f" (n={stats['count']})"


def _repeat_cv(stats: dict[str, Any] | None) -> str:
    """Repeat-to-repeat variation of throughput: the reproducibility figure."""
    if not stats or not stats.get("count"):
        return "n/a"
    if stats.get("cv") is None:
        return f"n/a ({stats['count']} pass)"
    return f"CV {100 * stats['cv']:.1f}% over {stats['count']} passes"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def render(result: dict[str, Any], run_dir: str) -> str:
    """A few lines: status, what ran, headline figures with 95% CIs, where the files are."""
    cfg = result.get("config", {})
    label = ", ".join(result.get("overrides") or []) or "defaults"
    lines = [f"[{result['status']}] {cfg.get('model', {}).get('name', '?')} ({label})"]
    err = result.get("error")
    if err:
        first = err["message"].splitlines()[0] if err["message"] else ""
        lines.append(f"  error in {err['phase']}: {err['type']}: {first}")
    m = result.get("metrics", {})
    if m.get("requests"):
        tp = m.get("throughput", {})
        lines += [
            f"  load {m.get('load_seconds', 0):.2f} s, warmup {m.get('warmup_seconds', 0):.2f} s"
            + (
                f", compile (first call) {m['compile_seconds']:.2f} s"
                if m.get("compile_seconds")
                else ""
            ),
            f"  measured {m['measured_seconds']:.2f} s: {m.get('repeats', 0)} repeat(s), "
            f"{m['requests']} requests, {m['output_tokens']} output tokens",
            f"  TTFT {_ms(m.get('ttft_seconds'))} | inter-token {_ms(m.get('itl_seconds'))} | "
            f"end-to-end {_ms(m.get('e2e_request_seconds'))}",
            f"  throughput {tp.get('output_tokens_per_second') or 0:.1f} output tok/s "
            f"(decode {tp.get('decode_tokens_per_second') or 0:.1f} tok/s), "
            f"{tp.get('requests_per_second') or 0:.2f} req/s; "
            f"repeat-to-repeat {_repeat_cv(m.get('throughput_per_repeat'))}",
        ]
        mem = m.get("memory", {})
        lines.append(
            f"  memory: model {_mib(mem.get('model_footprint_bytes'))}, "
            f"peak {_mib(mem.get('peak_bytes'))} ({mem.get('peak_source', '?')})"
        )
    energy = result.get("energy")
    if energy:
        per_tok = energy.get("per_output_token_joules") or {}
        net = per_tok.get("net")
        lines.append(
            f"  energy: {energy.get('gross_joules') or 0:.2f} J gross"
            + (
                f", {energy['net_joules']:.2f} J net"
                if energy.get("net_joules") is not None
                else ""
            )
            + f"; {1000 * (per_tok.get('gross') or 0):.2f} mJ/token gross"
            + (f", {1000 * net:.2f} mJ/token net" if net is not None else "")
            + f"; {1000 * (energy.get('emissions_kg') or 0):.4f} g CO2eq"
        )
        if energy.get("is_estimate"):
            lines.append(
                "  note: CPU/RAM energy is CodeCarbon's model-based ESTIMATE, not a measurement"
            )
    for w in result.get("warnings", [])[:5]:
        lines.append(f"  warning: {w[:200]}")
    lines.append(f"  -> {run_dir}/result.json")
    return "\n".join(lines)
