"""The submitit launcher presets, without a cluster.

- ``hydra/launcher=local`` runs a two-point sweep end to end (slow).
- ``hydra/launcher=slurm`` composes to the expected fields (snapshot of ``--cfg hydra``).
- A fake Slurm: submitit's real ``SlurmExecutor`` writes the real sbatch script and job
  pickles, but ``sbatch`` is ``echo`` and ``srun`` detection is patched, so nothing is
  submitted. The tests read what would have been submitted, then run the pickled jobs the
  way ``srun`` would (``python -m submitit.core._submit``), including a SIGUSR2 before the
  time limit that makes submitit checkpoint and requeue (``scontrol`` is a stub).

This file is also the fake-Slurm driver: ``python tests/test_launchers.py RECORD ARGS...``
runs ``python -m runner ARGS...`` with the patches above, recording the submitit executor's
parameters as JSON in RECORD.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]

FAKE_JOB_ID = "4242"  # what the fake sbatch answers
SETUP = ["module load cuda/12.4", "export RUNNER_TEST_SETUP=1"]
SRUN_ARGS = ["--cpu-bind=none"]
# What srun sets for the one task of a job (plus the ids set per job below).
SLURM_ENV = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _runner(args: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
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
    assert seconds < 300


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
    "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
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
    "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
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


def test_slurm_preset_skips_machine_rules_on_a_login_node():
    """No GPU here: loading=cuda is refused locally, accepted for jobs that run elsewhere."""
    from runner.config.validate import Facts
    from runner.preflight import UserError, check_command

    point = ["-m", *(o for o in TINY if not o.startswith("loading=")), "loading=cuda"]
    point.append("quant=none,nf4")
    with pytest.raises(UserError, match="loading.device_map"):
        check_command(point, Facts(cuda_available=False))
    assert check_command([*point, "hydra/launcher=slurm"], Facts(cuda_available=False)) == 2


@pytest.fixture(scope="module")
def fake_slurm_sweep(tmp_path_factory):
    """Submit a two-point tiny sweep to the fake Slurm; nothing runs."""
    sweep = tmp_path_factory.mktemp("slurm-sweep")
    record = sweep.parent / f"{sweep.name}-executor.json"
    args = [
        "-m",
        "hydra/launcher=slurm",
        *TINY,
        "quant=none,nf4",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.setup=[" + ",".join(json.dumps(s) for s in SETUP) + "]",
        "+hydra.launcher.srun_args=[" + ",".join(json.dumps(s) for s in SRUN_ARGS) + "]",
    ]
    proc = subprocess.run(
        [sys.executable, __file__, str(record), *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    # No job ran, so the exit code may say so; what matters is what was submitted.
    assert record.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep, json.loads(record.read_text())


def test_slurm_submission_has_the_configured_parameters(fake_slurm_sweep):
    sweep, executor = fake_slurm_sweep
    assert executor["cluster"] == "slurm"
    assert executor["init"] == {"folder": f"{sweep}/.submitit/%j", "slurm_max_num_timeout": 1}
    params = executor["parameters"]
    assert params["gpus_per_node"] == 1
    assert params["tasks_per_node"] == 1 and params["nodes"] == 1
    assert params["cpus_per_task"] == 8 and params["mem_gb"] == 64
    assert params["timeout_min"] == 60
    assert params["slurm_signal_delay_s"] == 120
    assert params["slurm_array_parallelism"] == 16
    assert params["slurm_additional_parameters"] == {"requeue": True}
    assert params["slurm_setup"] == SETUP
    assert params["slurm_srun_args"] == SRUN_ARGS
    assert params["name"] == "runner"
    assert params["slurm_partition"] is None and params["slurm_account"] is None
    assert executor["jobs"] == 2

    # The sbatch script submitit generated from them.
    (script,) = sweep.glob(f".submitit/{FAKE_JOB_ID}/{FAKE_JOB_ID}_submission.sh")
    text = script.read_text()
    for line in (
        "#SBATCH --array=0-1%2",  # two points, at most array_parallelism at once
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --time=60",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --requeue",
        "#SBATCH --job-name=runner",
        *SETUP,
    ):
        assert line in text.splitlines(), f"{line!r} not in\n{text}"
    assert "--partition" not in text and "--account" not in text
    (srun,) = [ln for ln in text.splitlines() if ln.startswith("srun ")]
    assert " --cpu-bind=none " in srun and srun.endswith(
        "-m submitit.core._submit " + f"{sweep}/.submitit/%j"
    )
    assert text.index("module load cuda/12.4") < text.index("srun ")


def test_slurm_requeue_resubmits_the_same_point(fake_slurm_sweep):
    """Hydra's launcher is checkpointable: a requeue reruns the job with the same overrides."""
    import submitit
    from submitit.core.utils import DelayedSubmission

    sweep, _ = fake_slurm_sweep
    points = []
    for task in (0, 1):
        job = f"{FAKE_JOB_ID}_{task}"
        delayed = DelayedSubmission.load(sweep / ".submitit" / job / f"{job}_submitted.pkl")
        assert delayed._timeout_min == 60 and delayed._timeout_countdown == 1
        overrides, dir_key, job_num = delayed.args[:3]
        assert dir_key == "hydra.sweep.dir" and job_num == task
        requeued = delayed.function.checkpoint(*delayed.args, **delayed.kwargs)
        assert isinstance(requeued, submitit.helpers.DelayedSubmission)
        assert requeued.function is delayed.function
        assert requeued.args[:3] == delayed.args[:3]
        points.append([o for o in overrides if o.startswith("quant=")])
    assert points == [["quant=none"], ["quant=nf4"]]


def _point_of(sweep: Path, task: int) -> str:
    from submitit.core.utils import DelayedSubmission

    job = f"{FAKE_JOB_ID}_{task}"
    delayed = DelayedSubmission.load(sweep / ".submitit" / job / f"{job}_submitted.pkl")
    return next(o for o in delayed.args[0] if o.startswith("quant="))


def _run_dir_of(sweep: Path, point: str) -> Path:
    """The job's directory: its name lists the swept overrides, ``point`` among them."""
    (found,) = [p for p in sweep.iterdir() if p.is_dir() and point in p.name.split(",")]
    return found


def _run_job(sweep: Path, task: int, env: dict[str, str], usr2_when: str | None = None):
    """Run one pickled array task as `srun` would (same environment as the submission);
    optionally SIGUSR2 it once ``usr2_when`` appears in its run.log.
    Returns (exit code, run directory)."""
    point = _point_of(sweep, task)
    env = _env(
        **env,
        **SLURM_ENV,
        SLURM_JOB_ID=str(int(FAKE_JOB_ID) + 1 + task),  # kept across requeues, as in Slurm
        SLURM_ARRAY_JOB_ID=FAKE_JOB_ID,
        SLURM_ARRAY_TASK_ID=str(task),
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "submitit.core._submit", f"{sweep}/.submitit/%j"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if usr2_when is not None:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                logs = [p / "run.log" for p in sweep.iterdir() if point in p.name.split(",")]
                if logs and logs[0].exists() and usr2_when in logs[0].read_text():
                    proc.send_signal(signal.SIGUSR2)
                    break
                time.sleep(0.02)
            else:
                pytest.fail(f"job {task} never logged {usr2_when!r}")
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, _run_dir_of(sweep, point)


@pytest.mark.slow
def test_slurm_job_requeued_by_sigusr2_reruns_then_skips(fake_slurm_sweep, tmp_path):
    """The time-limit signal mid-run: submitit requeues; the requeued job measures the point
    again; once its result is ok, a further requeue (or rerun of the sweep) skips it."""
    sweep, executor = fake_slurm_sweep
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (bin_dir / "scontrol").chmod(0o755)
    # sbatch exports the submitting environment to the job (its default --export=ALL).
    env = dict(executor["environment"], PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    # Attempt 1: SIGUSR2 while the model loads (inside the run).
    code, run_dir = _run_job(sweep, 0, env, usr2_when="loading")
    assert code != 0  # submitit exits after requeueing
    assert calls.read_text().split() == ["requeue", f"{FAKE_JOB_ID}_0"]
    first = _result(run_dir)
    assert first["status"] != "ok"  # "interrupted" once run.py hands SIGUSR2 over (see below)
    assert first["environment"]["slurm_job_id"] == str(int(FAKE_JOB_ID) + 1)
    assert first["environment"]["slurm_array_task_id"] == "0"

    # Attempt 2, the requeued job (same pickle, now the checkpointed submission): runs again.
    code, again = _run_job(sweep, 0, env)
    assert code == 0 and again == run_dir
    second = _result(run_dir)
    assert second["status"] == "ok" and second["config_hash"] == first["config_hash"]

    # Attempt 3: already ok for this config, skipped without touching the result.
    mtime = (run_dir / "result.json").stat().st_mtime_ns
    code, _ = _run_job(sweep, 0, env)
    assert code == 0
    assert (run_dir / "result.json").stat().st_mtime_ns == mtime
    assert "skipping" in (run_dir / "run.log").read_text()

    # While the other job is still "pending": the report over what has finished.
    proc = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep), "-q"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (sweep / "report.md").is_file() and (sweep / "summary.csv").is_file()


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


# --------------------------------------------------------------------------- fake Slurm


def _fake_slurm_main(record: str, argv: list[str]) -> None:
    """``python -m runner ARGV`` with submitit's Slurm executor unable to submit anything."""
    import submitit
    import submitit.slurm.slurm as slurm
    from hydra.core.utils import JobReturn, JobStatus

    # srun "exists"; sbatch answers like Slurm; nothing waits for jobs that never run.
    slurm.SlurmExecutor.affinity = classmethod(lambda cls: 2)
    slurm.SlurmExecutor._make_submission_command = lambda self, path: [
        "echo",
        f"Submitted batch job {FAKE_JOB_ID}",
    ]
    slurm.SlurmJob.results = lambda self: [JobReturn(status=JobStatus.COMPLETED)]

    seen: dict[str, Any] = {}

    class RecordingExecutor(submitit.AutoExecutor):
        def __init__(self, folder, cluster=None, **kwargs):
            seen.update(cluster=cluster, init={"folder": str(folder), **kwargs})
            super().__init__(folder, cluster=cluster, **kwargs)

        def update_parameters(self, **kwargs):
            seen["parameters"] = kwargs
            super().update_parameters(**kwargs)

        def map_array(self, fn, *iterables):
            jobs = super().map_array(fn, *iterables)
            seen["jobs"] = len(jobs)
            seen["environment"] = {k: v for k, v in os.environ.items() if k.startswith("RUNNER_")}
            Path(record).write_text(json.dumps(seen, default=str))
            return jobs

    submitit.AutoExecutor = RecordingExecutor

    from runner.cli import main

    main(argv)


if __name__ == "__main__":
    _fake_slurm_main(sys.argv[1], sys.argv[2:])
