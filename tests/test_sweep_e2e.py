"""The documented sweep leaves one directory with every run, the summary, the report and plots."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PYTHON

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quant_by_compile_sweep_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            *PYTHON,
            "-m",
            "runner",
            "-m",
            "model=tiny",
            "quant=none,nf4",
            "compile=off,on",
            "measure=quick",
            "measure.min_seconds=1",  # CodeCarbon's sampling interval: energy is resolved
            "workload.num_prompts=2",
            "decoding.max_new_tokens=8",
            "energy.baseline_seconds=1",
            "measure.isolation=inline",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent.name for p in sweep.glob("*/result.json"))
    assert runs == [
        "compile=off,quant=nf4",
        "compile=off,quant=none",
        "compile=on,quant=nf4",
        "compile=on,quant=none",
    ]
    for name in ("summary.csv", "summary.parquet", "report.md"):
        assert (sweep / name).stat().st_size > 0
    plots = sorted((sweep / "plots").glob("*.png"))
    assert {p.stem for p in plots} >= {
        "pareto_energy_latency",
        "main_effects_e2e_ms_mean",
        "interaction_e2e_ms_mean",
        "latency_distributions",
        "pareto_energy_perplexity",
        "main_effects_perplexity",
    }
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG and plot.stat().st_size > 1000

    results = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    baselines = [r["energy"]["baseline"] for r in results]
    measured = [b for b in baselines if not b["cached"]]
    assert len(measured) == 1  # one idle baseline per sweep and machine, reused by the rest
    assert {b["measured_by"] for b in baselines} == {measured[0]["measured_by"]}
    assert all(b["age_seconds"] >= 0 and b["watts"] == measured[0]["watts"] for b in baselines)
    for r in results:  # where each point's time went
        assert set(r["metrics"]["phase_seconds"]) >= {"config", "baseline", "load", "measure"}

    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert table["energy_per_token_mj_gross"].notna().all()
    # the headline rate is each run's total tokens over its total measured time
    for r in results:
        row = table[table["run_id"] == r["run_id"]].iloc[0]
        assert row["output_tok_s"] == r["metrics"]["throughput"]["output_tokens_per_second"]
        assert row["output_tok_s"] == pytest.approx(
            r["metrics"]["output_tokens"] / r["metrics"]["measured_seconds"], rel=1e-9
        )
    assert table["perplexity"].notna().all() and (table["perplexity_tokens"] > 0).all()
    first = (sweep / "report.md").read_text()

    for name in ("summary.csv", "summary.parquet", "report.md"):
        (sweep / name).unlink()
    again = subprocess.run(
        [*PYTHON, "-m", "runner.report", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (sweep / "summary.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(sweep / "summary.csv"), table)
    assert (sweep / "report.md").read_text() == first


def test_a_job_another_command_is_running_is_not_a_failure(tmp_path):
    """Two commands on one sweep directory: the job whose directory the other holds is
    reported as running elsewhere, and this command exits 0 for it."""
    from runner.job import run_dir_lock

    sweep = tmp_path / "sweep"
    held = sweep / "default"  # a one-point sweep: nothing is swept
    with run_dir_lock(held):  # what the other command holds while it runs the job
        proc = subprocess.run(
            [
                *PYTHON,
                "-m",
                "runner",
                "-m",
                "model=tiny",
                "quant=nf4",
                "energy=off",
                "quality=off",
                f"hydra.sweep.dir={sweep}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[running elsewhere] default: another process is running this job" in proc.stdout
    assert "[failed]" not in proc.stdout + proc.stderr
    assert not (held / "result.json").exists()  # this command wrote nothing there
