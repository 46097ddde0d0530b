"""From the traces of a run under load to ``metrics.serving`` and ``metrics.latency``.

Pure. The steady-state window is decided by rule, before anything is looked at: with N
requests sent and ``k = ceil(trim_fraction * N)``, it runs from the submission of request
``k`` to that of request ``N - 1 - k``. The first ``k`` requests meet an engine that is
filling up from empty (no batch to join, nothing queued), the last ``k`` an engine that
drains (no new arrivals keep its batch full); neither is the load asked for.

Percentile intervals are distribution-free: for the q-quantile of n values, the order
statistics whose ranks bracket a Binomial(n, q) count with 95% probability. That
treats the window's requests as independent; under load neighbouring requests share a
queue, so read it as the least the uncertainty can be (repeats give the spread between
runs). Inter-token gaps are not independent at all: the gaps of one request follow each
other, and every request in a batch gets its token from the same engine step, so one slow
step is a gap of every running request. Their percentiles' interval is a block bootstrap:
the window is cut into :data:`ITL_BLOCKS` equal spans of time and whole spans are drawn
(each gap belongs to the span its token arrived in).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from runner.config.schema_serving import ScenarioConfig
from runner.measure.stats import percentile, summarize
from runner.sections.metrics import PERF_COUNTER, Latency, Stats, Throughput
from runner.sections.requests import RequestRecord
from runner.sections.serving import QUANTILES, Percentiles, Quantile, Serving
from runner.serving.load import Trace

BOOTSTRAP_DRAWS = 1000
ITL_BLOCKS = 20


def window_indices(sent: int, trim_fraction: float) -> tuple[int, int] | None:
    """``(first, last)``: the requests whose submissions open and close the window; None
    when fewer than two requests would lie in it."""
    k = math.ceil(trim_fraction * sent)
    first, last = k, sent - 1 - k
    return (first, last) if last > first else None


def quantile_ci(values: Sequence[float], q: float) -> Quantile:
    """The ``q``-quantile (linear interpolation) and its order-statistic 95% interval."""
    from scipy.stats import binom

    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return Quantile()
    lo_rank = int(binom.ppf(0.025, n, q))  # the rank-lo_rank order statistic (1-based)
    hi_rank = int(binom.ppf(0.975, n, q)) + 1
    return Quantile(
        value=percentile(xs, q * 100),
        ci95_low=xs[lo_rank - 1] if lo_rank >= 1 else None,
        ci95_high=xs[hi_rank - 1] if hi_rank <= n else None,
    )


def clustered_quantile_ci(groups: Sequence[Sequence[float]], q: float, seed: int = 0) -> Quantile:
    """The ``q``-quantile of every value pooled, with a 95% bootstrap interval that draws
    whole groups (the gaps of one span of time), since the values of one group are not
    independent."""
    groups = [g for g in groups if g]
    pooled = sorted(x for g in groups for x in g)
    if not pooled:
        return Quantile()
    value = percentile(pooled, q * 100)
    if len(groups) < 3:
        return Quantile(value=value)
    rng = random.Random(seed)
    draws = []
    for _ in range(BOOTSTRAP_DRAWS):
        sample = sorted(x for _ in groups for x in rng.choice(groups))
        draws.append(percentile(sample, q * 100))
    draws.sort()
    return Quantile(value, percentile(draws, 2.5), percentile(draws, 97.5))


def percentiles(values: Sequence[float]) -> Percentiles:
    return Percentiles(len(values), **{p: quantile_ci(values, q) for p, q in QUANTILES.items()})


def gap_percentiles(groups: Sequence[Sequence[float]]) -> Percentiles:
    count = sum(len(g) for g in groups)
    return Percentiles(count, **{p: clustered_quantile_ci(groups, q) for p, q in QUANTILES.items()})


def ttft(t: Trace) -> float | None:
    return t.token_times[0] - t.submitted if t.token_times and t.submitted is not None else None


def e2e(t: Trace) -> float | None:
    return t.finished - t.submitted if t.finished is not None and t.submitted is not None else None


def gaps(t: Trace) -> list[float]:
    """Inter-token gaps (0 between tokens one output brought together: speculation)."""
    times = t.token_times
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def gaps_by_block(done: Sequence[Trace], window: Window) -> list[list[float]]:
    """Every gap of ``done``, grouped by the span of the window its token arrived in
    (gaps before or after the window go to the first or last span)."""
    blocks: list[list[float]] = [[] for _ in range(ITL_BLOCKS)]
    width = window.seconds / ITL_BLOCKS
    for t in done:
        for end, gap in zip(t.token_times[1:], gaps(t), strict=True):
            i = min(ITL_BLOCKS - 1, max(0, int((end - window.start) // width)))
            blocks[i].append(gap)
    return blocks


def has_objective(s: ScenarioConfig) -> bool:
    """Some objective is set (else no attainment, goodput or met_slo)."""
    return any(v is not None for v in (s.slo_ttft_ms, s.slo_itl_ms, s.slo_e2e_ms))


def meets_slo(t: Trace, s: ScenarioConfig) -> bool:
    """Finished, and within every objective that is set."""
    if t.finished is None:
        return False
    checks = (
        (s.slo_ttft_ms, ttft(t)),
        (s.slo_e2e_ms, e2e(t)),
        (s.slo_itl_ms, max(gaps(t), default=0.0)),
    )
    return all(bound is None or (v is not None and v * 1e3 <= bound) for bound, v in checks)


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    first: int
    last: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


def window_of(traces: Sequence[Trace], trim_fraction: float) -> Window | None:
    """The steady-state window of the requests that were sent."""
    sent = sorted((t for t in traces if t.submitted is not None), key=lambda t: t.index)
    found = window_indices(len(sent), trim_fraction)
    if found is None:
        return None
    first, last = found
    start, end = sent[first].submitted, sent[last].submitted
    if start is None or end is None or end <= start:
        return None
    return Window(start, end, first, last)


def serving_summary(
    traces: Sequence[Trace], s: ScenarioConfig, prompt_ids: Sequence[str] = ()
) -> tuple[Serving, Latency | None, list[RequestRecord]]:
    """``metrics.serving``, ``metrics.latency`` (the window's finished requests, each its
    own unit) and the rows of ``requests.parquet`` (:func:`trace_records`)."""
    sent = [t for t in traces if t.submitted is not None]
    finished = [t for t in sent if t.finished is not None]
    lags = sorted(t.lag for t in sent if t.lag is not None)
    bound = None if s.max_lag_ms is None else s.max_lag_ms / 1e3
    base = {
        "arrival": s.arrival.value if s.arrival is not None else None,
        "rate": s.rate,
        "burstiness": s.burstiness,
        "concurrency": s.concurrency,
        "requests_sent": len(sent),
        "requests_finished": len(finished),
        "requests_unfinished": len(sent) - len(finished),
        "slo_ttft_seconds": None if s.slo_ttft_ms is None else s.slo_ttft_ms / 1e3,
        "slo_itl_seconds": None if s.slo_itl_ms is None else s.slo_itl_ms / 1e3,
        "slo_e2e_seconds": None if s.slo_e2e_ms is None else s.slo_e2e_ms / 1e3,
        "slo_attainment_target": s.slo_attainment,
        "lag_max_seconds": lags[-1] if lags else None,
        "lag_p99_seconds": percentile(lags, 99) if lags else None,
        "lag_bound_seconds": bound,
        "lag_exceeded": (lags[-1] > bound) if lags and bound is not None else None,
    }
    window = window_of(sent, s.trim_fraction or 0.0)
    records = trace_records(sent, window, s, prompt_ids)
    if window is None:
        return Serving(**base), None, records
    inside = [t for t in sent if window.first <= t.index <= window.last]
    done = sorted((t for t in inside if t.finished is not None), key=lambda t: t.index)
    span = window.seconds
    tokens = sum(1 for t in sent for x in t.token_times if window.start <= x <= window.end)
    # The requests' worth of output streamed in the window: at steady state the rate at
    # which requests complete, and unlike a count of completions it does not fall to zero
    # when the window is shorter than a request's latency (a short run at a high load).
    per_request = statistics.fmean(len(t.token_times) for t in finished) if finished else 0
    served = tokens / per_request if per_request else 0.0
    offered = (len(inside) - 1) / span
    met = sum(1 for t in inside if meets_slo(t, s)) if has_objective(s) else None
    attainment = met / len(inside) if met is not None else None
    half = len(done) // 2
    early, late = [e2e(t) for t in done[:half]], [e2e(t) for t in done[half:]]
    growth = None
    if half >= 2 and statistics.median(early) > 0:  # type: ignore[type-var]
        growth = statistics.median(late) / statistics.median(early)  # type: ignore[type-var]
    serving = Serving(
        **base,
        window_start_seconds=window.start,
        window_end_seconds=window.end,
        window_seconds=span,
        window_requests=len(inside),
        window_finished_requests=len(done),
        window_unfinished_requests=len(inside) - len(done),
        ramp_requests=window.first,
        drain_requests=len(sent) - 1 - window.last,
        offered_requests_per_second=offered,
        achieved_requests_per_second=served / span,
        served_requests=served,
        output_tokens_per_second=tokens / span,
        window_output_tokens=tokens,
        ttft_seconds=percentiles([v for t in done if (v := ttft(t)) is not None]),
        itl_seconds=gap_percentiles(gaps_by_block(done, window)),
        e2e_seconds=percentiles([v for t in done if (v := e2e(t)) is not None]),
        queued_seconds=percentiles([t.queued for t in done if t.queued is not None]),
        slo_met_requests=met,
        slo_attainment=attainment,
        goodput_requests_per_second=None if attainment is None else offered * attainment,
        within_slo=None if attainment is None else attainment >= (s.slo_attainment or 1.0),
        e2e_growth=growth,
    )
    rows = [r for r in records if r.in_window and r.finished]
    return serving, _latency(rows, span, tokens, served), records


def _latency(rows: Sequence[RequestRecord], span: float, tokens: int, served: float) -> Latency:
    """The window's finished requests as ``metrics.latency`` (each request its own unit),
    so the report's and the search's latency figures read a run under load too."""

    def each(pairs: list[tuple[float | None, int]]) -> Stats:
        kept = [(v, i) for v, i in pairs if v is not None]
        return summarize([v for v, _ in kept], [i for _, i in kept], "request", positive=True)

    inputs = sum(r.input_tokens for r in rows)
    return Latency(
        ttft_seconds=each([(r.ttft_seconds, r.request) for r in rows]),
        itl_seconds=each([(g, r.request) for r in rows for g in r.itl_seconds]),
        tpot_seconds=each([(r.tpot_seconds, r.request) for r in rows]),
        e2e_request_seconds=each([(r.e2e_seconds, r.request) for r in rows]),
        throughput=Throughput(
            output_tokens_per_second=tokens / span,
            requests_per_second=served / span,
            input_tokens_per_second=inputs / span,
        ),
        measured_seconds=span,
        requests=len(rows),
        output_tokens=tokens,
        input_tokens=inputs,
        clock=PERF_COUNTER,  # the load generator stamps every request on the host
    )


def trace_records(
    traces: Sequence[Trace], window: Window | None, s: ScenarioConfig, prompt_ids: Sequence[str]
) -> list[RequestRecord]:
    """One ``requests.parquet`` row per request sent; latencies from its send."""
    objectives = has_objective(s)
    rows = []
    for t in sorted(traces, key=lambda t: t.index):
        if t.submitted is None:
            continue
        first = ttft(t)
        last = t.token_times[-1] - t.submitted if t.token_times else None
        rows.append(
            RequestRecord(
                repeat=0,
                batch=t.index,
                request=t.index,
                prompt_id=prompt_ids[t.prompt] if t.prompt < len(prompt_ids) else str(t.prompt),
                input_tokens=t.input_tokens,
                output_tokens=len(t.token_times),
                ttft_seconds=first,
                last_token_seconds=last,
                e2e_seconds=e2e(t),
                itl_seconds=tuple(gaps(t)),
                scheduled_seconds=t.scheduled,
                submitted_seconds=t.submitted,
                queued_seconds=t.queued,
                finished=t.finished is not None,
                in_window=window is not None and window.first <= t.index <= window.last,
                met_slo=meets_slo(t, s) if objectives else None,
            )
        )
    return rows
