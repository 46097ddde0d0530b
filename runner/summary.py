"""The short human summary printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.results import RESULT_FILE, RunResult
from runner.sections.metrics import Stats, Throughput


def _ms(stats: Stats | None) -> str:
    """``mean ± half-CI (n=observations over N units)``: the CI is over the independent units."""
    if stats is None or stats.mean is None:
        return "n/a"
    text = f"{stats.mean * 1000:.2f} ms"
    if stats.ci95_low is not None and stats.ci95_high is not None:
        half = (stats.ci95_high - stats.ci95_low) / 2 * 1000
        text += f" ± {half:.2f}"
    units = stats.ci_units
    if units is not None and units != stats.count:
        unit = stats.ci_unit or "unit"
        return text + f" (n={stats.count} over {units} {unit}{'' if units == 1 else 's'})"
    return text + f" (n={stats.count})"


def _repeat_cv(stats: Stats | None) -> str:
    """Repeat-to-repeat variation of throughput: the reproducibility figure."""
    if stats is None or not stats.count:
        return "n/a"
    if stats.cv is None:
        return f"n/a ({stats.count} pass)"
    return f"CV {100 * stats.cv:.1f}% over {stats.count} passes"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def _seconds(label: str, value: float | None) -> str:
    return f"{label} {value:.2f} s" if value else ""


MAX_WARNINGS = 5  # lines of warnings; named ones are always all shown


def _warning_lines(result: RunResult) -> list[str]:
    """Named warnings (silent fallbacks caught) all, then the others up to MAX_WARNINGS."""
    named = len(result.warnings_detail.named)
    shown = result.warnings[: max(named, MAX_WARNINGS)]
    lines = [f"  warning: {w[:200]}" for w in shown]
    if len(result.warnings) > len(shown):
        lines.append(f"  ({len(result.warnings) - len(shown)} more warnings in result.json)")
    return lines


def _quality_lines(result: RunResult) -> list[str]:
    q = result.quality
    if q is None or q.perplexity is None:
        return []
    ev = q.evaluation
    text = f"  quality: perplexity {q.perplexity:.3f}"
    if q.perplexity_ci95_low is not None and q.perplexity_ci95_high is not None:
        text += f" [{q.perplexity_ci95_low:.3f}, {q.perplexity_ci95_high:.3f}]"
    if ev is not None and ev.tokens_scored:
        text += f" over {ev.tokens_scored} tokens"
    lines = [text + (f" ({q.seconds:.1f} s, after the measurement)" if q.seconds else "")]
    agreed = q.agreement
    if agreed is not None and agreed.token_match is not None and agreed.exact_match is not None:
        lines.append(
            f"  agreement with {agreed.reference_run_id or agreed.reference}: "
            f"{agreed.token_match.mean or 0:.3f} of tokens, "
            f"{agreed.exact_match.mean or 0:.3f} of requests identical (n={agreed.requests})"
        )
    return lines


def render(result: RunResult | Mapping[str, Any], run_dir: str) -> str:
    """A few lines: status, what ran, headline figures with 95% CIs, where the files are.

    ``result`` is a :class:`RunResult` or its dict (as read back from ``result.json``).
    """
    if not isinstance(result, RunResult):
        result = RunResult.from_dict(dict(result))
    model = result.config.get("model")
    label = ", ".join(result.overrides) or "defaults"
    name = model.get("name", "?") if isinstance(model, dict) else "?"
    lines = [f"[{result.status.value}] {name} ({label})"]
    err = result.error
    if err:
        first = err.message.splitlines()[0] if err.message else ""
        lines.append(f"  error in {err.phase}: {err.type}: {first}")
    m = result.metrics
    lat = m.latency
    if lat is not None and lat.requests:
        tp = lat.throughput or Throughput()
        phases = [
            _seconds("one-time model provisioning", m.provision_seconds),
            f"load {m.load_seconds or 0:.2f} s",
            f"warmup {m.warmup_seconds or 0:.2f} s",
            _seconds("compile (first call)", m.compile_seconds),
        ]
        lines += [
            "  " + ", ".join(p for p in phases if p),
            f"  measured {lat.measured_seconds or 0:.2f} s: {m.repeats or 0} repeat(s), "
            f"{lat.requests} requests, {lat.output_tokens} output tokens",
            f"  TTFT {_ms(lat.ttft_seconds)} | inter-token {_ms(lat.itl_seconds)} | "
            f"end-to-end {_ms(lat.e2e_request_seconds)}",
            f"  throughput {tp.output_tokens_per_second or 0:.1f} output tok/s "
            f"(decode {tp.decode_tokens_per_second or 0:.1f} tok/s), "
            f"{tp.requests_per_second or 0:.2f} req/s; "
            f"repeat-to-repeat {_repeat_cv(lat.throughput_per_repeat)}",
        ]
        mem = m.memory
        lines.append(
            f"  memory: model {_mib(mem.model_footprint_bytes)}, "
            f"peak {_mib(mem.peak_bytes)} ({mem.peak_source or '?'})"
        )
    energy = result.energy
    if energy:
        per_tok = energy.per_output_token_joules
        net = per_tok.net
        lines.append(
            f"  energy: {energy.gross_joules or 0:.2f} J gross"
            + (f", {energy.net_joules:.2f} J net" if energy.net_joules is not None else "")
            + f"; {1000 * (per_tok.gross or 0):.2f} mJ/token gross"
            + (f", {1000 * net:.2f} mJ/token net" if net is not None else "")
            + f"; {1000 * (energy.emissions_kg or 0):.4f} g CO2eq"
        )
        if energy.is_estimate:
            lines.append(
                "  note: CPU/RAM energy is CodeCarbon's model-based ESTIMATE, not a measurement"
            )
    lines += _quality_lines(result)
    lines += _warning_lines(result)
    lines.append(f"  -> {run_dir}/{RESULT_FILE}")
    return "\n".join(lines)
