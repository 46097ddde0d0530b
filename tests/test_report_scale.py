"""The report on synthetic sweeps of 4, 100 and 1,000 runs with known effects.

``bench/synthetic_sweep.py`` writes sweeps in which ``compile=on`` halves every latency
and ``loading.attn_implementation`` does nothing (noise only); beyond 4 runs, batch size
and ``max_new_tokens`` vary too. The report must name the factor that matters, rank the
known-best point first, mark the right Pareto points, keep every figure within its size
cap, and survive broken run directories.
"""

from __future__ import annotations

import math
import random
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.synthetic_sweep import Point, Sweep, make_sweep
from runner.config.dirname import job_dirname, sweep_exclude_keys
from runner.config.overrides import expand
from runner.report import build_report
from runner.report.effects import factor_effects
from runner.report.figure_kit import MAX_PX
from runner.report.metrics import E2E

ATTN = "loading.attn_implementation"


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def section(text: str, title: str) -> str:
    """The body of a ``## title`` section of report.md."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def table_rows(body: str) -> list[dict[str, str]]:
    """The first pipe table of a section, as dicts."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def true_front(points: list[Point]) -> set[str]:
    """Pareto front of (latency, energy) by the definition, O(n^2): the oracle."""
    return {
        p.label
        for p in points
        if not any(
            q.e2e_ms <= p.e2e_ms
            and q.energy_mj <= p.energy_mj
            and (q.e2e_ms, q.energy_mj) != (p.e2e_ms, p.energy_mj)
            for q in points
        )
    }


@pytest.fixture(scope="module", params=[4, 100, pytest.param(1000, marks=pytest.mark.slow)])
def built(request, tmp_path_factory) -> tuple[Sweep, str, object]:
    root = tmp_path_factory.mktemp(f"sweep{request.param}")
    sweep = make_sweep(root / "sweep", request.param, requests=request.param <= 100)
    outputs = build_report([sweep.root], root / "out")
    return sweep, outputs.report_md.read_text(), outputs


def test_names_the_factor_that_matters(built) -> None:
    sweep, text, _ = built
    body = section(text, "Effect of each factor")
    lead = body.strip().splitlines()[0]
    assert lead.startswith("On end-to-end request latency: detectable effects")
    detected, _, undetected = lead.partition("No detectable difference:")
    named = re.search(r"\*\*compile\*\* \(on ×([\d.]+) vs off\)", detected)
    assert named and float(named.group(1)) == pytest.approx(0.5, rel=0.03)
    assert ATTN not in detected and ATTN in undetected
    rows = {r["factor"]: r for r in table_rows(body)}
    # 4 runs: 2 pairs per factor, a CI within the runs (marked †); more: paired over runs
    mark = " †" if len(sweep.points) == 4 else ""
    cell = re.fullmatch(rf"on ×([\d.]+) \[([\d.]+), ([\d.]+)\]{mark}", rows["compile"]["E2E ms"])
    assert cell, rows["compile"]["E2E ms"]  # a ratio with its CI, not "no detectable..."
    low, high = float(cell.group(2)), float(cell.group(3))
    assert low <= float(cell.group(1)) <= high < 1
    assert rows[ATTN]["E2E ms"].startswith("no detectable difference (sdpa ×")


def test_known_best_point_first(built) -> None:
    sweep, text, _ = built
    best = min(sweep.points, key=lambda p: p.e2e_ms)
    first = table_rows(section(text, "Best points"))[0]
    assert first["best for"] == "lowest end-to-end request latency (ms)"
    assert {k: first[k] for k in best.factors} == best.factors
    assert best.factors["compile"] == "on"


def test_right_pareto_points(built) -> None:
    sweep, text, outputs = built
    table = outputs.table
    marked = set(table.loc[table["on_pareto_front"].astype(bool), "label"])
    assert marked == true_front(sweep.points)
    listed = table_rows(section(text, "Energy/latency Pareto front"))
    factors = list(sweep.points[0].factors)
    labels = [", ".join(f"{k}={r[k]}" for k in factors) for r in listed]
    assert set(labels) == marked and len(labels) == len(marked)  # every front point, once


def test_every_figure_within_the_size_cap(built) -> None:
    _, text, outputs = built
    assert len(outputs.plots) >= 5
    for path in outputs.plots:
        width, height = png_size(path)
        assert width <= MAX_PX[0] and height <= MAX_PX[1], (path.name, width, height)
        assert f"plots/{path.name}" in text


def test_small_sweeps_keep_the_full_table(built) -> None:
    sweep, text, outputs = built
    if len(sweep.points) <= 30:
        assert "## All runs" in text
        assert len(table_rows(section(text, "All runs"))) == len(sweep.points)
    else:
        assert "## All runs" not in text
        assert f"The table of all {len(sweep.points)} runs" in text
        assert len(text) < 20_000  # a screenful or two, not one line per run
    assert len(pd.read_csv(outputs.summary_csv)) == len(sweep.points)


def test_same_inputs_same_report(built, tmp_path: Path) -> None:
    sweep, text, outputs = built
    again = build_report([sweep.root], tmp_path / "again")
    assert again.report_md.read_text() == text
    effects = outputs.report_md.parent / "effects.csv"
    assert (tmp_path / "again" / "effects.csv").read_bytes() == effects.read_bytes()
    for path in outputs.plots:
        assert (tmp_path / "again" / "plots" / path.name).read_bytes() == path.read_bytes()


def test_broken_runs_are_counted_listed_and_rerunnable(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep", 100, failed=3, truncated=2, missing=2)
    outputs = build_report([sweep.root], tmp_path / "out")
    text = outputs.report_md.read_text()
    assert "100 runs from" in text and "93 ok, 3 failed, 2 partial, 2 unreadable" in text
    body = section(text, "Runs that did not complete")
    assert "### failed: OutOfMemoryError (phase: load) (3 runs)" in body
    assert "### partial: no result.json" in body and "### unreadable:" in body
    for kind, dirs in sweep.broken.items():
        for run_dir in dirs:
            assert f"`{run_dir}`" in body, kind
    # The failed group's command reruns its three points into their own directories; the
    # restricted grid may hold other points of the sweep (ok ones are skipped on rerun),
    # never a point outside it.
    failed = body.split("### failed:")[1].split("###")[0]
    command = re.search(r"```bash\n(.*?)\n```", failed, re.S).group(1)
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "runner", "-m"]
    assert f"hydra.sweep.dir={sweep.root}" in argv
    task = [a for a in argv[4:] if not a.startswith("hydra.")]
    jobs = expand(task, multirun=True)
    names = {job_dirname(job, sweep_exclude_keys(task)) for job in jobs}
    assert {d.name for d in sweep.broken["failed"]} <= names
    assert names <= {p.name for p in sweep.root.iterdir() if p.is_dir()}
    assert len(names) < 10
    # The ok runs are all still analysed.
    assert int((outputs.table["status"] == "ok").sum()) == 93


def test_a_sweep_still_running_then_finished(tmp_path: Path) -> None:
    """Missing results while running; the same report as a clean sweep once they exist."""
    running = make_sweep(tmp_path / "sweep", 12, missing=3, requests=False)
    first = build_report([running.root], tmp_path / "out").report_md.read_text()
    assert "9 ok, 3 partial" in first
    done = make_sweep(tmp_path / "sweep", 12, requests=False)  # the same runs, now finished
    rebuilt = build_report([done.root], tmp_path / "out").report_md.read_text()
    clean = make_sweep(tmp_path / "clean", 12, requests=False)
    expected = build_report([clean.root], tmp_path / "clean_out").report_md.read_text()
    assert "Runs that did not complete" not in rebuilt
    assert rebuilt == expected.replace(str(clean.root), str(done.root))


# --------------------------------------------------------------------------- statistics


def _simulated(rng: random.Random, ratio: float, cells: int, levels: int) -> pd.DataFrame:
    """One run per (cell, level); the factor multiplies the metric by ratio**level."""
    rows = []
    for cell in range(cells):
        scale = math.exp(rng.gauss(0, 1))  # other factors: large effects
        for level in range(levels):
            value = scale * ratio**level * math.exp(rng.gauss(0, 0.1))
            rows.append({"status": "ok", "other": str(cell), "f": str(level), E2E.column: value})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("cells", "levels"), [(3, 2), (8, 2), (6, 4)])
def test_effect_intervals_cover_the_true_ratio(cells: int, levels: int) -> None:
    """Over simulated sweeps with a known ratio, the (simultaneous) intervals hold the
    truth about 95% of the time: not far less (too narrow), not always (too wide)."""
    rng = random.Random(cells * 10 + levels)
    sims, covered = 300, 0
    for _ in range(sims):
        df = _simulated(rng, 0.5, cells, levels)
        effects = factor_effects(df, "f", ["other"], E2E)
        assert all(e.ci_basis == "paired" and e.pairs == cells for e in effects)
        covered += all(
            e.ratio_ci95_low <= 0.5 ** int(e.level) <= e.ratio_ci95_high for e in effects
        )
    rate = covered / sims
    # 300 simulations: a standard error of 1.3 points around 95%; a z instead of a t
    # quantile (2 dof: ~82%) or an unpaired interval (~100%) falls outside.
    assert 0.91 <= rate <= (1.0 if levels > 2 else 0.985), rate


def test_a_factor_without_effect_is_rarely_called_detectable() -> None:
    rng = random.Random(7)
    calls = [
        any(e.detectable for e in factor_effects(_simulated(rng, 1.0, 5, 6), "f", ["other"], E2E))
        for _ in range(200)
    ]
    assert np.mean(calls) <= 0.08  # Bonferroni over 5 comparisons: at most ~5%
