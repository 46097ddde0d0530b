"""The short human summary printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.measure.stats import too_few_units
from runner.results import RESULT_FILE, RunResult
from runner.sections.energy import Energy, unresolved
from runner.sections.metrics import Stats, Throughput
from runner.sections.serving import Quantile, Serving


def _interval(mean: float, low: float | None, high: float | None, fmt: str) -> str:
    """`` ± half`` for a symmetric interval, `` [low, high]`` otherwise ("" without one)."""
    if low is None or high is None:
        return ""
    if abs((high - mean) - (mean - low)) <= 1e-6 * max(abs(mean), 1e-12):
        return f" ± {(high - low) / 2:{fmt}}"
    return f" [{low:{fmt}}, {high:{fmt}}]"


def _ms(stats: Stats | None) -> str:
    """``mean [CI] (n=observations over N units)``: the CI is over the independent units."""
    if stats is None or stats.mean is None:
        return "n/a"
    scale = 1000
    low, high = (None if v is None else v * scale for v in (stats.ci95_low, stats.ci95_high))
    text = f"{stats.mean * scale:.2f} ms" + _interval(stats.mean * scale, low, high, ".2f")
    units = stats.ci_units
    counts = f"n={stats.count}"
    if units is not None and units != stats.count:
        counts += f" over {units} {stats.ci_unit or 'unit'}{'' if units == 1 else 's'}"
    if low is None:
        counts += f"; no CI: {too_few_units(units, stats.ci_unit)}"
    return f"{text} ({counts})"


def _throughput(tp: Throughput) -> str:
    """The headline rate (total tokens / total time) with its CI over passes."""
    rate = tp.output_tokens_per_second
    if rate is None:
        return "n/a"
    low, high = tp.output_tokens_per_second_ci95_low, tp.output_tokens_per_second_ci95_high
    text = f"{rate:.1f} output tok/s" + _interval(rate, low, high, ".1f")
    if low is None and tp.ci_units is not None:
        text += f" (no CI: {too_few_units(tp.ci_units, tp.ci_unit)}, measure.min_repeats)"
    return text


def _energy_line(energy: Energy) -> list[str]:
    """Gross and net energy, per token and CO2, each only where measured and resolved."""
    said = unresolved(energy)
    if "gross" in said:
        return [f"  energy: unresolved ({said['gross']})"]
    per_tok = energy.per_output_token_joules
    net_said = f"net unresolved ({said['net']})" if "net" in said else None
    totals = [
        f"{energy.gross_joules:.2f} J gross" if energy.gross_joules is not None else "",
        net_said or (f"{energy.net_joules:.2f} J net" if energy.net_joules is not None else ""),
    ]
    per = [
        f"{1000 * per_tok.gross:.2f} mJ/token gross" if per_tok.gross is not None else "",
        f"{1000 * per_tok.net:.2f} mJ/token net"
        if per_tok.net is not None and not net_said
        else "",
    ]
    co2 = f"{1000 * energy.emissions_kg:.4f} g CO2eq" if energy.emissions_kg is not None else ""
    parts = [", ".join(p for p in group if p) for group in (totals, per)] + [co2]
    text = "; ".join(p for p in parts if p)
    return [f"  energy: {text or 'nothing measured'}"]


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


def _lm_eval_lines(lm: Any) -> list[str]:
    """One line per lm-eval task: its metrics, each with lm-eval's standard error."""
    lines = []
    for task in lm.tasks or sorted(lm.results):
        metrics = lm.results.get(task) or {}
        shown = [
            f"{name} {value:.3f}"
            + (f" ± {metrics[f'{name}_stderr']:.3f}" if f"{name}_stderr" in metrics else "")
            for name, value in sorted(metrics.items())
            if not name.endswith("_stderr") and isinstance(value, (int, float))
        ]
        n = lm.samples.get(task)
        lines.append(
            f"  lm-eval {task}: {', '.join(shown) or 'no metrics'}"
            + (f" (n={n} examples)" if n else "")
        )
    return lines


def _quality_lines(result: RunResult) -> list[str]:
    q = result.quality
    if q is None:
        return []
    lines = _lm_eval_lines(q.lm_eval) if q.lm_eval is not None else []
    if q.perplexity is None:
        return lines
    ev = q.evaluation
    text = f"  quality: perplexity {q.perplexity:.3f}"
    if q.perplexity_ci95_low is not None and q.perplexity_ci95_high is not None:
        text += f" [{q.perplexity_ci95_low:.3f}, {q.perplexity_ci95_high:.3f}]"
    if ev is not None and ev.tokens_scored:
        text += f" over {ev.tokens_scored} tokens"
    lines.insert(0, text + (f" ({q.seconds:.1f} s, after the measurement)" if q.seconds else ""))
    agreed = q.agreement
    if agreed is not None and agreed.token_match is not None and agreed.exact_match is not None:
        lines.append(
            f"  agreement with {agreed.reference_run_id or agreed.reference}: "
            f"{agreed.token_match.mean or 0:.3f} of tokens, "
            f"{agreed.exact_match.mean or 0:.3f} of requests identical (n={agreed.requests})"
        )
    return lines


def _p(q: Quantile, scale: float = 1e3) -> str:
    if q.value is None:
        return "n/a"
    low = "?" if q.ci95_low is None else f"{q.ci95_low * scale:.0f}"
    high = "?" if q.ci95_high is None else f"{q.ci95_high * scale:.0f}"
    return f"{q.value * scale:.0f} [{low}, {high}]"


def _serving_lines(s: Serving) -> list[str]:
    """Under load: what was offered and served in the steady-state window, percentiles
    in ms with their 95% intervals ("?": too few requests to place a bound)."""
    if s.window_seconds is None:
        return [f"  served {s.requests_sent or 0} requests: too few for a steady-state window"]

    def rate(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    slo = ""
    if s.slo_attainment is not None:  # None: no objective set
        slo = (
            f"; SLO met by {s.slo_attainment:.0%} (goodput "
            f"{rate(s.goodput_requests_per_second)} req/s, "
            f"{'within' if s.within_slo else 'NOT within'} the "
            f"{s.slo_attainment_target or 0:.0%} target)"
        )
    return [
        f"  served {s.requests_sent} requests ({s.requests_unfinished} unfinished); steady "
        f"window {s.window_seconds:.2f} s, {s.window_requests} requests "
        f"(ramp {s.ramp_requests}, drain {s.drain_requests} excluded)",
        f"  offered {rate(s.offered_requests_per_second)} req/s, achieved "
        f"{rate(s.achieved_requests_per_second)} req/s, "
        f"{rate(s.output_tokens_per_second)} output tok/s{slo}",
        "  ms p50/p90/p99 [95% CI]: TTFT "
        + " / ".join(_p(q) for q in (s.ttft_seconds.p50, s.ttft_seconds.p90, s.ttft_seconds.p99))
        + " | inter-token "
        + " / ".join(_p(q) for q in (s.itl_seconds.p50, s.itl_seconds.p90, s.itl_seconds.p99))
        + " | end-to-end "
        + " / ".join(_p(q) for q in (s.e2e_seconds.p50, s.e2e_seconds.p90, s.e2e_seconds.p99)),
        f"  schedule lag at most {(s.lag_max_seconds or 0) * 1e3:.1f} ms"
        if s.lag_max_seconds is not None
        else "  closed loop: no schedule",
    ]


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
    phases = [
        _seconds("one-time model provisioning", m.provision_seconds),
        _seconds("load", m.load_seconds),
        _seconds("warmup", m.warmup_seconds),
        _seconds("compile (first call)", m.compile_seconds),
    ]
    if any(phases):
        lines.append("  " + ", ".join(p for p in phases if p))
    if m.serving is not None:
        lines += _serving_lines(m.serving)
    elif lat is not None and lat.requests:
        tp = lat.throughput or Throughput()
        decode = tp.decode_tokens_per_second
        rates = [
            f"decode {decode:.1f} tok/s" if decode is not None else "",
            f"{tp.requests_per_second:.2f} req/s" if tp.requests_per_second is not None else "",
        ]
        lines += [
            f"  measured {lat.measured_seconds or 0:.2f} s: {m.repeats or 0} pass(es), "
            f"{lat.requests} requests, {lat.output_tokens} output tokens",
            f"  TTFT {_ms(lat.ttft_seconds)} | inter-token {_ms(lat.itl_seconds)} | "
            f"end-to-end {_ms(lat.e2e_request_seconds)}",
            f"  throughput {_throughput(tp)}"
            + (f" ({', '.join(r for r in rates if r)})" if any(rates) else "")
            + f"; pass-to-pass {_repeat_cv(lat.throughput_per_repeat)}",
        ]
    if lat is not None and lat.requests:
        mem = m.memory
        lines.append(
            f"  memory: model {_mib(mem.model_footprint_bytes)}, "
            f"peak {_mib(mem.peak_bytes)} ({mem.peak_source or '?'})"
        )
    elif result.status.value != "ok":
        lines.append("  nothing measured before it ended")
    energy = result.energy
    if energy and lat is not None and lat.requests:
        lines += _energy_line(energy)
        if energy.is_estimate:
            lines.append(
                "  note: CPU/RAM energy is CodeCarbon's model-based ESTIMATE, not a measurement"
            )
    lines += _quality_lines(result)
    lines += _warning_lines(result)
    lines.append(f"  -> {run_dir}/{RESULT_FILE}")
    return "\n".join(lines)
