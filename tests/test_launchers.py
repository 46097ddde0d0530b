"""The submitit launcher presets, without a cluster (tests/test_slurm.py runs them on one).

- ``hydra/launcher=local`` runs a two-point sweep end to end, one job at a time (slow).
- ``hydra/launcher=slurm`` and ``local`` compose to the expected fields (``--cfg hydra``).
- A run stopped by SIGUSR2 is recorded before submitit's handler takes over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PYTHON, TINY

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _runner(args: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PYTHON, "-m", "runner", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def _result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def _run_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/result.json"))


# --------------------------------------------------------------------------- local preset


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("local-sweep")
    t0 = time.monotonic()
    proc = _runner(
        ["-m", "hydra/launcher=local", *TINY, "quant=none,nf4", f"hydra.sweep.dir={sweep}"],
        timeout=600,
    )
    return sweep, proc, time.monotonic() - t0


@pytest.mark.slow
def test_local_preset_runs_a_sweep_end_to_end(local_sweep):
    sweep, proc, seconds = local_sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = _run_dirs(sweep)
    assert len(runs) == 2, sorted(p.name for p in sweep.iterdir())
    results = [_result(r) for r in runs]
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert sorted(
        r["requested"]["from_pretrained"].get("quantization_config") is None for r in results
    ) == [False, True]
    for name in ("summary.csv", "report.md"):
        assert (sweep / name).is_file(), name
    # Each job ran in its own submitit process: one result pickle per job, no stray folder
    # (submitit's default pattern .submitit/%j leaves one literally named "%j").
    assert len(list(sweep.glob(".submitit/*_result.pkl"))) == 2
    assert not [p for p in sweep.rglob("*") if p.is_dir() and "%" in p.name]
    # Each job's summary on the terminal, as with the basic launcher (not only in its log).
    assert proc.stdout.count("[ok] tiny-llama") == 2, proc.stdout[-3000:]
    for run in runs:
        assert f"-> {run}/result.json" in proc.stdout


@pytest.mark.slow
def test_local_preset_runs_one_job_at_a_time(local_sweep):
    sweep, proc, _ = local_sweep
    assert proc.returncode == 0
    spans = sorted((r["started_at"], r["finished_at"]) for r in map(_result, _run_dirs(sweep)))
    assert len(spans) == 2
    # ISO timestamps (seconds) compare as strings: the second job starts after the first ends.
    assert spans[1][0] >= spans[0][1], spans


@pytest.mark.slow
def test_local_preset_exits_1_when_a_job_failed(tmp_path):
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # passes the command check, fails to load
    args = [*(o for o in TINY if o != "model=tiny"), "model=local", f"model.path={broken}"]
    proc = _runner(
        ["-m", "hydra/launcher=local", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        timeout=300,
    )
    assert [_result(r)["status"] for r in _run_dirs(tmp_path / "sweep")] == ["failed"]
    assert proc.returncode == 1


# --------------------------------------------------------------------------- slurm preset

EXPECTED_SLURM = {
    "_target_": "hydra_plugins.runner_launcher.launcher.SlurmLauncher",
    "submitit_folder": "${hydra.sweep.dir}/.submitit/%j",
    "name": "${hydra.job.name}",
    "nodes": 1,
    "tasks_per_node": 1,
    "gpus_per_node": 1,
    "gpus_per_task": None,
    "gres": None,
    "cpus_per_task": 8,
    "cpus_per_gpu": None,
    "mem_gb": 64,
    "mem_per_gpu": None,
    "mem_per_cpu": None,
    "timeout_min": 60,
    "partition": None,
    "account": None,
    "qos": None,
    "constraint": None,
    "exclude": None,
    "comment": None,
    "signal_delay_s": 120,
    "max_num_timeout": 1,
    "array_parallelism": 16,
    "additional_parameters": {"requeue": True},
    "setup": [],
    "stderr_to_stdout": False,
}

EXPECTED_LOCAL = {
    "_target_": "hydra_plugins.runner_launcher.launcher.LocalLauncher",
    "submitit_folder": "${hydra.sweep.dir}/.submitit",
    "name": "${hydra.job.name}",
    "nodes": 1,
    "tasks_per_node": 1,
    "gpus_per_node": 1,
    "cpus_per_task": None,
    "mem_gb": None,
    "timeout_min": 120,
    "stderr_to_stdout": False,
}


@pytest.mark.parametrize(
    ("preset", "expected"), [("slurm", EXPECTED_SLURM), ("local", EXPECTED_LOCAL)]
)
def test_launcher_preset_composes(preset, expected):
    proc = _runner([f"hydra/launcher={preset}", "--cfg", "hydra", "-p", "hydra.launcher"], 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load(proc.stdout) == expected


def test_slurm_preset_skips_machine_rules_on_a_login_node(monkeypatch, tmp_path):
    """No GPU here: loading=cuda is refused locally, accepted for jobs that run elsewhere."""
    from runner.config.validate import Facts
    from runner.preflight import check_command
    from runner.preflight_messages import UserError

    # No cluster to check the request against (test_slurm.py checks it on one).
    from runner.slurm import request

    monkeypatch.setattr(request, "check", lambda launcher: None)

    point = ["-m", *(o for o in TINY if not o.startswith("loading=")), "loading=cuda"]
    point.append("quant=none,nf4")
    with pytest.raises(UserError, match="loading.device_map"):
        check_command(point, Facts(cuda_available=False))
    assert check_command([*point, "hydra/launcher=slurm"], Facts(cuda_available=False)) == 2


@pytest.mark.parametrize("missing", ["no controller", "no slurm"])
def test_a_sweep_for_slurm_where_slurm_cannot_be_reached_is_one_line(
    monkeypatch, tmp_path, missing
):
    from runner.config.validate import Facts
    from runner.preflight import check_command
    from runner.preflight_messages import UserError

    if missing == "no controller":
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-cluster.conf"))
        why = "no-cluster.conf does not exist"
    else:
        monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol, no sbatch
        why = "scontrol not found on PATH"
    sweep = tmp_path / "sweep"
    command = ["-m", *TINY, "quant=none,nf4", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}"]
    with pytest.raises(UserError) as info:
        check_command(command, Facts(cuda_available=False))
    message = str(info.value)
    assert message.startswith("hydra/launcher: Slurm cannot be reached from here (")
    assert why in message and "\n" not in message
    assert not sweep.exists()  # refused before anything is written


def test_sigusr2_is_recorded_as_interrupted_before_submitit_requeues(compose, tmp_path):
    import runner.run as run_module

    cfg = compose(TINY)
    seen: list[str | None] = []

    def submitit_like(signum, frame):  # checkpoint + `scontrol requeue`, then exit
        path = tmp_path / "result.json"
        seen.append(json.loads(path.read_text())["status"] if path.exists() else None)
        raise SystemExit(-1)

    def measure(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(5)  # the signal arrives during the measurement
        raise AssertionError("SIGUSR2 did not stop the run")

    old = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(run_module, "_measure", measure)
            with pytest.raises(SystemExit):
                run_module.run(cfg, tmp_path, ["quant=none"], "hash")
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert seen == ["interrupted"]  # recorded before submitit took over
    assert _result(tmp_path)["status"] == "interrupted"
