"""Per-request records and the latency/throughput metrics derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.measure.stats import ratio_ci95, summarize
from runner.measure.timing import CallTiming
from runner.sections.metrics import Latency, Stats, Throughput
from runner.sections.requests import RequestRecord


@dataclass(frozen=True)
class BatchRecord:
    repeat: int
    batch: int
    timing: CallTiming
    output_tokens: int
    decode_tokens: int  # output tokens after each request's first

    @property
    def decode_seconds(self) -> float | None:
        times = self.timing.token_times_seconds
        return times[-1] - times[0] if len(times) >= 2 else None


def records_for_call(
    repeat: int,
    batch_index: int,
    requests: Sequence[Any],
    output_tokens: Sequence[int],
    timing: CallTiming,
    request_timings: Sequence[CallTiming] = (),
) -> tuple[list[RequestRecord], BatchRecord]:
    """Split one call's step timestamps into its requests by their own token counts, or
    take each request's own timing where the engine streamed each (``request_timings``)."""
    records = []
    own = request_timings or [timing] * len(requests)
    for req, n, t in zip(requests, output_tokens, own, strict=True):
        records.append(
            RequestRecord(
                repeat=repeat,
                batch=batch_index,
                request=req.index,
                prompt_id=req.prompt_id,
                input_tokens=req.input_tokens,
                output_tokens=n,
                ttft_seconds=t.ttft_seconds if n > 0 else None,
                last_token_seconds=t.last_token_seconds(n),
                e2e_seconds=t.total_seconds,
                itl_seconds=tuple(t.intervals_seconds(n)),
            )
        )
    batch = BatchRecord(
        repeat=repeat,
        batch=batch_index,
        timing=timing,
        output_tokens=sum(output_tokens),
        decode_tokens=sum(max(n - 1, 0) for n in output_tokens),
    )
    return records, batch


def complete_passes(batches: Sequence[BatchRecord]) -> list[tuple[int, float]]:
    """``(output tokens, seconds)`` of each complete measured pass (its calls' summed
    windows), in pass order.

    A pass cut short (``max_seconds``, an interruption) has fewer calls than the longest
    pass and is left out: its mix of batches differs, so its rate is not comparable.
    """
    passes: dict[int, list[BatchRecord]] = {}
    for b in batches:
        passes.setdefault(b.repeat, []).append(b)
    full = max((len(calls) for calls in passes.values()), default=0)
    out = []
    for calls in passes.values():
        seconds = sum(b.timing.total_seconds for b in calls)
        if len(calls) == full and seconds > 0:
            out.append((sum(b.output_tokens for b in calls), seconds))
    return out


def output_throughput(passes: Sequence[tuple[int, float]], total: float | None) -> dict[str, Any]:
    """The 95% CI of the total output rate ``total`` (tokens / seconds over every measured
    call), over the complete ``passes`` (:func:`complete_passes`): the ratio estimator's
    relative half-width (:func:`~runner.measure.stats.ratio_ci95`) around ``total``. Keys
    of :class:`Throughput`.
    """
    out: dict[str, Any] = {"ci_unit": "pass", "ci_units": len(passes)}
    ci = ratio_ci95([t for t, _ in passes], [s for _, s in passes])
    if ci is not None and total is not None:
        ratio, low, high, _ = ci
        out["output_tokens_per_second_ci95_low"] = total * low / ratio
        out["output_tokens_per_second_ci95_high"] = total * high / ratio
    return out


def latency_metrics(records: Sequence[RequestRecord], batches: Sequence[BatchRecord]) -> Latency:
    """Distributions (see ``stats.summarize``) and window totals. Seconds, tokens/s.

    The rows of one ``generate`` call share one clock (with a batch of several requests
    their TTFT, gaps and end-to-end times are the same numbers), so the independent unit
    of the per-request distributions' confidence intervals is the call.
    """
    e2e_total = sum(b.timing.total_seconds for b in batches)
    decode_time = sum(b.decode_seconds or 0.0 for b in batches)
    out_tokens = sum(r.output_tokens for r in records)
    in_tokens = sum(r.input_tokens for r in records)
    decode_tokens = sum(b.decode_tokens for b in batches if b.decode_seconds)
    per_batch_tps = [
        b.output_tokens / b.timing.total_seconds for b in batches if b.timing.total_seconds
    ]
    per_batch_decode = [b.decode_tokens / b.decode_seconds for b in batches if b.decode_seconds]

    def rate(num: float, den: float) -> float | None:
        return num / den if den > 0 else None

    total_rate = rate(out_tokens, e2e_total)
    passes = complete_passes(batches)  # the unit of the per-pass rates and the total's CI

    def per_call(pairs: list[tuple[float, tuple[int, int]]]) -> Stats:
        """Summary of ``(value, (repeat, batch))`` pairs, CI over calls."""
        return summarize([v for v, _ in pairs], [c for _, c in pairs], "call", positive=True)

    def call(r: RequestRecord) -> tuple[int, int]:
        return (r.repeat, r.batch)

    return Latency(
        ttft_seconds=per_call(
            [(r.ttft_seconds, call(r)) for r in records if r.ttft_seconds is not None]
        ),
        itl_seconds=per_call([(x, call(r)) for r in records for x in r.itl_seconds]),
        tpot_seconds=per_call(
            [(r.tpot_seconds, call(r)) for r in records if r.tpot_seconds is not None]
        ),
        e2e_request_seconds=per_call([(r.e2e_seconds, call(r)) for r in records]),
        e2e_batch_seconds=summarize(
            [b.timing.total_seconds for b in batches], unit="call", positive=True
        ),
        output_tokens_per_second=summarize(per_batch_tps, unit="call", positive=True),
        decode_tokens_per_second=summarize(per_batch_decode, unit="call", positive=True),
        throughput_per_repeat=summarize(
            [tokens / seconds for tokens, seconds in passes], unit="pass", positive=True
        ),
        throughput=Throughput(
            output_tokens_per_second=total_rate,
            decode_tokens_per_second=rate(decode_tokens, decode_time),
            requests_per_second=rate(len(records), e2e_total),
            input_tokens_per_second=rate(in_tokens, e2e_total),
            **output_throughput(passes, total_rate),
        ),
        measured_seconds=e2e_total,
        requests=len(records),
        output_tokens=out_tokens,
        input_tokens=in_tokens,
        calls=len(batches),
        clock=",".join(sorted({b.timing.clock for b in batches})) or None,
    )
