"""Sweeps on a real Slurm cluster (tests/slurm/cluster.sh, started by the ``slurm_cluster``
fixture): a job array, preemption and requeue, time limits, cancelled and killed jobs, a
node set down, resuming, and the request check before submitting.

Every job runs this checkout's code with this interpreter (the sbatch script runs
``<sys.executable> -m submitit.core._submit`` in the submitting directory, the repository).
The cluster's one node is this machine; the jobs ask for 1 CPU and 2 GB each, so two run
at once on a 2-core machine. The node has one CPU slot more than the machine: the time-limit
test's job waits in it, for two one-minute attempts, while the cancelled-and-killed test
runs beside it (tests/slurm/cluster.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.lockfile import install_record
from runner.slurm.stops import RAISE_TIMEOUT, TIME_LIMIT
from runner.stop import PARK_ENV
from tests.conftest import PYTHON, TINY

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
# The tiny run, energy chosen per test.
POINT = [o for o in TINY if not o.startswith("energy=")]
ENERGY = ["energy=codecarbon", "energy.baseline_seconds=0"]
OFF = ["energy=off"]


def _launcher(cluster, *extra: str) -> list[str]:
    return [
        "hydra/launcher=slurm-cpu",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _sweep(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PYTHON, "-m", "runner", "-m", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(
            [*PYTHON, "-m", "runner", "-m", *args],
            cwd=REPO,
            env=_env(**env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _finish(proc: subprocess.Popen, log: Path, timeout: float) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, log.read_text()


def _result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def _wait_until(what: str, check, timeout: float = 180.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"waited {timeout:g} s for {what}")


def _measuring(run_dir: Path) -> bool:
    log = run_dir / "run.log"
    return log.is_file() and "measuring:" in log.read_text()


def _job_id(sweep: Path) -> str:
    """The sweep's (array) job id: submitit's folder named by it alone."""
    return _wait_until(
        "the submission",
        lambda: (
            next((p.name for p in (sweep / ".submitit").glob("*") if p.name.isdigit()), None)
            if (sweep / ".submitit").is_dir()
            else None
        ),
        timeout=60,
    )


def _slurm(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def _sacct(job: str) -> list[tuple[str, str]]:
    """(JobID, State) of every attempt of the job's allocations (steps left out), once
    accounting has caught up with the job's end (it lags the job by a few seconds)."""

    def lines() -> list[tuple[str, ...]] | None:
        out = _slurm("sacct", "-j", job, "-X", "-n", "-P", "--duplicates", "-o", "JobID,State")
        found = [tuple(line.split("|")) for line in out.splitlines() if line.strip()]
        busy = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED"}
        last = {}
        for job_id, state in found:
            last[job_id] = state
        return found if found and not busy & set(last.values()) else None

    found = _wait_until(f"sacct to record the end of job {job}", lines, timeout=60, every=1)
    print(f"sacct -j {job} -X --duplicates:", *("|".join(x) for x in found), sep="\n  ")
    return found


def _only_run_dir(sweep: Path) -> Path:
    """The run directory of a one-point sweep, once it exists."""
    return _wait_until(
        "the run directory",
        lambda: next((p.parent for p in sweep.glob("*/run.log")), None),
        timeout=120,
    )


# --------------------------------------------------------------------------- array sweep


def test_sweep_runs_as_a_job_array(slurm_cluster, tmp_path):
    sweep = tmp_path / "grid"
    setup = 'hydra.launcher.setup=["export RUNNER_TEST_SETUP=1"]'
    proc = _sweep(
        [
            *_launcher(slurm_cluster, setup, '+hydra.launcher.srun_args=["--cpu-bind=none"]'),
            *POINT,
            *ENERGY,
            "decoding=greedy,sample",
            "repeat.count=2",  # each point twice, interleaved: four tasks of one array
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert [r.name for r in runs] == [
        f"decoding={d},repeat.index={i}" for d in ("greedy", "sample") for i in (0, 1)
    ], sorted(p.name for p in sweep.iterdir())
    results = [_result(r) for r in runs]
    assert [r["status"] for r in results] == ["ok"] * 4
    assert [r["config"]["repeat"]["index"] for r in results] == [0, 1, 0, 1]
    for name in ("summary.csv", "report.md", "repeats.csv", "repeat_order.json"):
        assert (sweep / name).is_file(), name
    assert "## Repeats" in (sweep / "report.md").read_text()
    assert any((sweep / "plots").iterdir())

    # One array job, four tasks, and Slurm's accounting agrees.
    envs = [r["environment"] for r in results]
    (array,) = {e["slurm_array_job_id"] for e in envs}
    assert sorted(e["slurm_array_task_id"] for e in envs) == ["0", "1", "2", "3"]
    assert dict(_sacct(array)) == {f"{array}_{i}": "COMPLETED" for i in range(4)}

    # What was submitted: the preset's fields, the setup line, this interpreter.
    text = (sweep / ".submitit" / array / f"{array}_submission.sh").read_text()
    for line in (
        "#SBATCH --array=0-3%4",
        f"#SBATCH --partition={slurm_cluster.partition}",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2GB",
        "#SBATCH --time=60",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --requeue",
        "export RUNNER_TEST_SETUP=1",
    ):
        assert line in text.splitlines(), f"{line!r} not in\n{text}"
    assert "--gpus-per-node" not in text
    (srun,) = [ln for ln in text.splitlines() if ln.startswith("srun ")]
    assert " --cpu-bind=none " in srun
    assert srun.endswith(f"{sys.executable} -u -m submitit.core._submit {sweep}/.submitit/%j")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    if commit.returncode == 0:  # the jobs ran this checkout
        assert {e["git_commit"] for e in envs} == {commit.stdout.decode().strip()}
    # How the jobs' environment was installed (lock or ranges) is in every result.
    assert [e["install"] for e in envs] == [install_record()] * len(envs)

    # Two 1-CPU jobs at a time on the node: recorded, and their CPU/RAM energy marked.
    shares = [e["slurm_node_share"] for e in envs]
    assert all(s["job_cpus"] == 1 and s["exclusive"] is False for s in shares)
    assert all(s["node_cpus"] >= 1 and s["node"] == slurm_cluster.node for s in shares)
    shared = [r for r, s in zip(results, shares, strict=True) if s["node_to_itself"] is False]
    assert shared, shares
    for r in shared:
        assert r["energy"]["components"]["cpu"]["node_shared"] is True
        assert r["energy"]["components"]["ram"]["node_shared"] is True
        assert any("whole node" in w for w in r["energy"]["warnings"])


# --------------------------------------------------------------------------- preemption


def test_preempted_job_is_requeued_and_measures_again(slurm_cluster, tmp_path):
    """scancel --signal=USR2 mid-measurement: recorded as interrupted, submitit requeues,
    the requeued job measures the point again and ends ok, its restart count recorded.
    The job asks for its node alone, so its CPU/RAM energy is not marked shared."""
    sweep = tmp_path / "preempt"
    log = tmp_path / "preempt.log"
    exclusive = "+hydra.launcher.additional_parameters.exclusive=true"
    proc = _start(
        [
            *_launcher(slurm_cluster, exclusive),
            *POINT,
            *ENERGY,
            "measure.min_seconds=5",
            f"hydra.sweep.dir={sweep}",
        ],
        log,
    )
    try:
        run_dir = _only_run_dir(sweep)
        _wait_until("the measurement", lambda: _measuring(run_dir))
        job = _job_id(sweep)
        _slurm("scancel", "--signal=USR2", job)
        first = _wait_until(
            "the interrupted result",
            lambda: (run_dir / "result.json").is_file() and _result(run_dir),
            timeout=60,
        )
    finally:
        code, out = _finish(proc, log, timeout=400)
    assert first["status"] == "interrupted", first["error"]
    assert first["error"]["phase"] == "measure"
    assert "preempted" in first["error"]["message"], first["error"]
    assert first["environment"]["slurm_restart_count"] == 0

    assert code == 0, out[-4000:]
    final = _result(run_dir)
    assert final["status"] == "ok", final["error"]
    assert final["environment"]["slurm_restart_count"] == 1
    assert final["environment"]["slurm_job_id"] == job
    assert final["config_hash"] == first["config_hash"]
    assert final["metrics"]["repeats"] >= 1
    node = final["environment"]["slurm_node_share"]
    assert node["exclusive"] is True and node["node_to_itself"] is True
    assert final["energy"]["components"]["cpu"]["node_shared"] is False
    assert [state for _, state in _sacct(job)] == ["REQUEUED", "COMPLETED"]


# --------------------------------------------------------------------------- lost jobs, resume


def test_cancelled_and_killed_jobs_leave_results_and_a_rerun_resubmits_only_them(
    slurm_cluster, tmp_path, time_limit_sweep
):
    """Of three points, one is cancelled (scancel: SIGTERM) and one killed outright (SIGKILL
    to its step, as the out-of-memory killer would) mid-measurement; the third ends ok. Each
    leaves a result and the sweep exits 130; rerunning it submits only the two others.

    The time-limit test's sweep waits in the node's spare CPU slot meanwhile (it is started
    by ``time_limit_sweep``, checked by the next test)."""
    sweep = tmp_path / "lost"
    log = tmp_path / "lost.log"
    args = [
        *_launcher(slurm_cluster),
        *POINT,
        *OFF,
        "measure.min_seconds=8",
        "workload.num_prompts=3",  # a pass holds the largest batch
        "workload.batch_size=1,2,3",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = _start(args, log)
    # Array tasks 0 and 1 start first (two 1-CPU jobs fit the node); 2 waits for a slot.
    cancelled, killed, done = (sweep / f"workload.batch_size={b}" for b in (1, 2, 3))
    try:
        _wait_until("two points measuring", lambda: _measuring(cancelled) and _measuring(killed))
        array = _job_id(sweep)
        _slurm("scancel", f"{array}_0")
        _slurm("scancel", "--signal=KILL", f"{array}_1.0")
    finally:
        code, out = _finish(proc, log, timeout=300)
    states = dict(_sacct(array))
    assert code == 130, out[-4000:]
    stopped, lost = _result(cancelled), _result(killed)
    assert stopped["status"] == "interrupted" and "stopped by Slurm" in stopped["error"]["message"]
    assert stopped["error"]["phase"] == "measure"
    assert states[f"{array}_0"].startswith("CANCELLED")
    assert lost["status"] == "failed", lost["error"]
    assert lost["error"]["type"] == "JobLost" and "FAILED" in lost["error"]["message"]
    assert states[f"{array}_1"] == "FAILED"
    assert _result(done)["status"] == "ok" and states[f"{array}_2"] == "COMPLETED"
    assert "2 of 3 job(s) did not finish ok" in out

    ok_mtime = (done / "result.json").stat().st_mtime_ns
    again = _sweep(args, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("[skipped]") == 1
    assert (done / "result.json").stat().st_mtime_ns == ok_mtime
    assert [_result(p)["status"] for p in (cancelled, killed)] == ["ok", "ok"]
    (second,) = {_result(p)["environment"]["slurm_array_job_id"] for p in (cancelled, killed)}
    assert second != array
    assert _sacct(second) == [(f"{second}_0", "COMPLETED"), (f"{second}_1", "COMPLETED")]


# --------------------------------------------------------------------------- time limit


@dataclass
class Started:
    proc: subprocess.Popen
    log: Path
    sweep: Path
    parked: Path


@pytest.fixture(scope="module")
def time_limit_sweep(slurm_cluster, tmp_path_factory):
    """The time-limit test's sweep, started before the test that runs beside it: its job
    spends two one-minute attempts waiting (no CPU used), in the node's spare CPU slot."""
    root = tmp_path_factory.mktemp("limit")
    sweep, parked, log = root / "limit", root / "parked", root / "limit.log"
    args = [
        *_launcher(
            slurm_cluster, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5"
        ),
        *POINT,
        *OFF,
        "measure.min_seconds=600",
        "measure.max_seconds=600",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = _start(args, log, **{PARK_ENV: f"measure:exception:{parked}"})
    # Submitted before the other test's jobs, so Slurm gives it the first slot.
    job = _job_id(sweep)
    yield Started(proc, log, sweep, parked)
    if proc.poll() is None:
        proc.kill()
        subprocess.run(["scancel", job], check=False)


def test_time_limit_reached_twice_says_to_raise_timeout_min(time_limit_sweep):
    """A 1-minute limit that the measurement cannot meet: the USR2 before the limit is
    recorded, submitit requeues once (max_num_timeout=1), the second time it does not; the
    result says to raise timeout_min and the sweep exits 124.

    Each attempt waits in its measure phase (the stop tests' park, which sbatch passes on
    with the environment) rather than measuring for a minute: Slurm's signals reach it in
    the same phase, and the other tests' jobs get the CPUs for those two minutes."""
    started = time_limit_sweep
    code, out = _finish(started.proc, started.log, timeout=480)
    assert started.parked.is_file()  # the job waited where a measurement would run
    (run_dir,) = [p.parent for p in started.sweep.glob("*/result.json")]
    result = _result(run_dir)
    job = result["environment"].get("slurm_job_id") or _job_id(started.sweep)
    states = [state for _, state in _sacct(job)]
    assert code == 124, out[-6000:]
    assert result["status"] == "interrupted"
    message = result["error"]["message"]
    assert TIME_LIMIT in message and RAISE_TIMEOUT in message, result["error"]
    assert RAISE_TIMEOUT in out
    assert states[0] == "REQUEUED" and len(states) == 2, states
    # The second attempt recorded its own stop (not the first attempt's, left behind).
    assert result["environment"]["slurm_restart_count"] == 1, result["error"]
    assert result["error"]["phase"] == "measure"


# --------------------------------------------------------------------------- node down


def test_job_whose_node_is_set_down_leaves_an_interrupted_result(slurm_cluster, tmp_path):
    """The node is set down mid-measurement. The job (submitted without requeue, so Slurm
    does not run it again) is recorded as interrupted and the sweep exits 130."""
    sweep = tmp_path / "down"
    log = tmp_path / "down.log"
    proc = _start(
        [
            *_launcher(
                slurm_cluster,
                "~hydra.launcher.additional_parameters.requeue",
                "+hydra.launcher.additional_parameters.no-requeue=true",
            ),
            *POINT,
            *OFF,
            "measure.min_seconds=60",
            f"hydra.sweep.dir={sweep}",
        ],
        log,
    )
    node = slurm_cluster.node
    try:
        run_dir = _only_run_dir(sweep)
        _wait_until("the measurement", lambda: _measuring(run_dir))
        job = _job_id(sweep)
        _slurm("scontrol", "update", f"nodename={node}", "state=down", "reason=runner-test")
        code, out = _finish(proc, log, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)
        _wait_until(
            "the node back",
            lambda: _slurm("sinfo", "-h", "-n", node, "-o", "%t").strip() in ("idle", "mix"),
            timeout=120,
            every=1,
        )
    states = [state for _, state in _sacct(job)]
    assert code == 130, out[-4000:]
    result = _result(run_dir)
    assert result["status"] == "interrupted", result["error"]
    assert result["error"]["phase"] == "measure"
    assert states == ["NODE_FAIL"]


# --------------------------------------------------------------------------- request check


def _node_record(cluster) -> dict[str, str]:
    from runner.slurm.scontrol import show

    (node,) = show("node", cluster.node)
    return node


@pytest.mark.parametrize(
    ("preset", "field"),
    [("slurm", "gpus_per_node"), ("slurm-cpu", "mem_gb"), ("slurm-cpu", "cpus_per_task")],
)
def test_request_no_node_can_run_is_refused_before_submitting(
    slurm_cluster, tmp_path, preset, field
):
    node = _node_record(slurm_cluster)
    too_much = {
        "gpus_per_node": [],  # the preset's 1 GPU: the test cluster has none
        "mem_gb": [f"hydra.launcher.mem_gb={int(node['RealMemory']) // 1024 + 1}"],
        "cpus_per_task": [f"hydra.launcher.cpus_per_task={int(node['CPUTot']) + 1}"],
    }[field]
    fits = {"mem_gb": "hydra.launcher.mem_gb=2", "cpus_per_task": "hydra.launcher.cpus_per_task=1"}
    others = [v for k, v in fits.items() if k != field]
    proc = _sweep(
        [
            f"hydra/launcher={preset}",
            f"hydra.launcher.partition={slurm_cluster.partition}",
            *others,
            *too_much,
            *POINT,
            *OFF,
            "quant=none,nf4",
            f"hydra.sweep.dir={tmp_path / 'never'}",
        ],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: hydra.launcher.{field}="), lines
    assert f"partition {slurm_cluster.partition}" in lines[0]
    assert not (tmp_path / "never").exists()  # nothing submitted
