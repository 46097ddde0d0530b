"""Jobs forked from the fork server: fresh processes that start with the imports done."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runner import forkserver
from runner.config.schema_measure import Isolation
from runner.job import start_child
from tests import forkserver_targets

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_each_job_is_a_fresh_process_with_the_launchers_environment_and_stderr(capfd, monkeypatch):
    forkserver.start()  # the server starts with this environment and this stderr ...
    monkeypatch.setenv("RUNNER_TEST_FORKSERVER", "set after the server started")
    seen = []
    for _ in range(2):
        recv, send = multiprocessing.Pipe(duplex=False)
        launcher = forkserver.LauncherState()  # ... the job gets the launcher's as of now
        proc = start_child(Isolation.forkserver, forkserver_targets.report, (launcher, send))
        send.close()
        seen.append(recv.recv())
        proc.join(60)
        assert proc.exitcode == 0
    first, second = seen
    assert first["pid"] != second["pid"] != os.getpid()
    assert first["preloaded"] and second["preloaded"]  # imported before the job began
    assert first["versions_read"]  # environment.install: read once, by the server
    assert first["cuda_initialized"] is False
    # The server imported with its collector off; its jobs collect their own garbage,
    # never scanning the imports' objects (frozen: over 100,000 for torch alone).
    assert first["gc_enabled"] and second["gc_enabled"]
    assert first["gc_frozen"] > 100_000
    assert first["env"] == "set after the server started"
    assert second["left_by_earlier_job"] is None  # nothing leaks from one job to the next
    err = capfd.readouterr().err
    assert f"job {first['pid']} writes to the launcher's stderr" in err
    assert forkserver.usable()


@pytest.mark.slow
def test_a_job_exit_code_reaches_the_launcher():
    proc = start_child(Isolation.forkserver, forkserver_targets.exit_with, (3,))
    proc.join(120)
    assert proc.exitcode == 3


def test_a_server_that_cannot_start_jobs_is_replaced_by_spawn(tmp_path):
    """A preload that fails kills the server; the job is spawned and runs all the same."""
    (tmp_path / "broken_preload.py").write_text("raise RuntimeError('preload failed')\n")
    script = (
        "import sys; from runner import forkserver, job; "
        "from runner.config.schema_measure import Isolation; from tests import forkserver_targets; "
        "forkserver.PRELOAD_MODULE = 'broken_preload'; "
        "p = job.start_child(Isolation.forkserver, forkserver_targets.exit_with, (5,)); "
        "p.join(120); print(p.exitcode, forkserver.usable())"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["5", "False"], out.stderr[-2000:]
    assert "fork server unusable" in out.stderr


def test_a_process_with_the_cuda_driver_or_threads_refuses_to_serve(monkeypatch):
    # Threads earlier tests left in this pytest process (tqdm's monitor) are not the point.
    earlier = set(threading.enumerate()) - {threading.main_thread()}
    enumerate_threads = threading.enumerate
    monkeypatch.setattr(
        forkserver.threading,
        "enumerate",
        lambda: [t for t in enumerate_threads() if t not in earlier],
    )
    monkeypatch.setattr(forkserver, "cuda_driver_loaded", lambda: False)
    forkserver.check_forkable()
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="a library's thread")
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="a library's thread"):
            forkserver.check_forkable()
    finally:
        stop.set()
        worker.join()
    monkeypatch.setattr(forkserver, "cuda_driver_loaded", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA driver"):
        forkserver.check_forkable()


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["-m", "model=tiny", "quant=none,nf4"], True),
        (["model=tiny", "measure.isolation=forkserver"], True),
        (["-m", "quant=none,nf4", "measure.isolation=inline"], False),
        (["measure.isolation=spawn"], False),
        (["-m", "hydra/launcher=slurm", "quant=none,nf4"], False),
        (["--help"], False),
        # An experiment file may choose inline: its idle baseline must not see the imports.
        (["-m", "+experiment=quant-on-tiny"], False),
    ],
)
def test_the_launcher_starts_the_server_early_only_for_forked_jobs(monkeypatch, argv, starts):
    started = []
    monkeypatch.setattr(forkserver, "start", lambda: started.append(True))
    assert forkserver.start_for_command(argv) is starts
    assert bool(started) is starts


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["-m", "model=tiny", "quant=none,nf4"], True),
        ([], True),
        # Anything about isolation or the launcher waits for start_for_command's parser.
        (["model=tiny", "measure.isolation=forkserver"], False),
        (["+measure.isolation=spawn"], False),
        (["-m", "hydra/launcher=slurm", "quant=none,nf4"], False),
        (["experiment=quant-on-tiny"], False),
        (["--cfg", "job"], False),
        (["--help"], False),
    ],
)
def test_the_server_starts_before_the_cli_imports_only_for_a_plain_command(
    monkeypatch, argv, starts
):
    started = []
    monkeypatch.setattr(forkserver, "start", lambda: started.append(True))
    assert forkserver.start_early(argv) is starts
    assert bool(started) is starts
