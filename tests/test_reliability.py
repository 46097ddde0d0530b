"""Failures are recorded results, never the end of a sweep; sweeps resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
        [sys.executable, "-m", "runner", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
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
        p for p in sweep.glob("*/result.json")
        if json.loads(p.read_text())["config"]["model"]["path"] == str(models["ok"])
    )
    ok_mtime = ok_file.stat().st_mtime_ns
    failed_mtimes = {
        p: p.stat().st_mtime_ns for p in sweep.glob("*/result.json") if p != ok_file
    }

    second = runner(*args)
    assert second.returncode == 130
    assert ok_file.stat().st_mtime_ns == ok_mtime  # skipped, not rerun
    assert "[skipped]" in second.stdout
    for path, mtime in failed_mtimes.items():
        assert path.stat().st_mtime_ns != mtime  # failed and interrupted jobs ran again
