"""A real search on the tiny model: stopped by SIGINT, resumed, read back from Optuna's
export, the report and a real MLflow store; and the bare ``hydra/sweeper=optuna`` schema
optimizing the one value the task returns."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, TINY

REPO = Path(__file__).resolve().parents[1]
FACTORS = ["quant=choice(none,nf4)", "workload.batch_size=range(1,4)"]
OBJECTIVES = "search.objectives=[e2e_ms_mean:minimize,output_tok_s:maximize]"


def _command(sweep: Path, *extra: str) -> list[str]:
    return [
        *PYTHON, "-m", "runner", "-m", "hydra/sweeper=pareto", "hydra.sweeper.n_trials=3",
        *FACTORS, *TINY, "workload.num_prompts=3", "measure.isolation=inline",
        "measure.min_seconds=4", OBJECTIVES,
        "tracking=mlflow",
        f"hydra.sweep.dir={sweep}", *extra,
    ]  # fmt: skip


def _running(sweep: Path) -> list[Path]:
    """Jobs that started (the tracking callback wrote their pointer) and have no result."""
    if not sweep.is_dir():
        return []
    return [
        d
        for d in sweep.iterdir()
        if (d / "tracking.json").is_file() and not (d / "result.json").exists()
    ]


@pytest.mark.slow
def test_search_stopped_by_sigint_resumes_and_is_tracked(tmp_path):
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "search"
    proc = subprocess.Popen(_command(sweep), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 600
    while proc.poll() is None and not (list(sweep.glob("*/result.json")) and _running(sweep)):
        assert time.time() < deadline
        time.sleep(0.2)
    # A later trial's job started (tracking.json, no result yet) and measures for 4 s.
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    trials = json.loads((sweep / "search.json").read_text())["trials"]
    assert [(t["state"], t["status"]) for t in trials[:-1]] == [("COMPLETE", "ok")] * (
        len(trials) - 1
    )
    stopped = trials[-1]
    assert (stopped["state"], stopped["status"]) == ("FAIL", "interrupted")
    assert json.loads((Path(stopped["run_dir"]) / "result.json").read_text())["status"] == (
        "interrupted"
    )

    again = subprocess.run(_command(sweep), cwd=REPO, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    trials = json.loads((sweep / "search.json").read_text())["trials"]
    n = [t["number"] for t in trials].index(stopped["number"])  # repeats are listed apart
    assert len(trials) == 4 and trials[n]["state"] == "FAIL"
    assert trials[n + 1]["params"] == stopped["params"]  # the interrupted point, asked again
    measured = [tuple(sorted(t["params"].items())) for t in trials if t["state"] == "COMPLETE"]
    assert len(set(measured)) == len(measured) == 3  # n_trials distinct points
    others = [t for t in trials if t["number"] != stopped["number"]]
    assert all(t["state"] == "COMPLETE" and t["status"] == "ok" for t in others)
    assert trials[0]["pareto"] or any(t["pareto"] for t in trials)
    for t in trials:
        assert 1 <= t["params"]["workload.batch_size"] <= 3  # range(1,4) as Hydra reads it
    report = (sweep / "report.md").read_text()
    assert "## Search" in report and "### Trials in order" in report and "★" in report
    # MLflow's copies of each result (.mlartifacts/) are not runs: each run counted once
    run_dirs = {p.parent for p in sweep.glob("*/result.json")}
    assert len(list(sweep.glob(".mlartifacts/**/result.json"))) >= len(run_dirs)
    assert f"{len(run_dirs)} runs from `{sweep}`" in report

    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("llm-sweep-runner").experiment_id])
    parents = [r for r in runs if r.data.tags.get("runner.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("runner.kind") == "job"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    stopped_dir = Path(stopped["run_dir"]).name
    killed = [r.info.run_name for r in jobs if r.info.status == "KILLED"]
    finished = {r.info.run_name for r in jobs if r.info.status == "FINISHED"}
    assert killed == [stopped_dir]
    # one run per measured result: a point sampled twice is skipped, not logged twice
    assert finished == {Path(t["run_dir"]).name for t in trials if t["state"] == "COMPLETE"}
    assert len(jobs) == len(finished) + 1


@pytest.mark.slow
def test_the_bare_optuna_schema_optimizes_one_objective(tmp_path):
    """hydra/sweeper=optuna: TPE, a study in memory, direction minimize; the task returns a
    float."""
    sweep = tmp_path / "optuna"
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", "-m", "hydra/sweeper=optuna",
         "hydra.sweeper.n_trials=2", "workload.batch_size=range(1,3)",
         *TINY, "measure.isolation=inline", "search.objectives=[peak_mem_mib:minimize]",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    search = json.loads((sweep / "search.json").read_text())
    assert search["sampler"] == "TPESampler"
    trials = search["trials"]
    assert sorted(t["params"]["workload.batch_size"] for t in trials) == [1, 2]
    for t in trials:
        data = json.loads((Path(t["run_dir"]) / "result.json").read_text())
        assert t["values"] == pytest.approx([data["metrics"]["memory"]["peak_bytes"] / 2**20])
