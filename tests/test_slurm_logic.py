"""The Slurm logic that needs no cluster: parsing, the partition check, node sharing, what a
stop or a lost job means, and the exit code. The same paths run for real in test_slurm.py."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from runner.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIME_LIMIT, exit_code
from runner.job import JobOutcome
from runner.lost_jobs import record
from runner.results import RESULT_FILE, RunError, RunResult, Status, write_result
from runner.sections.metrics import Metrics
from runner.slurm import share, stops
from runner.slurm.request import Request, gres_gpus, limit_minutes, problem
from runner.slurm.scontrol import parse_records

# --------------------------------------------------------------------------- records


def test_scontrol_records_keep_values_with_spaces():
    text = (
        "NodeName=n1 CPUTot=64 OS=Linux 6.1.0-18 #1 SMP PREEMPT_DYNAMIC Gres=gpu:a100:4(S:0-1) "
        "Reason=disk full [root@2026] RealMemory=512000\nNodeName=n2 Gres=(null) AllocTRES=\n"
    )
    n1, n2 = parse_records(text)
    assert n1["OS"] == "Linux 6.1.0-18 #1 SMP PREEMPT_DYNAMIC"
    assert n1["Reason"] == "disk full [root@2026]"
    assert n1["RealMemory"] == "512000" and n1["Gres"] == "gpu:a100:4(S:0-1)"
    assert n2 == {"NodeName": "n2", "Gres": "(null)", "AllocTRES": ""}


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("(null)", {}),
        ("gpu:4", {"": 4}),
        ("gpu:a100:4(S:0-1),gpu:v100:2", {"a100": 4, "v100": 2}),
        ("gpu:a100:2(S:0,1),gpu:a100:2(S:2),nic:1", {"a100": 4}),
        ("gpu", {"": 1}),
    ],
)
def test_gres_gpus(gres, gpus):
    assert gres_gpus(gres) == gpus


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("UNLIMITED", None),
        ("60", 60),
        ("30:30", 30.5),
        ("02:00:00", 120),
        ("1-00:00:00", 1440),
        ("2-3", 2 * 1440 + 180),
        ("1-01:30", 1440 + 90),
    ],
)
def test_slurm_time_limits(text, minutes):
    assert limit_minutes(text) == minutes


# --------------------------------------------------------------------------- the request

PARTITIONS = [
    {"PartitionName": "cpu", "Default": "YES", "MaxTime": "UNLIMITED", "MaxNodes": "UNLIMITED"},
    {"PartitionName": "gpu", "Default": "NO", "MaxTime": "02:00:00", "MaxNodes": "1"},
]
NODES = [
    {
        "NodeName": "c1",
        "CPUTot": "16",
        "RealMemory": "64000",
        "Gres": "(null)",
        "Partitions": "cpu",
    },
    {
        "NodeName": "g1",
        "CPUTot": "32",
        "RealMemory": "256000",
        "Gres": "gpu:a100:4(S:0-1)",
        "Partitions": "gpu",
    },
    {"NodeName": "g2", "CPUTot": "8", "RealMemory": "512000", "Gres": "gpu:2", "Partitions": "gpu"},
]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            dict(gpus_per_node=1),
            "hydra.launcher.gpus_per_node=1: no node of partition cpu has GPUs",
        ),
        (
            dict(partition="big"),
            "hydra.launcher.partition=big: no such partition; allowed: cpu, gpu",
        ),
        (
            dict(cpus_per_task=32),
            "hydra.launcher.cpus_per_task=32: the nodes of partition cpu give",
        ),
        (
            dict(mem_gb=64),
            "hydra.launcher.mem_gb=64: the nodes of partition cpu have at most 64000",
        ),
        (dict(partition="gpu", timeout_min=180), "hydra.launcher.timeout_min=180: partition gpu"),
        (
            dict(partition="gpu", nodes=2),
            "hydra.launcher.nodes=2: partition gpu gives a job at most 1",
        ),
        (
            dict(partition="gpu", gpus_per_node=8),
            "hydra.launcher.gpus_per_node=8: the nodes of partition gpu have at most 4 GPUs",
        ),
        (
            dict(partition="gpu", gres="gpu:h100:1"),
            "hydra.launcher.gres=gpu:h100:1: no node of partition gpu has h100 GPUs (Gres); "
            "allowed GPU types: a100, untyped",
        ),
        # Each fits somewhere, not together: 4 GPUs only on g1, 400 GB only on g2.
        (dict(partition="gpu", gpus_per_node=4, mem_gb=400), "hydra.launcher: no 1 node(s)"),
    ],
)
def test_request_that_no_node_can_run_is_named_by_its_field(fields, message):
    found = problem(Request(**fields), PARTITIONS, NODES)
    assert found is not None and found.startswith(message), found
    assert "\n" not in found


@pytest.mark.parametrize(
    "fields",
    [
        dict(cpus_per_task=16, mem_gb=62),
        dict(partition="gpu", gpus_per_node=4, cpus_per_task=8, mem_gb=200, timeout_min=120),
        dict(partition="gpu", gres="gpu:a100:4", tasks_per_node=2, cpus_per_task=16),
        dict(partition="gpu", mem_per_gpu="100G", gpus_per_node=2),
    ],
)
def test_request_that_fits_is_accepted(fields):
    assert problem(Request(**fields), PARTITIONS, NODES) is None


def test_request_without_partition_needs_a_default():
    no_default = [dict(p, Default="NO") for p in PARTITIONS]
    assert problem(Request(), no_default, NODES).startswith(
        "hydra.launcher.partition: not set and the cluster has no default partition"
    )


# --------------------------------------------------------------------------- node sharing


@pytest.mark.parametrize(
    ("facts", "alone"),
    [
        (dict(exclusive=True, other_jobs_at_start=[], other_jobs_at_end=[]), True),
        (dict(job_cpus=2, node_cpus=2, other_jobs_at_start=[], other_jobs_at_end=[]), True),
        (dict(job_cpus=1, node_cpus=2, other_jobs_at_start=["7"], other_jobs_at_end=[]), False),
        (dict(job_cpus=2, node_cpus=2, other_jobs_at_start=[], other_jobs_at_end=["9"]), False),
        (dict(job_cpus=1, node_cpus=2, other_jobs_at_start=[], other_jobs_at_end=[]), None),
        (dict(job_cpus=2, node_cpus=2, error="squeue: timed out"), None),
    ],
)
def test_node_share_verdict(facts, alone):
    assert share.verdict(facts) is alone


@pytest.mark.parametrize(("alone", "shared"), [(True, False), (False, True), (None, None)])
def test_energy_marked_shared_where_the_node_was(alone, shared):
    from runner.sections.energy import Energy, EnergyComponent

    energy = Energy(
        components={"cpu": EnergyComponent(joules=1.0), "ram": EnergyComponent(joules=1.0)}
    )
    marked = share.mark_energy(energy, alone)
    assert marked.components["cpu"].node_shared is shared
    assert marked.components["ram"].node_shared is shared
    assert any("whole node" in w for w in marked.warnings) is (alone is not True)
    assert marked.to_dict()["components"]["cpu"].get("node_shared") is shared


# --------------------------------------------------------------------------- stops


class _Delayed:
    _timeout_min = 1

    def __init__(self, countdown: int) -> None:
        self._timeout_countdown = countdown


class _SubmititHandler:
    """Stands in for submitit's SignalHandler: the two facts its decision rests on."""

    def __init__(self, timed_out: bool, countdown: int) -> None:
        self._timed_out = timed_out
        self._delayed = _Delayed(countdown)

    def has_timed_out(self) -> bool:
        return self._timed_out

    def checkpoint_and_try_requeue(self, signum, frame=None):  # what the run replaced
        raise AssertionError("not called by stop_message")


@pytest.mark.parametrize(
    ("timed_out", "countdown", "words"),
    [
        (False, 1, ["preempted", "measures this point again"]),
        (True, 1, [stops.TIME_LIMIT, "timeout_min=1", "submitit requeues", "0 more"]),
        (True, 0, [stops.TIME_LIMIT, "no requeue is left", stops.RAISE_TIMEOUT]),
    ],
)
def test_stop_message_says_what_submitit_will_do(timed_out, countdown, words):
    handler = _SubmititHandler(timed_out, countdown).checkpoint_and_try_requeue
    message = stops.stop_message(signal.SIGUSR2, handler)
    assert all(w in message for w in words), message


def test_stop_message_outside_submitit_names_the_signal(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert stops.stop_message(signal.SIGUSR2, signal.SIG_DFL) == "received signal SIGUSR2"
    assert stops.stop_message(signal.SIGTERM, None) == "received signal SIGTERM"


@pytest.mark.parametrize(
    ("state", "detail", "status", "words"),
    [
        ("CANCELLED by 0", "", Status.interrupted, ["CANCELLED", "scancel"]),
        ("TIMEOUT", "", Status.interrupted, [stops.TIME_LIMIT, stops.RAISE_TIMEOUT]),
        ("COMPLETED", "timed-out too many times", Status.interrupted, [stops.RAISE_TIMEOUT]),
        ("NODE_FAIL", "", Status.failed, ["node failed"]),
        ("OUT_OF_MEMORY", "", Status.failed, ["mem_gb"]),
        ("FAILED", "", Status.failed, ["before the run could write"]),
        ("INTERRUPTED", "", Status.failed, ["killed by a signal"]),  # submitit local executor
    ],
)
def test_lost_job_status_from_the_scheduler_state(state, detail, status, words):
    got, message = stops.lost_job(state, detail)
    assert got is status
    assert all(w in message for w in words), message


# --------------------------------------------------------------------------- lost jobs


def test_lost_job_gets_a_result_and_its_own_ok_result_stands(tmp_path):
    since = time.time()
    made = record(tmp_path / "a", ["quant=none"], "NODE_FAIL", "no output", since)
    on_disk = json.loads((tmp_path / "a" / RESULT_FILE).read_text())
    assert on_disk == made
    assert made["status"] == "failed" and made["overrides"] == ["quant=none"]
    assert made["error"]["type"] == "JobLost" and "NODE_FAIL" in made["error"]["message"]

    ok = RunResult(Status.ok, "b", "h", ["quant=nf4"], "t0", metrics=Metrics(repeats=3))
    write_result(tmp_path / "b", ok)
    assert record(tmp_path / "b", ["quant=nf4"], "CANCELLED", "", since)["status"] == "ok"


def test_lost_job_keeps_what_the_run_recorded_and_says_both(tmp_path):
    since = time.time()
    own = RunResult(Status.interrupted, "a", "h", ["quant=none"], "t0", metrics=Metrics(repeats=2))
    own.error = RunError("StopRequested", "received signal SIGUSR2: time limit", None, "measure")
    write_result(tmp_path, own)
    data = record(tmp_path, ["quant=none"], "TIMEOUT", "", since)
    assert data["metrics"] == Metrics(repeats=2).to_dict() and data["error"]["phase"] == "measure"
    assert data["status"] == "interrupted"
    assert stops.RAISE_TIMEOUT in data["error"]["message"]
    assert "the run last recorded: received signal SIGUSR2" in data["error"]["message"]
    assert stops.is_time_limit(data)


def test_stale_result_of_an_earlier_sweep_is_replaced(tmp_path):
    own = RunResult(Status.failed, "a", "h", ["quant=none"], "t0")
    write_result(tmp_path, own)
    data = record(tmp_path, ["quant=none"], "CANCELLED by 0", "", time.time() + 3600)
    assert data["status"] == "interrupted" and data["error"]["phase"] == "unknown"


# --------------------------------------------------------------------------- exit code


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ([{"status": "ok"}, {"status": "ok"}], EXIT_OK),
        ([{"status": "ok"}, {"status": "failed"}], EXIT_FAILED),
        ([{"status": "failed"}, {"status": "interrupted", "time_limit": True}], EXIT_TIME_LIMIT),
        ([{"status": "interrupted", "time_limit": True}, {"status": "interrupted"}], 130),
        ([{"status": "interrupted"}, {"status": "failed"}], EXIT_INTERRUPTED),
    ],
)
def test_exit_code(outcomes, code):
    jobs = [
        JobOutcome(Status(o["status"]), Path("run"), time_limit=o.get("time_limit", False))
        for o in outcomes
    ]
    assert exit_code(jobs) == code
