"""Repeats of a sweep's points: the order they run in, the grid sweeper that launches
them, and a real sweep that runs, resumes and extends them."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from runner.config.repeats import repeat_plan
from runner.measure.stats import t_quantile_95
from runner.report import build_report
from runner.report.compare import ratio_ci
from runner.report.metrics import E2E
from runner.report.repeats import drift, paired_ratios, point_stats
from tests.conftest import PYTHON
from tests.test_report import result, write_run
from tests.test_report_scale import section, table_rows

REPO = Path(__file__).resolve().parents[1]
A, B, C = ["q=a"], ["q=b"], ["q=c"]


def _names(plan: list[list[str]]) -> list[str]:
    return [f"{job[0][2:]}{job[-1].rsplit('=', 1)[1]}" for job in plan]


def test_orders():
    assert _names(repeat_plan([A, B, C], 2)) == ["a0", "b0", "c0", "a1", "b1", "c1"]
    assert _names(repeat_plan([A, B, C], 2, "grouped")) == ["a0", "a1", "b0", "b1", "c0", "c1"]
    shuffled = repeat_plan([A, B, C], 3, "shuffled", seed=7)
    assert sorted(_names(shuffled)) == sorted(_names(repeat_plan([A, B, C], 3)))
    assert shuffled == repeat_plan([A, B, C], 3, "shuffled", seed=7)  # seeded: reproducible
    assert shuffled != repeat_plan([A, B, C], 3, "shuffled", seed=8)
    assert repeat_plan([A, B], 1) == [A, B]  # no index override without repeats
    with pytest.raises(ValueError, match="repeat.order=random"):
        repeat_plan([A], 2, "random")


def test_the_grid_sweeper_launches_every_repeat_in_batches_and_records_the_order(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.runner_launcher.grid_sweeper import ORDER_FILE, GridSweeper

    sweeper = GridSweeper(max_batch_size=1)
    sweeper.config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(tmp_path)}},
            "repeat": {"count": 2, "order": "grouped", "seed": 0},
        }
    )
    overrides = OverridesParser.create().parse_overrides(["q=a,b", "m=tiny"])
    batches = sweeper.split_arguments(overrides, 1)
    assert batches == [
        [["q=a", "m=tiny", "repeat.index=0"]],
        [["q=a", "m=tiny", "repeat.index=1"]],
        [["q=b", "m=tiny", "repeat.index=0"]],
        [["q=b", "m=tiny", "repeat.index=1"]],
    ]
    record = json.loads((tmp_path / ORDER_FILE).read_text())
    assert (record["count"], record["order"]) == (2, "grouped")
    assert record["jobs"] == [b[0] for b in batches]
    sweeper.config.repeat.count = 1  # no repeats: Hydra's grid as it was, one batch
    assert sweeper.split_arguments(overrides, None) == [[["q=a", "m=tiny"], ["q=b", "m=tiny"]]]


def _sweep(sweep: Path, count: int) -> subprocess.CompletedProcess[str]:
    command = [
        *PYTHON, "-m", "runner", "-m", "model=tiny", "quant=none,nf4",
        f"repeat.count={count}", "measure=quick", "energy=off", "quality=off",
        "workload.num_prompts=2", "decoding.max_new_tokens=4", "measure.isolation=inline",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_sweep_with_repeats_runs_interleaved_resumes_and_extends(tmp_path):
    sweep = tmp_path / "sweep"
    done = _sweep(sweep, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert set(results) == {
        "quant=none,repeat.index=0",
        "quant=nf4,repeat.index=0",
        "quant=none,repeat.index=1",
        "quant=nf4,repeat.index=1",
    }
    started = sorted(results, key=lambda n: datetime.fromisoformat(results[n]["started_at"]))
    assert [n.split(",")[1] for n in started] == ["repeat.index=0"] * 2 + ["repeat.index=1"] * 2
    for name, r in results.items():
        assert r["config"]["repeat"]["index"] == int(name[-1])
    # Resumed with a third repeat: the two it has are kept, only the third runs.
    again = _sweep(sweep, 3)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[skipped]") + again.stderr.count("[skipped]") >= 4
    after = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert len(after) == 6
    for name, r in results.items():
        assert after[name]["started_at"] == r["started_at"]  # not measured again


# --------------------------------------------------------------------------- statistics


def _table(values: dict[tuple[str, int], float], within: float = 0.01) -> pd.DataFrame:
    """A report table of ok runs: ``(point, repeat) -> E2E ms``, in the dict's order as
    execution order, each with its own CI of ``exp(+-within)``."""
    rows = []
    for position, ((point, repeat), value) in enumerate(values.items()):
        rows.append(
            {
                "status": "ok",
                "point": point,
                "label": f"{point}, repeat {repeat}",
                "repeat": repeat,
                "started_at": f"2026-12-06T00:{position // 60:02d}:{position % 60:02d}",
                E2E.column: value,
                "e2e_ms_ci95_low": value * math.exp(-within),
                "e2e_ms_ci95_high": value * math.exp(within),
            }
        )
    return pd.DataFrame(rows)


def _simulated(rng: np.random.Generator, repeats: int, slope_sd: float) -> pd.DataFrame:
    """Points a (100 ms) and b (150 ms), interleaved; every run moves by a between-run
    draw (5%) and a linear drift of random slope, centred on the sweep's middle."""
    slope = rng.normal(0, slope_sd)
    runs = 2 * repeats
    values = {}
    for position in range(runs):
        point, repeat = "ab"[position % 2], position // 2
        drift = slope * (position - (runs - 1) / 2)
        values[(point, repeat)] = TRUTH[point] * math.exp(rng.normal(0, 0.05) + drift)
    return _table(values)


TRUTH = {"a": 100.0, "b": 150.0}


@pytest.mark.slow  # ~10 s: make test-fast stays under 3 minutes
def test_across_repeat_intervals_cover_the_truth_and_within_run_ones_fall_short():
    """With between-run noise and drift, the CI over repeats of a point's mean and the
    ratio paired by repeat cover the truth about 95% of the time; one run's own CI, and a
    ratio from two runs' own CIs, miss it most of the time."""
    rng = np.random.default_rng(24)
    sims, mean_hits, ratio_hits, within_hits, within_ratio_hits = 1000, 0, 0, 0, 0
    for _ in range(sims):
        df = _simulated(rng, 5, slope_sd=0.005)
        a = next(s for s in point_stats(df, E2E) if s.point == "a")
        mean_hits += a.ci95_low <= TRUTH["a"] <= a.ci95_high
        (pair,) = paired_ratios(df, E2E, "a")
        ratio_hits += pair.ratio_ci95_low <= 1.5 <= pair.ratio_ci95_high
        first = df.iloc[0]  # point a, repeat 0: what one run alone claims
        within_hits += first["e2e_ms_ci95_low"] <= TRUTH["a"] <= first["e2e_ms_ci95_high"]
        b = df.iloc[1]
        _, low, high = ratio_ci(b[E2E.column], 0.01, first[E2E.column], 0.01)
        within_ratio_hits += low <= 1.5 <= high
    assert 0.92 <= mean_hits / sims <= 0.98, mean_hits / sims
    assert 0.92 <= ratio_hits / sims <= 0.98, ratio_hits / sims
    assert within_hits / sims < 0.3, within_hits / sims
    assert within_ratio_hits / sims < 0.4, within_ratio_hits / sims


def test_point_stats_hand_computed():
    df = _table({("a", 0): 90.0, ("a", 1): 100.0, ("a", 2): 110.0}, within=0.01)
    (s,) = point_stats(df, E2E)
    assert (s.repeats, s.mean) == (3, 100.0)
    half = t_quantile_95(2) * 10 / math.sqrt(3)
    assert s.ci95_low == pytest.approx(100 * math.exp(-half / 100))
    assert s.within_ci95_low == pytest.approx(100 * math.exp(-0.01))
    # The logs vary far more than the own CIs (SE 0.01 / 1.96) imply: nearly all between.
    assert s.between_share > 0.99 and s.within_too_narrow
    assert s.missed == 2  # 90 and 110 with +-1% miss 100; 100 covers it
    two = point_stats(_table({("a", 0): 90.0, ("a", 1): 110.0}), E2E)[0]
    assert math.isnan(two.ci95_low) and not two.within_too_narrow  # 2 repeats: no CI


def test_drift_is_found_where_there_is_one_and_rarely_where_there_is_none():
    rng = np.random.default_rng(7)
    values = {}
    for position in range(24):  # 3 points x 8 repeats, interleaved, +1% per run
        point, repeat = "abc"[position % 3], position // 3
        values[(point, repeat)] = 100.0 * math.exp(0.01 * position + rng.normal(0, 0.01))
    found = drift(_table(values), E2E)
    assert found is not None and found.significant
    assert found.per_run == pytest.approx(0.01, abs=0.003)
    assert found.over_sweep == pytest.approx(math.exp(0.23) - 1, rel=0.2)
    false = 0
    for _ in range(300):
        df = _simulated(rng, 6, slope_sd=0.0)
        false += drift(df, E2E).significant
    assert false / 300 <= 0.09, false / 300  # about 5% at alpha 0.05
    assert drift(_table({("a", 0): 1.0, ("b", 0): 2.0}), E2E) is None  # no repeats


def _write(root: Path, point: str, repeat: int, minute: int, tok_s: float) -> None:
    overrides = [f"quant={point}", "repeat.count=3", f"repeat.index={repeat}"]
    data = result(overrides, tok_s=tok_s, tok_half=tok_s * 0.01)
    data["started_at"] = f"2026-12-06T00:{minute:02d}:00+00:00"
    data["run_id"] = f"quant={point},repeat.index={repeat}"
    write_run(root, data["run_id"], data)


def test_a_report_with_repeats_ranks_points_and_pairs_the_baseline_by_repeat(tmp_path):
    root = tmp_path / "sweep"
    # nf4 is 0.5x none's throughput in every repeat, and the machine slows down by 10% a
    # repeat: paired by repeat the ratio is exact; the repeats of a point differ by 10%.
    minute = 0
    for repeat in range(3):
        for point, base in (("none", 100.0), ("nf4", 50.0)):
            _write(root, point, repeat, minute, base * 0.9**repeat)
            minute += 1
    outputs = build_report([root], tmp_path / "out", baseline="quant=none")
    text = outputs.report_md.read_text()
    table = outputs.table
    assert table["is_baseline"].sum() == 3  # the baseline is a point: each repeat's run
    for _, row in table.iterrows():
        expected = 0.5 if row["quant"] == "nf4" else 1.0
        assert row["speedup_output_tok_s"] == pytest.approx(expected)  # its own repeat's
    best = table_rows(section(text, "Best points"))
    tok = next(r for r in best if r["best for"].startswith("highest output throughput"))
    assert tok["quant"] == "none" and tok["points ranked"] == "2"
    assert _number(tok["value"].split(" ")[0]) == pytest.approx(100 * 2.71 / 3, rel=1e-3)
    repeats = section(text, "Repeats")
    assert "### Ratios to the baseline (quant=none), paired by repeat" in repeats
    paired = repeats[repeats.index("paired by repeat") :]
    row = next(r for r in table_rows(paired) if r["point"] == "quant=nf4")
    assert row["out tok/s ×"] == "×0.500 [0.500, 0.500]"  # the 10% slowdown cancels
    assert "output throughput: a drift of -23.2% from the first run to the last" in repeats
    assert "For 2 of 2 points the within-run CI is too narrow" in repeats
    csv = pd.read_csv(tmp_path / "out" / "repeats.csv")
    row = csv[(csv["point"] == "quant=nf4") & (csv["metric"] == "output_tok_s")].iloc[0]
    assert row["repeats"] == 3 and row["missed"] >= 2


def _number(text: str) -> float:
    return float(text.replace(",", ""))
