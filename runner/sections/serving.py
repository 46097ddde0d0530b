"""``metrics.serving``: what a run under load (``scenario=online``) served, and how well.

Seconds and requests (or tokens) per second, as the names say. Every rate, the goodput
and the energy figures are over the steady-state window (docs/serving.md): from the
submission of request ``k = ceil(trim_fraction * N)`` to that of request ``N - 1 - k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.sections.base import Section


@dataclass(frozen=True)
class Quantile(Section):
    """One percentile and its distribution-free 95% CI (order statistics; a bound is None
    where there are too few requests to place it)."""

    value: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None


# The percentiles a run under load reports: the fields of Percentiles, and their q.
QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}


@dataclass(frozen=True)
class Percentiles(Section):
    """p50, p90 and p99 of one latency over the window's requests (``count`` values)."""

    count: int = 0
    p50: Quantile = field(default_factory=Quantile)
    p90: Quantile = field(default_factory=Quantile)
    p99: Quantile = field(default_factory=Quantile)


@dataclass(frozen=True)
class Serving(Section):
    """The load offered, what was served, the latency users saw, the SLO met.

    ``offered_requests_per_second``: requests sent in the window over its length (the
    schedule's rate as it happened); ``served_requests``: the requests' worth of output
    streamed in the window (its tokens over the mean output tokens of a finished request;
    at steady state the requests completed in it); ``achieved_requests_per_second``:
    that over the window's length; ``output_tokens_per_second``: tokens streamed in it.
    Energy per request divides the window's energy by ``served_requests``.
    ``slo_attainment``: the share of the window's requests that finished and met every
    objective (unfinished ones miss); ``goodput_requests_per_second`` = offered rate x
    attainment; ``within_slo``: attainment >= ``scenario.slo_attainment``; all three None
    when no objective is set.
    ``lag_*``: how late requests were sent against their schedule (open loop);
    ``lag_exceeded``: the maximum passed ``scenario.max_lag_ms`` (the run then did not
    offer the rate asked). ``e2e_growth``: the median end-to-end latency of the window's
    second half over its first half (about 1 at a load the engine sustains; growing when
    requests queue faster than they are served).
    """

    arrival: str | None = None
    rate: float | None = None
    burstiness: float | None = None
    concurrency: int | None = None
    requests_sent: int | None = None
    requests_finished: int | None = None
    requests_unfinished: int | None = None
    window_start_seconds: float | None = None
    window_end_seconds: float | None = None
    window_seconds: float | None = None
    window_requests: int | None = None
    window_finished_requests: int | None = None
    window_unfinished_requests: int | None = None
    ramp_requests: int | None = None
    drain_requests: int | None = None
    offered_requests_per_second: float | None = None
    served_requests: float | None = None
    achieved_requests_per_second: float | None = None
    output_tokens_per_second: float | None = None
    window_output_tokens: int | None = None
    ttft_seconds: Percentiles = field(default_factory=Percentiles)
    itl_seconds: Percentiles = field(default_factory=Percentiles)
    e2e_seconds: Percentiles = field(default_factory=Percentiles)
    queued_seconds: Percentiles = field(default_factory=Percentiles)
    slo_ttft_seconds: float | None = None
    slo_itl_seconds: float | None = None
    slo_e2e_seconds: float | None = None
    slo_attainment_target: float | None = None
    slo_met_requests: int | None = None
    slo_attainment: float | None = None
    goodput_requests_per_second: float | None = None
    within_slo: bool | None = None
    lag_max_seconds: float | None = None
    lag_p99_seconds: float | None = None
    lag_bound_seconds: float | None = None
    lag_exceeded: bool | None = None
    e2e_growth: float | None = None
