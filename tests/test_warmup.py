"""Warmup to convergence: the rule on hand-checkable numbers, and the run's warmup loop
on calls with scripted latencies (no model)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pytest

from runner import stop
from runner.config.schema_measure import MeasureConfig
from runner.measure.generation import CallResult
from runner.measure.timing import CallTiming
from runner.measure.warmup import window_cv
from runner.phases.state import Progress
from runner.phases.warmup import warmup


def test_window_cv_is_over_the_last_complete_passes():
    assert window_cv([1.0, 2.0], batches=1, window=3) is None  # too few passes yet
    totals = [0.3, 0.2, 0.22, 0.18]
    assert window_cv(totals, 1, 3) == pytest.approx(
        statistics.stdev([0.2, 0.22, 0.18]) / statistics.fmean([0.2, 0.22, 0.18])
    )
    # Two batches of different sizes: a pass is a call of each; the half pass at the end
    # is not counted, and the batches' own difference is no fluctuation.
    calls = [1.0, 0.1, 1.0, 0.1, 1.0, 0.1, 5.0]
    assert window_cv(calls, 2, 3) == 0.0
    assert window_cv([1.0], 1, 1) is None  # a window of one is no variation at all


@dataclass
class Workload:
    batches: list[str]


def _run(latencies, cfg: MeasureConfig, batches=("b0",)):
    """The run's warmup loop over calls taking ``latencies`` seconds (then the last one)."""
    seen = []

    def call(batch: str) -> CallResult:
        seconds = latencies[min(len(seen), len(latencies) - 1)]
        seen.append(batch)
        return CallResult(CallTiming(seconds, (seconds / 2,), 1), (4,), ((1, 2, 3, 4),))

    progress = Progress()
    cfg_all = type("Cfg", (), {"measure": cfg})()
    warmup(cfg_all, Workload(list(batches)), call, progress, False, stop.StopGuard())
    return progress, seen


def test_warms_up_until_the_last_passes_agree():
    cfg = MeasureConfig(warmup=2, warmup_until_cv=0.05, warmup_window=3, warmup_max_calls=40)
    progress, seen = _run([1.0, 0.6, 0.4, 0.3, 0.25, 0.2, 0.2, 0.2, 0.2], cfg)
    m = progress.metrics
    # The last three of 0.25, 0.2, 0.2 vary by 13%; 0.2, 0.2, 0.2 by nothing: 8 calls.
    assert (m.warmup_calls, m.warmup_converged, m.warmup_cv) == (8, True, 0.0)
    assert len(seen) == 8 and not progress.named


def test_a_rule_that_is_never_met_stops_at_the_cap_and_says_so():
    cfg = MeasureConfig(warmup=1, warmup_until_cv=0.01, warmup_window=4, warmup_max_calls=12)
    progress, seen = _run([0.1, 0.3] * 20, cfg, batches=("a",))
    m = progress.metrics
    assert (m.warmup_calls, m.warmup_converged) == (12, False)
    assert m.warmup_cv == pytest.approx(statistics.stdev([0.1, 0.3] * 2) / 0.2)
    (named,) = progress.named
    assert named.name == "warmup.not_converged" and named.phase == "warmup"
    assert "after 12 calls" in named.message and "rule: <= 0.01" in named.message


def test_passes_cycle_the_batches_and_the_fixed_count_alone_is_unchanged():
    cfg = MeasureConfig(warmup=1, warmup_until_cv=0.05, warmup_window=2, warmup_max_calls=20)
    progress, seen = _run([2.0, 1.0, 1.0, 1.0, 1.0], cfg, batches=("a", "b"))
    assert seen[:4] == ["a", "b", "a", "b"] and len(seen) % 2 == 0  # whole passes
    assert progress.metrics.warmup_converged is True
    fixed = MeasureConfig(warmup=3)
    progress, seen = _run([1.0, 0.5, 0.1], fixed)
    m = progress.metrics
    assert (len(seen), m.warmup_calls, m.warmup_cv, m.warmup_converged) == (3, 3, None, None)
