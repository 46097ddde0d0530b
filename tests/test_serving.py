"""Serving under load without vLLM: the arrival processes against their distributions,
the percentile intervals' coverage on data with known truth, the load generator against
a stand-in engine with known service times (schedule kept, queueing above capacity,
drain, stop), the steady-state figures, and the config's refusals.

The stand-in is a fault we cannot cause on demand with vLLM (a fixed service time, a
request that never ends); the real engine is in tests/test_vllm_e2e.py.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import AsyncIterator, Sequence

import pandas as pd
import pytest
from scipy import stats

from runner.config.schema_serving import Arrival, ScenarioConfig, ScenarioKind
from runner.config.validate import ConfigError, validate
from runner.preflight_compose import compose_typed
from runner.serving.arrivals import schedule
from runner.serving.load import Delta, Plan, Trace, serve
from runner.serving.summary import (
    clustered_quantile_ci,
    quantile_ci,
    serving_summary,
    window_indices,
)
from runner.stop import StopRequested
from tests.conftest import PYTHON

# ------------------------------------------------------------------ arrival processes


@pytest.mark.parametrize("rate", [0.5, 4.0, 50.0])
def test_poisson_gaps_pass_a_ks_test_against_the_exponential_at_the_nominal_rate(rate):
    """Over 200 seeds the KS test against Exp(rate) rejects at 5% about 5% of the time:
    the gaps are exponential with the asked mean, not merely close on average."""
    rejections = 0
    for seed in range(200):
        times = schedule(Arrival.poisson, rate, 200, seed)
        gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
        p = stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue
        rejections += p < 0.05
    assert rejections / 200 <= 0.10
    long = schedule(Arrival.poisson, rate, 20000, 1)
    assert len(long) / long[-1] == pytest.approx(rate, rel=0.03)


@pytest.mark.parametrize("shape", [0.5, 3.0])
def test_burstiness_draws_gamma_gaps_with_the_same_mean_rate(shape):
    rate = 2.0
    rejections = 0
    for seed in range(100):
        times = schedule(Arrival.poisson, rate, 200, seed, burstiness=shape)
        gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
        p = stats.kstest(gaps, "gamma", args=(shape, 0, 1 / (rate * shape))).pvalue
        rejections += p < 0.05
    assert rejections / 100 <= 0.12
    times = schedule(Arrival.poisson, rate, 20000, 3, burstiness=shape)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.05)
    # The coefficient of variation of gamma gaps is 1/sqrt(shape): burstier below 1.
    cv = statistics.stdev(gaps) / statistics.fmean(gaps)
    assert cv == pytest.approx(1 / math.sqrt(shape), rel=0.08)


def test_schedules_are_the_seeds_and_stop_at_the_duration():
    a = schedule(Arrival.poisson, 3.0, 50, 11)
    assert a == schedule(Arrival.poisson, 3.0, 50, 11)
    assert a != schedule(Arrival.poisson, 3.0, 50, 12)
    even = schedule(Arrival.constant, 4.0, 8, 0)
    assert even == pytest.approx([0.25 * (i + 1) for i in range(8)])
    cut = schedule(Arrival.poisson, 3.0, 1000, 11, duration_seconds=5.0)
    assert cut and max(cut) < 5.0 and len(cut) < 1000
    with pytest.raises(ValueError):
        schedule(Arrival.closed, 1.0, 5, 0)


# ------------------------------------------------------------ percentile intervals


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_percentile_interval_covers_the_true_quantile_95_percent_of_the_time(q):
    truth = stats.expon.ppf(q)
    rng = random.Random(5)
    hits = 0
    sims = 600
    for _ in range(sims):
        xs = [rng.expovariate(1.0) for _ in range(120)]
        ci = quantile_ci(xs, q)
        hits += ci.ci95_low <= truth <= ci.ci95_high
    assert 0.93 <= hits / sims <= 0.995


def test_a_tail_percentile_of_few_requests_has_no_upper_bound_rather_than_a_wrong_one():
    ci = quantile_ci([float(i) for i in range(50)], 0.99)
    assert ci.value == pytest.approx(48.51)
    assert ci.ci95_high is None and ci.ci95_low is not None


def test_the_gap_interval_covers_with_correlated_groups_where_pooling_would_not():
    """Groups share a random level (slow steps delay every running request): the pooled
    median's bootstrap over groups covers the truth about 95% of the time, where the
    order-statistic interval that takes every value as independent falls far short."""
    rng = random.Random(9)
    # The truth: the median of the mixture (level ~ N(0,1), value = level + N(0, 0.3)).
    big = sorted(rng.gauss(0, 1) + rng.gauss(0, 0.3) for _ in range(200000))
    truth = big[len(big) // 2]
    sims, hits, naive_hits = 80, 0, 0
    for s in range(sims):
        groups = []
        for _ in range(20):
            level = rng.gauss(0, 1)
            groups.append([level + rng.gauss(0, 0.3) for _ in range(15)])
        ci = clustered_quantile_ci(groups, 0.5, seed=s)
        hits += ci.ci95_low <= truth <= ci.ci95_high
        naive = quantile_ci([x for g in groups for x in g], 0.5)
        naive_hits += naive.ci95_low <= truth <= naive.ci95_high
    assert hits / sims >= 0.85
    assert naive_hits / sims < 0.7


# ------------------------------------------------------------------ stand-in engine


class Server:
    """A stand-in engine: ``slots`` requests served at once, each for ``service`` seconds,
    its ``tokens`` spread evenly over it; the rest wait in FIFO order (queued time
    reported on the last output, as vLLM does)."""

    def __init__(self, service: float, slots: int = 1, tokens: int = 4, hang: set[str] = ()):
        self.service, self.tokens, self.hang = service, tokens, set(hang)
        self.slots = asyncio.Semaphore(slots) if slots else None
        self.cancelled: list[str] = []

    async def stream(self, prompt: Sequence[int], request_id: str) -> AsyncIterator[Delta]:
        arrived = time.perf_counter()
        try:
            async with self.slots:
                queued = time.perf_counter() - arrived
                if request_id in self.hang:
                    await asyncio.sleep(3600)
                for i in range(self.tokens):
                    await asyncio.sleep(self.service / self.tokens)
                    last = i == self.tokens - 1
                    yield Delta((7,), last, queued if last else None)
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise


def _scenario(**kw) -> ScenarioConfig:
    base = dict(
        kind=ScenarioKind.online,
        arrival=Arrival.constant,
        rate=10.0,
        num_requests=40,
        trim_fraction=0.1,
        drain_seconds=30.0,
        max_lag_ms=50.0,
        slo_attainment=0.9,
    )
    return ScenarioConfig(**{**base, **kw})


def _serve(engine, s: ScenarioConfig, **kw) -> list[Trace]:
    times = None
    if s.arrival is not Arrival.closed:
        times = tuple(schedule(s.arrival, s.rate, s.num_requests, 0, burstiness=s.burstiness))
    plan = Plan(s.num_requests, times, s.concurrency, s.drain_seconds)
    traces: list[Trace] = []
    asyncio.run(serve(engine, [[1, 2, 3], [4, 5]], plan, traces, **kw))
    return traces


def test_below_capacity_the_load_is_served_as_offered_and_latency_is_the_service_time():
    service = 0.02  # capacity 50 requests/s
    s = _scenario(rate=20.0, num_requests=50, slo_e2e_ms=60.0, max_lag_ms=200.0)
    traces = _serve(Server(service), s)
    serving, latency, rows = serving_summary(traces, s)
    assert serving.offered_requests_per_second == pytest.approx(20.0, rel=0.05)
    assert serving.achieved_requests_per_second == pytest.approx(20.0, rel=0.15)
    assert serving.e2e_seconds.p50.value == pytest.approx(service, abs=0.015)
    # Sent on schedule (generous: a busy 2-core machine delays an event loop's wake-up).
    assert statistics.median(t.lag for t in traces) < 0.02 and serving.lag_exceeded is False
    assert serving.e2e_growth == pytest.approx(1.0, abs=0.4)
    assert serving.slo_attainment >= 0.9 and serving.within_slo is True
    assert serving.requests_unfinished == 0
    # The steady-state window is the rule's, and its figures are the window's only.
    assert [r.request for r in rows if r.in_window] == list(range(5, 45))
    assert serving.ramp_requests == 5 and serving.drain_requests == 5
    assert latency.requests == serving.window_finished_requests


def test_above_capacity_requests_queue_and_latency_grows_with_time():
    service = 0.02  # capacity 50 requests/s; offered 100
    s = _scenario(rate=100.0, num_requests=80, slo_e2e_ms=60.0)
    traces = _serve(Server(service), s)
    serving, _, _ = serving_summary(traces, s)
    assert serving.achieved_requests_per_second < 0.75 * serving.offered_requests_per_second
    assert serving.achieved_requests_per_second == pytest.approx(50.0, rel=0.25)
    assert serving.e2e_growth > 1.5
    queued = [t.queued for t in sorted(traces, key=lambda t: t.index)]
    assert statistics.fmean(queued[-20:]) > 5 * statistics.fmean(queued[:20]) + 0.05
    assert serving.within_slo is False


def test_a_closed_loop_keeps_its_users_busy_and_never_queues_with_a_slot_each():
    s = _scenario(arrival=Arrival.closed, rate=None, concurrency=4, num_requests=40)
    traces = _serve(Server(0.02, slots=4), s)
    serving, _, _ = serving_summary(traces, s)
    assert serving.achieved_requests_per_second == pytest.approx(4 / 0.02, rel=0.3)
    assert max(t.queued for t in traces) < 0.01
    assert all(t.scheduled is None for t in traces) and serving.lag_max_seconds is None


def test_a_generator_that_falls_behind_its_schedule_is_flagged():
    """A stream that blocks the loop (as a slow front end would) delays later sends."""

    class Blocking(Server):
        async def stream(self, prompt, request_id):
            time.sleep(0.06)  # noqa: ASYNC251 - the fault under test
            yield Delta((1,), True, 0.0)

    s = _scenario(rate=50.0, num_requests=20)
    serving, _, _ = serving_summary(_serve(Blocking(0.0), s), s)
    assert serving.lag_max_seconds > 0.05 and serving.lag_exceeded is True


def test_requests_left_at_the_drain_deadline_are_cancelled_and_count_as_missed():
    engine = Server(0.01, slots=4, hang={"s3"})
    s = _scenario(rate=50.0, num_requests=12, drain_seconds=0.3, slo_ttft_ms=1000.0)
    traces = _serve(engine, s)
    assert engine.cancelled == ["s3"]
    serving, _, rows = serving_summary(traces, s, ["a", "b"])
    assert serving.requests_unfinished == 1 and serving.window_unfinished_requests == 1
    assert serving.slo_met_requests == serving.window_requests - 1
    hung = next(r for r in rows if r.request == 3)
    assert hung.finished is False and hung.e2e_seconds is None and hung.met_slo is False


def test_a_stop_ends_the_load_and_cancels_what_is_in_flight():
    engine = Server(0.2, slots=8)
    s = _scenario(rate=50.0, num_requests=100)
    started = time.perf_counter()
    traces: list[Trace] = []

    def check():
        if time.perf_counter() - started > 0.3:
            raise StopRequested(15)

    times = tuple(schedule(s.arrival, s.rate, s.num_requests, 0))
    with pytest.raises(StopRequested):
        asyncio.run(serve(engine, [[1]], Plan(100, times, None, 30.0), traces, check=check))
    assert 5 < len(traces) < 40  # what was sent before the stop is kept
    assert engine.cancelled  # nothing keeps running in the engine
    assert time.perf_counter() - started < 2.0


def test_a_request_that_fails_in_the_engine_fails_the_load():
    class Failing(Server):
        async def stream(self, prompt, request_id):
            raise RuntimeError("engine dead")
            yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="engine dead"):
        _serve(Failing(0.0), _scenario(rate=100.0, num_requests=5))


# ------------------------------------------------------------------ the window


def test_the_window_excludes_the_ramp_and_the_drain_by_the_rule():
    assert window_indices(100, 0.1) == (10, 89)
    assert window_indices(10, 0.0) == (0, 9)
    assert window_indices(3, 0.4) is None  # too few requests for a window


def test_no_objective_means_no_attainment_no_goodput():
    s = _scenario(rate=20.0, num_requests=20)
    serving, _, _ = serving_summary(_serve(Server(0.01), s), s)
    assert serving.slo_attainment is None and serving.goodput_requests_per_second is None


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["scenario=closed", "scenario.rate=3"], "scenario.rate=3.0: only applies with"),
        (["scenario=online", "scenario.concurrency=2"], "scenario.concurrency=2: only applies"),
        (["scenario=online", "scenario.rate=0"], "scenario.rate=0.0: must be > 0"),
        (["scenario=online", "scenario.rate=null"], "scenario.rate is unset: required with"),
        (["scenario.slo_ttft_ms=100"], "scenario.slo_ttft_ms=100.0: only applies with"),
        (["scenario=online", "scenario.trim_fraction=0.5"], "scenario.trim_fraction=0.5"),
        (["scenario=closed", "scenario.duration_seconds=5"], "scenario.duration_seconds=5.0"),
    ],
)
def test_scenario_fields_are_refused_where_they_mean_nothing(overrides, message):
    cfg = compose_typed(["engine=vllm", *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(message)


def test_the_offline_scenario_leaves_every_earlier_config_hash_as_it_was():
    from runner.config.resolved import config_dict, config_hash

    data = config_dict(compose_typed([]))
    assert data["scenario"]["kind"] == "offline"
    without = {k: v for k, v in data.items() if k != "scenario"}
    assert config_hash(data) == config_hash(without)
    online = config_dict(compose_typed(["engine=vllm", "scenario=online"]))
    assert config_hash(online) != config_hash({k: v for k, v in online.items() if k != "scenario"})


# ------------------------------------------------------------------ the report


def _load_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["status"] = df.get("status", "ok")
    df["label"] = [f"r{i}" for i in range(len(df))]
    df.attrs["factors"] = [c for c in ("scenario.rate", "engine.max_num_seqs") if c in df]
    return df


def _curve_rows(seqs: str, capacity: float, slo_up_to: float) -> list[dict]:
    """A configuration that follows the load up to ``capacity`` requests/s and meets the
    SLO up to ``slo_up_to``."""
    rows = []
    for rate in (1, 2, 4, 8):
        achieved = min(rate, capacity)
        rows.append(
            {
                "scenario.rate": str(rate),
                "engine.max_num_seqs": seqs,
                "offered_rps": float(rate),
                "achieved_rps": achieved,
                "slo_attainment": 0.95 if rate <= slo_up_to else 0.5,
                "slo_target": 0.9,
                "slo_ttft_ms": 500.0,
                "goodput_rps": rate * (0.95 if rate <= slo_up_to else 0.5),
                "ttft_ms_p50": 100.0 * rate,
                "ttft_ms_p99": 300.0 * rate,
                "e2e_ms_p99": 900.0 * rate,
                "energy_per_request_j_gross": 10.0 / achieved,
                "named_warnings": "serving.short_window: ..." if rate == 8 else "",
            }
        )
    return rows


def test_each_configuration_gets_its_knee_and_its_capacity_at_the_slo():
    from runner.report.serving import curves

    table = _load_table(_curve_rows("1", 2.0, 2) + _curve_rows("8", 5.0, 4))
    found = {c.label: c for c in curves(table, ["scenario.rate", "engine.max_num_seqs"])}
    assert set(found) == {"engine.max_num_seqs=1", "engine.max_num_seqs=8"}
    one, eight = found["engine.max_num_seqs=1"], found["engine.max_num_seqs=8"]
    assert (one.knee, one.capacity) == (2.0, 2.0)
    assert (eight.knee, eight.capacity) == (4.0, 4.0)
    assert list(eight.points["load"]) == [1.0, 2.0, 4.0, 8.0]
    assert list(eight.points["flagged"]) == [False, False, False, True]


def test_a_closed_loop_knee_is_where_throughput_stops_rising():
    from runner.report.serving import curves

    rows = []
    for users, achieved in ((1, 1.0), (2, 1.9), (4, 3.5), (8, 3.6)):
        rows.append(
            {
                "scenario.concurrency": str(users),
                "offered_rps": achieved,
                "achieved_rps": achieved,
                "slo_attainment": None,
                "slo_target": 0.9,
            }
        )
    table = _load_table(rows)
    table.attrs["factors"] = ["scenario.concurrency"]
    (curve,) = curves(table, ["scenario.concurrency"])
    assert curve.knee == 4.0 and curve.capacity is None


def test_the_report_opens_with_the_load_table_and_draws_the_three_figures(tmp_path):
    from runner.report.data import ReportData
    from runner.report.plots import make_plots
    from runner.report.serving_plots import serving_figures
    from runner.report.serving_section import serving_section

    table = _load_table(_curve_rows("1", 2.0, 2) + _curve_rows("8", 5.0, 4))
    data = ReportData(table=table)
    text = serving_section(data)
    assert "### engine.max_num_seqs=8" in text
    assert "**Knee** (scenario.rate): 4.00; **capacity at the SLO** (TTFT ≤ 500 ms" in text
    assert "| 8.00 † |" in text  # the flagged load is marked
    paths, skipped = make_plots(data, tmp_path, makers=[serving_figures], workers=1)
    assert sorted(p.name for p in paths) == [
        "serving_energy.png",
        "serving_latency.png",
        "serving_throughput.png",
    ], skipped
    # An offline sweep has no serving section and no serving figure.
    offline = ReportData(table=_load_table([{"scenario.rate": None, "offered_rps": None}]))
    assert serving_section(offline) is None and serving_figures(offline) == []


# ------------------------------------------------- transformers' continuous batching


SERVE_TINY = [
    "model=tiny",
    "loading=cpu",
    "energy=off",
    "workload.num_prompts=4",
    "decoding.max_new_tokens=6",
    "scenario=online",
    "scenario.num_requests=24",
    "scenario.slo_ttft_ms=5000",
]


def test_transformers_serves_the_load_through_one_running_continuous_batching_manager(
    compose, tmp_path
):
    import pandas as pd

    from runner.run import run

    cfg = compose([*SERVE_TINY, "scenario.rate=40"])
    result = run(cfg, tmp_path / "run", []).to_dict()
    assert result["status"] == "ok", result.get("error")
    requested = result["requested"]["continuous_batching"]
    applied = result["applied"]["continuous_batching"]
    assert applied["running"] is True
    for key in ("page_size", "num_blocks", "max_batch_tokens", "max_new_tokens", "do_sample"):
        assert applied[key] == requested[key]
    serving = result["metrics"]["serving"]
    assert serving["requests_sent"] == 24 and serving["requests_unfinished"] == 0
    assert serving["lag_exceeded"] is False
    rows = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert len(rows) == 24 and (rows["output_tokens"] == 6).all()  # fixed output length
    assert rows["queued_seconds"].notna().all() and (rows["queued_seconds"] >= 0).all()
    # The quality phase scores the plain model after the manager stopped.
    assert math.isfinite(result["quality"]["perplexity"])


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["decoding=sample"], "decoding.mode"),
        (["compile=on"], "compile.enabled"),
        (["decoding.cache_implementation=static"], "decoding.cache_implementation"),
        (["decoding.repetition_penalty=1.2"], "decoding.repetition_penalty"),
        (["loading.attn_implementation=eager"], "loading.attn_implementation"),
    ],
)
def test_what_continuous_batching_would_drop_is_refused_under_load(compose, overrides, field):
    cfg = compose([*SERVE_TINY, *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field == field
    assert "engine=vllm" in str(err.value) or "sdpa" in str(err.value) or "paged" in str(err.value)


@pytest.mark.slow  # ~10 s: make test-fast stays under 3 minutes
def test_sigterm_while_serving_is_recorded_with_what_was_sent(tmp_path):
    import json
    import os
    import signal
    import subprocess
    from pathlib import Path

    import pandas as pd

    run_dir = tmp_path / "run"
    cmd = [*PYTHON, "-m", "runner", *SERVE_TINY, "scenario.rate=5"]
    cmd += ["scenario.num_requests=200", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cmd,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = run_dir / "run.log"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "serving 200 requests" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        time.sleep(2)  # about ten requests sent
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and result["error"]["phase"] == "measure"
    rows = pd.read_parquet(run_dir / "requests.parquet")
    assert 3 <= len(rows) < 200 and result["metrics"]["serving"]["requests_sent"] == len(rows)
