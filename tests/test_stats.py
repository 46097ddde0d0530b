"""Confidence intervals over independent units: exact t quantiles, the cluster-robust
interval on hand-checkable data, its coverage on simulated runs of known truth, and the
units recorded by the latency metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from runner.measure.latency import latency_metrics, records_for_call
from runner.measure.stats import (
    cluster_ci95,
    ratio_ci95,
    summarize,
    t_quantile_95,
    too_few_units,
)
from runner.measure.timing import CallTiming

# Two-sided 95% Student-t quantiles from a published table (NIST/SEMATECH e-Handbook,
# 1.3.6.7.2, upper 0.025 critical values), 31..40 dof included: there 1.96 is 3-4% short.
T95_TABLE = {
    1: 12.706,
    2: 4.303,
    10: 2.228,
    30: 2.042,
    31: 2.040,
    32: 2.037,
    33: 2.035,
    34: 2.032,
    35: 2.030,
    36: 2.028,
    37: 2.026,
    38: 2.024,
    39: 2.023,
    40: 2.021,
    100: 1.984,
}


@pytest.mark.parametrize("dof, expected", sorted(T95_TABLE.items()))
def test_t_quantile_matches_the_published_table(dof, expected):
    assert t_quantile_95(dof) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_undefined_without_degrees_of_freedom():
    assert math.isnan(t_quantile_95(0))


def test_without_clusters_every_value_is_its_own_unit():
    stats = summarize([90.0, 100.0, 110.0], unit="run")
    # s = 10, s / sqrt(3), t(2) = 4.3027
    half = 4.302653 * 10 / math.sqrt(3)
    assert stats.mean == 100.0 and stats.std == pytest.approx(10.0)
    assert stats.ci95_low == pytest.approx(100 - half, rel=1e-6)
    assert stats.ci95_high == pytest.approx(100 + half, rel=1e-6)
    assert (stats.ci_unit, stats.ci_units, stats.count) == ("run", 3, 3)


def test_two_units_give_no_interval_rather_than_one_degree_of_freedom():
    # t(1) = 12.7 would give 100 +- 127: an interval through zero for a positive quantity.
    stats = summarize([90.0, 110.0], unit="run", positive=True)
    assert stats.ci95_low is None and stats.ci95_high is None
    assert (stats.ci_units, stats.std) == (2, pytest.approx(10 * math.sqrt(2)))
    assert too_few_units(2, "call") == "2 calls, 3 needed for a CI"
    assert too_few_units(2, "pass") == "2 passes, 3 needed for a CI"


def test_a_positive_quantity_gets_a_positive_log_scale_interval():
    values = [1.0, 2.0, 30.0]  # SE far above the mean's tenth: the linear interval crosses 0
    linear = summarize(values)
    assert linear.ci95_low < 0
    stats = summarize(values, positive=True)
    mean = 11.0
    se = np.std(values, ddof=1) / math.sqrt(3)
    h = 4.302653 * se / mean
    assert stats.ci95_low == pytest.approx(mean * math.exp(-h), rel=1e-6) and stats.ci95_low > 0
    assert stats.ci95_high == pytest.approx(mean * math.exp(h), rel=1e-6)
    assert stats.ci95_low < mean < stats.ci95_high


def test_ratio_estimator_hand_computed():
    # Passes: 100 tokens in 1 s, 100 in 2 s, 200 in 2 s: R = 400 / 5 = 80 tok/s.
    ratio, low, high, units = ratio_ci95([100, 100, 200], [1.0, 2.0, 2.0])
    assert (ratio, units) == (80.0, 3)
    # residuals 20, -60, 40: SE^2 = 3/2 * 5600 / 25 = 336
    h = 4.302653 * math.sqrt(336) / 80
    assert low == pytest.approx(80 * math.exp(-h), rel=1e-6)
    assert high == pytest.approx(80 * math.exp(h), rel=1e-6)
    assert ratio_ci95([100, 100], [1.0, 2.0]) is None  # two passes: no interval
    with pytest.raises(ValueError):
        ratio_ci95([1, 2, 3], [1.0, 2.0])


def test_equal_clusters_give_the_t_interval_over_cluster_means():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 11.0, 12.0]
    calls = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    stats = summarize(values, calls, unit="call")
    # Call means 2, 5, 11: mean 6, s = sqrt(21), SE = sqrt(21 / 3) = sqrt(7), t(2) = 4.3027.
    half = 4.302653 * math.sqrt(7)
    assert stats.mean == pytest.approx(6.0)
    assert stats.ci95_low == pytest.approx(6.0 - half, rel=1e-6)
    assert stats.ci95_high == pytest.approx(6.0 + half, rel=1e-6)
    assert (stats.count, stats.ci_units, stats.ci_unit) == (9, 3, "call")
    # Descriptive statistics stay over the pooled observations.
    assert stats.median == 5.0 and stats.max == 12.0
    assert stats.std == pytest.approx(np.std(values, ddof=1))


def test_unequal_clusters_use_the_cr1_standard_error():
    # Units a = [1, 3], b = [8], c = [4]: n = 4, mean 4; S_g - mean * n_g = -4, 4, 0;
    # SE^2 = 3/2 * 32 / 16 = 3.
    low, high, units = cluster_ci95([1.0, 3.0, 8.0, 4.0], ["a", "a", "b", "c"])
    assert units == 3
    assert (high - low) / 2 == pytest.approx(4.302653 * math.sqrt(3), rel=1e-6)
    assert (low + high) / 2 == pytest.approx(4.0)


def test_one_unit_has_no_interval_but_keeps_its_spread():
    stats = summarize([1.0, 2.0, 4.0], [7, 7, 7], unit="call")
    assert stats.ci95_low is None and stats.ci95_high is None
    assert stats.std is not None and stats.ci_units == 1


def test_no_value_gives_count_zero_and_no_invented_number():
    stats = summarize([], [], unit="call")
    assert (stats.count, stats.ci_units, stats.ci_unit) == (0, 0, "call")
    numbers = {k: v for k, v in stats.to_dict().items() if k not in ("count", "ci_units")}
    assert numbers == {k: None for k in numbers} | {"ci_unit": "call"}


def test_cluster_labels_must_match_the_values():
    with pytest.raises(ValueError, match="2 cluster labels for 3 values"):
        cluster_ci95([1.0, 2.0, 3.0], ["a", "b"])


# --------------------------------------------------------------------------- coverage

TRUE_MEAN = 0.050  # seconds, the inter-token latency every call scatters around
CALL_SD = 0.004  # call-level random effect (clock, cache state of that call)
INNOVATION_SD = 0.003
PHI = 0.8  # AR(1) correlation of consecutive intervals within a call


def _simulate(rng: np.random.Generator, runs: int, calls: int, sizes: tuple[int, int]):
    """``runs`` x ``calls`` x max-size intervals (NaN past each call's own size)."""
    lo, hi = sizes
    n = rng.integers(lo, hi + 1, size=(runs, calls))
    noise = np.empty((runs, calls, hi))
    noise[..., 0] = rng.normal(0, INNOVATION_SD / math.sqrt(1 - PHI**2), (runs, calls))
    for j in range(1, hi):
        noise[..., j] = PHI * noise[..., j - 1] + rng.normal(0, INNOVATION_SD, (runs, calls))
    x = TRUE_MEAN + rng.normal(0, CALL_SD, (runs, calls, 1)) + noise
    x[np.arange(hi) >= n[..., None]] = np.nan
    return x


@pytest.mark.parametrize("sizes", [(31, 31), (8, 48)], ids=["equal-calls", "unequal-calls"])
def test_interval_over_calls_covers_the_true_mean_95_percent(sizes):
    runs, calls = 1500, 16
    data = _simulate(np.random.default_rng(20240610), runs, calls, sizes)
    covered = naive = 0
    for run in data:
        keep = ~np.isnan(run)
        values = run[keep].tolist()
        labels = np.broadcast_to(np.arange(calls)[:, None], run.shape)[keep].tolist()
        low, high, units = cluster_ci95(values, labels)
        assert units == calls
        covered += low <= TRUE_MEAN <= high
        low, high, _ = cluster_ci95(values)  # every interval as if independent
        naive += low <= TRUE_MEAN <= high
    coverage, naive_coverage = covered / runs, naive / runs
    assert 0.93 <= coverage <= 0.97, coverage
    # The test has power: treating every interval as independent fails it clearly.
    assert naive_coverage < 0.90, naive_coverage


# --------------------------------------------------------------------------- units in metrics


@dataclass(frozen=True)
class _Req:
    index: int
    input_tokens: int = 4
    prompt_id: str = "p"


def _call(repeat: int, batch: int, step: float, tokens=(4, 4)):
    """One call of two requests sharing one clock: first token at ``step``, then every ``step``."""
    times = tuple(step * (i + 1) for i in range(max(tokens)))
    timing = CallTiming(total_seconds=times[-1] + step, token_times_seconds=times, rows=2)
    reqs = [_Req(2 * batch + i) for i in range(len(tokens))]
    return records_for_call(repeat, batch, reqs, list(tokens), timing)


def test_latency_intervals_are_over_calls_and_passes():
    records, batches = [], []
    # Two full passes of two calls, then a third pass cut short after its first call.
    for repeat, batch, step in [(0, 0, 0.1), (0, 1, 0.2), (1, 0, 0.1), (1, 1, 0.3), (2, 0, 0.1)]:
        reqs, brec = _call(repeat, batch, step)
        records += reqs
        batches.append(brec)
    m = latency_metrics(records, batches)
    ttft, itl = m.ttft_seconds, m.itl_seconds
    assert (ttft.count, ttft.ci_units, ttft.ci_unit) == (10, 5, "call")
    assert (itl.count, itl.ci_units, itl.ci_unit) == (30, 5, "call")
    # Equal calls: the interval is the t interval over the five call means.
    call_means = [0.1, 0.2, 0.1, 0.3, 0.1]
    half = t_quantile_95(4) * np.std(call_means, ddof=1) / math.sqrt(5)
    # on the log scale: the latency's interval stays positive
    assert itl.ci95_high == pytest.approx(itl.mean * math.exp(half / itl.mean))
    assert itl.ci95_low == pytest.approx(itl.mean * math.exp(-half / itl.mean))
    assert m.output_tokens_per_second.ci_units == 5
    # Per pass: 16 tokens over (0.5 + 1.0) s and over (0.5 + 1.5) s; the cut pass is left out.
    per_repeat = m.throughput_per_repeat
    assert (per_repeat.count, per_repeat.ci_unit) == (2, "pass")
    assert per_repeat.mean == pytest.approx((16 / 1.5 + 16 / 2.0) / 2)
    assert per_repeat.cv == pytest.approx(np.std([16 / 1.5, 8.0], ddof=1) / per_repeat.mean)
    # The headline rate: every token over every measured second, the cut pass included.
    total = m.throughput
    assert total.output_tokens_per_second == pytest.approx(40 / 4.0)
    assert (total.ci_unit, total.ci_units) == ("pass", 2)
    assert total.output_tokens_per_second_ci95_low is None  # two complete passes: no CI


def test_the_headline_rate_is_total_tokens_over_total_time_with_a_ci_over_passes():
    records, batches = [], []
    # Three passes of a fast call (8 tokens in 0.1 s) and a slow one (8 tokens in 1.0 s).
    for repeat in range(3):
        for batch, step in [(0, 0.02 + 0.001 * repeat), (1, 0.2 + 0.01 * repeat)]:
            reqs, brec = _call(repeat, batch, step)
            records += reqs
            batches.append(brec)
    m = latency_metrics(records, batches)
    seconds = sum(b.timing.total_seconds for b in batches)
    total = m.throughput.output_tokens_per_second
    assert total == pytest.approx(48 / seconds)
    # The mean of per-call rates weights the fast call like the slow one: 3x the truth here.
    assert m.output_tokens_per_second.mean > 2.5 * total
    passes = [(16, sum(b.timing.total_seconds for b in batches if b.repeat == r)) for r in range(3)]
    ratio, low, high, _ = ratio_ci95([t for t, _ in passes], [s for _, s in passes])
    assert ratio == pytest.approx(total)
    assert m.throughput.output_tokens_per_second_ci95_low == pytest.approx(low)
    assert m.throughput.output_tokens_per_second_ci95_high == pytest.approx(high)
    assert m.throughput.ci_units == 3


def test_log_scale_interval_covers_the_true_mean_of_skewed_latencies():
    """Latencies are skewed (log-normal call effects and noise): the log-scale interval
    over calls still covers the true mean about 95% of the time, and never goes below 0."""
    rng = np.random.default_rng(20261206)
    mu, call_sd, noise_sd = math.log(0.05), 0.3, 0.2
    truth = math.exp(mu + call_sd**2 / 2 + noise_sd**2 / 2)
    runs, calls, covered = 1500, 16, 0
    for _ in range(runs):
        effects = rng.normal(0, call_sd, calls)
        sizes = rng.integers(8, 48, calls)
        values = np.concatenate(
            [
                np.exp(mu + e + rng.normal(0, noise_sd, n))
                for e, n in zip(effects, sizes, strict=True)
            ]
        )
        labels = np.repeat(np.arange(calls), sizes)
        low, high, _ = cluster_ci95(values.tolist(), labels.tolist(), positive=True)
        assert low > 0
        covered += low <= truth <= high
    assert 0.92 <= covered / runs <= 0.97, covered / runs


def test_ratio_estimator_covers_the_true_rate_over_passes():
    """Passes over one workload of mixed call sizes (8 calls of 32 to 256 tokens), a
    pass-level slowdown (5%) and call noise (10%): the CI of total tokens / total time over
    6 passes covers the true rate about 95% of the time; the mean of per-call rates is
    biased above it (short calls' noise inflates their rates)."""
    rng = np.random.default_rng(61206)
    rate, tokens = 500.0, np.array([32, 64, 128, 256] * 2)
    runs, passes, covered, biased = 1500, 6, 0, 0
    expected_seconds = (tokens / rate * math.exp(0.05**2 / 2 + 0.1**2 / 2)).sum()
    truth = tokens.sum() / expected_seconds
    for _ in range(runs):
        seconds = [
            tokens / rate * math.exp(rng.normal(0, 0.05)) * np.exp(rng.normal(0, 0.1, 8))
            for _ in range(passes)
        ]
        _, low, high, units = ratio_ci95([tokens.sum()] * passes, [s.sum() for s in seconds])
        assert units == passes
        covered += low <= truth <= high
        biased += np.mean([tokens / s for s in seconds]) > truth
    assert 0.93 <= covered / runs <= 0.97, covered / runs
    assert biased / runs > 0.6, biased / runs
