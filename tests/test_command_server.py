"""The suite's command server (tests/command_server.py): a served command behaves as one
started as ``python``: arguments, working directory, environment, stdin, stdout, stderr,
exit code, the signals sent to it; and it starts with the preload already imported."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import PYTHON

SCRIPT = textwrap.dedent(
    """
    import os, sys
    print("preloaded" if "transformers" in sys.modules else "fresh")
    print(os.getcwd(), os.environ.get("SERVED_TEST_VALUE"), sys.argv[1:], sys.path[0])
    print("stdin:", sys.stdin.read().strip())
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """
)


@pytest.fixture
def server_up(command_server):
    """Wait until this session's server listens (it imports for a few seconds first)."""
    if command_server is None:
        pytest.skip("the command server is off (LLM_RUNNER_TEST_COMMAND_SERVER=off)")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(command_server)
            except OSError:
                time.sleep(0.2)
                continue
        return
    pytest.fail("the command server never listened")


def _run(python: list[str], script, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*python, str(script), *args],
        cwd=tmp_path,
        env={**os.environ, "SERVED_TEST_VALUE": "x y"},
        input="from the test\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_served_command_is_run_as_python_would_run_it(server_up, tmp_path):
    script = tmp_path / "show.py"
    script.write_text(SCRIPT)
    served = _run(PYTHON, script, tmp_path, "3", "a b")
    real = _run([sys.executable], script, tmp_path, "3", "a b")
    assert served.stdout.splitlines()[0] == "preloaded"
    assert real.stdout.splitlines()[0] == "fresh"
    assert served.stdout.splitlines()[1:] == real.stdout.splitlines()[1:]
    assert served.stdout.splitlines()[1] == f"{tmp_path} x y ['3', 'a b'] {tmp_path}"
    assert served.stdout.splitlines()[2] == "stdin: from the test"
    assert (served.returncode, served.stderr) == (real.returncode, real.stderr)
    assert (served.returncode, served.stderr) == (3, "to stderr\n")


def test_a_stop_signal_reaches_the_command_and_its_death_is_the_clients(server_up, tmp_path):
    script = tmp_path / "wait.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, sys, time
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
            print(os.getpid(), flush=True)
            time.sleep(60)
            """
        )
    )
    proc = subprocess.Popen([*PYTHON, str(script)], stdout=subprocess.PIPE, text=True)
    command_pid = int(proc.stdout.readline())
    assert command_pid != proc.pid  # forked by the server, not the client's child
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 7

    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([*PYTHON, str(script)], timeout=60).returncode == -signal.SIGKILL


def test_a_runner_command_forks_its_job_server_instead_of_importing_again(server_up, tmp_path):
    script = tmp_path / "jobs.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing.forkserver as mp_forkserver, os
            from runner import forkserver
            forkserver.start()
            pid = mp_forkserver._forkserver._forkserver_pid
            print(pid is not None and os.waitpid(pid, os.WNOHANG) == (0, 0))
            def cmdline(pid):
                return open(f"/proc/{pid}/cmdline", "rb").read()
            print(cmdline(pid) == cmdline("self"))
            """
        )
    )
    served = subprocess.run([*PYTHON, str(script)], capture_output=True, text=True, timeout=60)
    # A child of this command, running what the command runs: forked, not a new interpreter.
    assert served.stdout.split() == ["True", "True"], served.stderr[-2000:]


def test_what_the_server_does_not_serve_runs_the_real_interpreter(server_up):
    done = subprocess.run(
        [*PYTHON, "-c", "import sys; print('transformers' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False"
