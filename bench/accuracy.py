"""Timer accuracy against ground truth: a model whose prefill and decode steps sleep known times.

The sleepy tiny Llama (tests/sleepy.py) sleeps PREFILL_S in its prompt pass and STEP_S
per decode step, on top of its own compute. Measured TTFT and ITL are compared with the
sleeps (raw error: includes the compute) and with sleep + compute, the compute measured
with the same model and sleeps of 0 (corrected error: what the timers themselves add).
Compute-only and sleepy calls alternate, so the reference compute sees the same load.
Sleepy calls are 200 ms apart: a timer that leaked the gap into an interval would show
an ITL of 200 ms or more in every call (a single stall from other work on the machine
shows in one call only, hence the median of the per-call maxima is checked).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import check, median, progress, section

PREFILL_S, STEP_S, NEW_TOKENS = 0.080, 0.020, 16
GAP_S, CALLS = 0.200, 5
# The errors a timer bug makes are a whole step (20 ms, +100%) or more: a gap leak, a step
# too many, the prefill in the first interval. Compute right after a sleep also runs a
# little slower than the back-to-back compute-only reference (cold caches, an idle vCPU
# waking), about 1 ms per step on a small VM, which 10% leaves room for.
TARGET_REL_ERROR_PCT = 10.0
TEXTS = [
    "hello there",
    "a short one",
    "and a second, somewhat longer prompt",
    "the fourth prompt of this batch is the longest of them all, by a few words",
]


def _measure(sleepy: Any, compute_only: Any, tok: Any, batch: int) -> dict[str, Any]:
    """CALLS calls of each model, alternating, after one warmup call each.

    Each sleepy call follows a GAP_S sleep; the compute-only call before that gap sees
    the same load on the machine, so its compute is a fair reference.
    """
    from runner.measure.generation import eos_token_ids, timed_generate
    from runner.measure.latency import latency_metrics, records_for_call
    from runner.workload import Request

    enc = tok(TEXTS[:batch], return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    kwargs = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
    }
    eos = eos_token_ids(sleepy, tok)
    reqs = [
        Request(i, f"p{i}", t, int(m.sum()), False, int(m.sum()))
        for i, (t, m) in enumerate(zip(TEXTS[:batch], mask, strict=True))
    ]
    out: dict[str, Any] = {"sleepy": ([], []), "compute": ([], []), "call_max_itl": []}
    for model in (compute_only, sleepy):
        timed_generate(model, ids, mask, kwargs, eos_ids=eos)  # warmup
    for call in range(CALLS):
        for key, model in (("compute", compute_only), ("sleepy", sleepy)):
            if key == "sleepy":
                time.sleep(GAP_S)
            res = timed_generate(model, ids, mask, kwargs, eos_ids=eos)
            if res.output_tokens != (NEW_TOKENS,) * batch:
                raise RuntimeError(f"accuracy: expected {NEW_TOKENS} tokens: {res.output_tokens}")
            r, b = records_for_call(call, 0, reqs, res.output_tokens, res.timing)
            out[key][0].extend(r)
            out[key][1].append(b)
            if key == "sleepy":
                out["call_max_itl"].append(max(res.timing.intervals_seconds(NEW_TOKENS)))
    for key in ("sleepy", "compute"):
        out[key] = latency_metrics(*out[key])
    return out


def _errors(measured: float, sleep: float, compute: float) -> dict[str, float]:
    raw, corrected = measured - sleep, measured - (sleep + compute)
    return {
        "measured_ms": measured * 1e3,
        "sleep_ms": sleep * 1e3,
        "compute_ms": compute * 1e3,
        "raw_error_ms": raw * 1e3,
        "raw_error_pct": 100 * raw / sleep,
        "corrected_error_ms": corrected * 1e3,
        "corrected_error_pct": 100 * corrected / (sleep + compute),
    }


def run(quick: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from runner.models.cache import cache_root
    from runner.models.tiny import ensure_tiny
    from tests.sleepy import load_sleepy

    tiny = ensure_tiny(cache_root(None))
    tok = AutoTokenizer.from_pretrained(tiny)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    sleepy, compute_only = load_sleepy(tiny, PREFILL_S, STEP_S), load_sleepy(tiny, 0.0, 0.0)
    data, lines, checks = {}, [], []
    for batch in (1, 4):
        progress(f"accuracy: batch {batch}, {CALLS} calls {GAP_S * 1e3:.0f} ms apart")
        got = _measure(sleepy, compute_only, tok, batch)
        slept, bare = got["sleepy"], got["compute"]
        ttft = _errors(slept.ttft_seconds.median, PREFILL_S, bare.ttft_seconds.median)
        itl = _errors(slept.itl_seconds.median, STEP_S, bare.itl_seconds.median)
        call_max_ms = [round(x * 1e3, 2) for x in got["call_max_itl"]]
        data[f"batch{batch}"] = {"ttft": ttft, "itl": itl, "call_max_itl_ms": call_max_ms}
        for label, e in (("TTFT", ttft), ("ITL", itl)):
            lines.append(
                f"batch {batch} {label} median {e['measured_ms']:.2f} ms vs sleep "
                f"{e['sleep_ms']:.0f} ms: raw {e['raw_error_ms']:+.2f} ms "
                f"({e['raw_error_pct']:+.1f}%); compute {e['compute_ms']:.2f} ms; corrected "
                f"{e['corrected_error_ms']:+.3f} ms ({e['corrected_error_pct']:+.2f}%)"
            )
            checks.append(
                check(
                    f"batch {batch} {label} |corrected error|",
                    abs(e["corrected_error_pct"]),
                    at_most=TARGET_REL_ERROR_PCT,
                    unit="%",
                )
            )
        lines.append(
            f"batch {batch} max ITL per call {call_max_ms} ms (a leaked {GAP_S * 1e3:.0f} ms "
            "gap would put one >= the gap in every call)"
        )
        checks.append(
            check(
                f"batch {batch} median of per-call max ITL (no gap leak)",
                median(call_max_ms),
                at_most=GAP_S * 500,
                unit=" ms",
            )
        )
    data["known"] = {
        "prefill_ms": PREFILL_S * 1e3,
        "step_ms": STEP_S * 1e3,
        "new_tokens": NEW_TOKENS,
        "gap_ms": GAP_S * 1e3,
        "calls": CALLS,
    }
    return section("timer accuracy vs known sleeps (sleepy tiny Llama)", lines, checks, data)
