"""A stop signal is never lost: every phase, every stop signal, sent to the CLI or the job.

The run is parked in a phase by the test hook ``RUNNER_TEST_PARK`` (see ``runner.stop``),
which touches a marker file with the parked process's pid and then sleeps in a loop that
swallows what a library's broad handler would (``except Exception``, or in ``all`` mode
``except BaseException``). Each case asserts the recorded status and phase, the exit code
and the CLI's last line, which is read back from the recorded result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.results import Phase
from runner.stop import GUARD, PARK_ENV, StopRequested
from tests.conftest import PYTHON, TINY

REPO = Path(__file__).resolve().parents[1]
STOPS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)
PHASES = [p.value for p in Phase]

# (phase, whom the signal is sent to, swallow mode): every phase to the CLI and to the job,
# the three stop signals in turn, and a bare ``except:`` swallowing the stop in a few.
CASES = [
    (phase, target, "all" if phase in ("load", "warmup") else "exception")
    for phase in PHASES
    for target in ("cli", "job")
]


def _start(
    tmp_path: Path, phase: str, mode: str, extra: list[str], python: list[str] = PYTHON
) -> tuple:
    marker = tmp_path / "parked"
    run_dir = tmp_path / "run"
    energy = ["energy=codecarbon", "energy.baseline_seconds=0.2"]
    uses_energy = phase in ("baseline", "energy")
    overrides = [o for o in TINY if not (uses_energy and o == "energy=off")]
    if phase == "cooldown":  # entered only when a cooldown is asked for
        extra = [*extra, "measure.cooldown_seconds=0.5"]
    proc = subprocess.Popen(
        [
            *python,
            "-m",
            "runner",
            *overrides,
            *(energy if uses_energy else []),
            *extra,
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, PARK_ENV: f"{phase}:{mode}:{marker}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, marker, run_dir


def _wait_for(marker: Path, proc: subprocess.Popen, seconds: float = 240) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text())
        time.sleep(0.05)
    out, err = proc.communicate(timeout=30)
    raise AssertionError(f"never parked (rc={proc.returncode}): {err[-3000:]}")


def _signal_case(tmp: Path, phase: str, target: str, mode: str, signum: int) -> dict:
    proc, marker, run_dir = _start(tmp, phase, mode, [])
    job_pid = _wait_for(marker, proc)
    os.kill(proc.pid if target == "cli" else job_pid, signum)
    out, err = proc.communicate(timeout=180)
    result_file = run_dir / "result.json"
    return {
        "job_pid": job_pid,
        "returncode": proc.returncode,
        "stdout": out,
        "stderr": err,
        "result": json.loads(result_file.read_text()) if result_file.exists() else None,
    }


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory):
    """Every case, three at a time: most of a case is interpreter start-up and waiting."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i_case):
        i, (phase, target, mode) = i_case
        tmp = tmp_path_factory.mktemp(f"{phase}-{target}")
        return (phase, target, mode), _signal_case(tmp, phase, target, mode, STOPS[i % 3])

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, enumerate(CASES)))


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "target", "mode"), CASES, ids=lambda v: str(v))
def test_stop_in_every_phase_is_recorded(stopped_runs, phase, target, mode):
    signame = signal.Signals(STOPS[CASES.index((phase, target, mode)) % 3]).name
    case = stopped_runs[(phase, target, mode)]
    err = case["stderr"]
    assert case["returncode"] == 130, err[-3000:]
    result = case["result"]
    assert result is not None, err[-3000:]
    assert result["status"] == "interrupted", result.get("error")
    assert result["error"]["phase"] == phase
    assert signame in result["error"]["message"]
    if target == "cli":
        last = err.strip().splitlines()[-1]
        assert f"recorded as interrupted during {phase}" in last, err[-2000:]
    else:  # the job is not the CLI: the CLI carried on and reports what the job recorded
        assert "[interrupted]" in case["stdout"]


@pytest.mark.slow
def test_inline_run_stopped_in_config_is_recorded(tmp_path):
    """Inline isolation: the CLI process is the job; the stop is recorded all the same."""
    # The real interpreter: the parked pid is compared with the process started.
    inline = ["measure.isolation=inline"]
    proc, marker, run_dir = _start(tmp_path, "config", "exception", inline, [sys.executable])
    pid = _wait_for(marker, proc)
    assert pid == proc.pid
    os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["status"], result["error"]["phase"]) == ("interrupted", "config")
    assert "recorded as interrupted during config" in err.strip().splitlines()[-1]


def test_a_stop_before_the_job_process_starts_leaves_an_interrupted_result(
    tmp_path, compose, guard
):
    """The launcher got the stop before it could start the job: no job, but a result."""
    from runner.job import SweepInterrupted, execute

    guard.set_live(False)  # as while the launcher waits on its child
    guard.record(signal.SIGTERM)
    with pytest.raises(SweepInterrupted):
        execute(compose(TINY), tmp_path / "run", ["model=tiny"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (result["status"], result["error"]["phase"]) == ("interrupted", "config")
    assert "SIGTERM" in result["error"]["message"]


STOP_AT_JOB_START = """
import os, signal, sys
from runner import job
from runner.cli import main

real = job.execute

def stopped_first(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # handled at once: raised here, before execute runs
    return real(*args, **kwargs)

job.execute = stopped_first
sys.argv = ["runner", *sys.argv[1:]]
main()
"""


def test_a_stop_as_the_task_hands_the_job_over_is_recorded(tmp_path):
    """A stop between the task reading its config and execute() recording anything."""
    proc = subprocess.run(
        [sys.executable, "-c", STOP_AT_JOB_START, *TINY, f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["status"], result["error"]["phase"]) == ("interrupted", "config")
    assert "SIGINT" in result["error"]["message"]
    assert result["config"]["model"]["source"] == "tiny"


# --- the guard itself, in this process --------------------------------------------------


@pytest.fixture
def guard():
    """The process-wide guard, installed and live as the CLI has it; reset afterwards."""
    GUARD.clear()
    assert GUARD.install()
    GUARD.set_live(True)
    yield GUARD
    GUARD.uninstall()
    GUARD.set_live(False)
    GUARD.clear()


def _signal_self_soon(signum: int, after: float = 0.05) -> None:
    threading.Timer(after, os.kill, (os.getpid(), signum)).start()


def test_a_broad_except_exception_cannot_swallow_a_stop(guard):
    caught = []
    with pytest.raises(StopRequested) as info:
        try:
            _signal_self_soon(signal.SIGTERM)
            time.sleep(5)
        except Exception as exc:  # what bitsandbytes' optional-kernel import does
            caught.append(exc)
    assert caught == []
    assert info.value.signame == "SIGTERM"
    assert guard.stop is not None and guard.stop.signame == "SIGTERM"


def test_a_stop_swallowed_by_a_bare_except_is_raised_at_the_next_check(guard):
    try:
        _signal_self_soon(signal.SIGUSR2)
        time.sleep(5)
    except BaseException:  # noqa: S110 - a library that swallows everything
        pass
    assert guard.requested
    with pytest.raises(StopRequested):
        guard.check()


def test_signals_are_only_recorded_while_not_live(guard):
    guard.set_live(False)
    _signal_self_soon(signal.SIGINT, 0.0)
    time.sleep(0.3)  # the handler ran and did not raise
    assert guard.count == 1
    guard.check()  # not live: nothing raised
    guard.set_live(True)
    with pytest.raises(StopRequested):
        guard.check()


def test_only_the_first_signal_raises_asynchronously(guard):
    with pytest.raises(StopRequested):
        _signal_self_soon(signal.SIGTERM)
        time.sleep(5)
    _signal_self_soon(signal.SIGTERM, 0.0)  # lands in cleanup: recorded, not raised
    time.sleep(0.3)
    assert guard.count == 2


def test_an_in_process_run_stopped_while_writing_is_interrupted(tmp_path, monkeypatch, compose):
    """The write phase is not live: the stop is recorded and the file rewritten."""
    from runner.run import run

    marker = tmp_path / "parked"
    monkeypatch.setenv(PARK_ENV, f"write:exception:{marker}")

    def stop_when_parked():
        while not marker.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_parked, daemon=True).start()
    cfg = compose([*TINY, "measure.isolation=inline"])
    result = run(cfg, tmp_path / "run")
    assert result.status.value == "interrupted"
    assert result.error.phase == "write"
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk["status"] == "interrupted"
    assert on_disk["metrics"]["requests"] > 0  # what was measured is kept
    assert not GUARD.installed  # run() restored the handlers it found
