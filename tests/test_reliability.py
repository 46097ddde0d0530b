"""Failures are recorded results, never the end of a sweep; sweeps resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.faulty import make_faulty_model

REPO = Path(__file__).resolve().parents[1]
# Warmup is 1 call of 1 prefill + 3 decode steps: 4 forwards. Fault inside the measured window.
AFTER = 6
COMMON = [
    "loading=cpu",
    "measure=quick",
    "measure.min_repeats=2",
    "energy=off",
    "workload.num_prompts=2",
    "decoding.max_new_tokens=4",
    "loading.trust_remote_code=true",
]


def runner(*args, timeout=600):
    return subprocess.run(
        [*PYTHON, "-m", "runner", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(sweep: Path) -> dict[str, dict]:
    out = {}
    for path in sweep.glob("*/result.json"):
        data = json.loads(path.read_text())
        out[data["config"]["model"]["path"]] = data
    return out


@pytest.mark.slow
def test_crash_raise_and_sigterm_leave_results_and_the_sweep_finishes(tiny_dir, tmp_path):
    models = {
        fault: make_faulty_model(tiny_dir, tmp_path / fault, fault, AFTER)
        for fault in ("segfault", "raise", "sigterm")
    }
    models["ok"] = make_faulty_model(tiny_dir, tmp_path / "ok", "none", AFTER)
    sweep = tmp_path / "sweep"
    paths = ",".join(str(models[k]) for k in ("segfault", "raise", "sigterm", "ok"))
    args = ["-m", "model=local", f"model.path={paths}", *COMMON, f"hydra.sweep.dir={sweep}"]

    first = runner(*args)
    assert first.returncode == 130, first.stderr[-2000:]  # an interrupted job wins over failed
    by_path = results(sweep)
    assert len(by_path) == 4

    crashed = by_path[str(models["segfault"])]
    assert crashed["status"] == "failed"
    assert crashed["error"]["type"] == "Killed(SIGSEGV)"
    raised = by_path[str(models["raise"])]
    assert raised["status"] == "failed"
    assert raised["error"]["phase"] == "measure"
    assert "injected failure" in raised["error"]["message"]
    assert "Traceback" in raised["error"]["traceback"]
    termed = by_path[str(models["sigterm"])]
    assert termed["status"] == "interrupted"
    assert termed["error"]["phase"] == "measure"
    ok = by_path[str(models["ok"])]
    assert ok["status"] == "ok"
    assert (sweep / "summary.csv").is_file() and (sweep / "report.md").is_file()
    assert "did not finish ok" in first.stderr and "hydra.sweep.dir=" in first.stderr

    ok_file = next(
        p
        for p in sweep.glob("*/result.json")
        if json.loads(p.read_text())["config"]["model"]["path"] == str(models["ok"])
    )
    ok_mtime = ok_file.stat().st_mtime_ns
    failed_mtimes = {p: p.stat().st_mtime_ns for p in sweep.glob("*/result.json") if p != ok_file}

    second = runner(*args)
    assert second.returncode == 130
    assert ok_file.stat().st_mtime_ns == ok_mtime  # skipped, not rerun
    assert "[skipped]" in second.stdout
    for path, mtime in failed_mtimes.items():
        assert path.stat().st_mtime_ns != mtime  # failed and interrupted jobs ran again


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["spawn", "inline"])
def test_sigterm_to_the_runner_records_interrupted_and_exits_nonzero(tiny_dir, tmp_path, isolation):
    import signal
    import time

    marker = tmp_path / "measuring"
    model = make_faulty_model(tiny_dir, tmp_path / "slow", "slow", AFTER, marker)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *PYTHON,
            "-m",
            "runner",
            "model=local",
            f"model.path={model}",
            *COMMON,
            "measure.min_repeats=1000",
            "energy=codecarbon",
            "energy.baseline_seconds=0",
            f"measure.isolation={isolation}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # some requests measured
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted"
    assert result["error"]["phase"] == "measure"
    assert result["metrics"]["requests"] > 0  # what was measured is kept
    assert (run_dir / "requests.parquet").is_file()
    assert result["energy"] is not None and result["energy"]["window_seconds"] > 0
    assert list(run_dir.glob("emissions*.csv"))  # the tracker was stopped and flushed


@pytest.mark.slow
def test_hub_token_never_reaches_results_logs_or_saved_config(tmp_path):
    import os

    secret = "hf_SECRETtoken1234567890"
    env = {**os.environ, "HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret}
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", "model=tiny", *COMMON[:-1], f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert secret not in proc.stdout + proc.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore"), path
