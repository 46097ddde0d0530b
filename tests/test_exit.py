"""``python -m runner`` leaves without tearing the interpreter down, losing nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import PYTHON

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exit_handlers_run_and_output_is_flushed(tmp_path):
    marker = tmp_path / "atexit"
    proc = _python(
        f"""
        import atexit, pathlib, sys
        from runner.__main__ import _exit_fast
        atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("ran"))
        sys.stdout.write("x" * 100_000)  # buffered: a pipe is not a terminal
        _exit_fast(4)
        """
    )
    assert proc.returncode == 4
    assert len(proc.stdout) == 100_000
    assert marker.read_text() == "ran"


def test_a_message_exit_prints_it_and_exits_1():
    proc = _python("from runner.__main__ import _exit_fast; _exit_fast('no such sweep')")
    assert (proc.returncode, proc.stderr.strip()) == (1, "no such sweep")


def test_a_live_thread_is_waited_for(tmp_path):
    marker = tmp_path / "thread"
    proc = _python(
        f"""
        import pathlib, threading, time
        from runner.__main__ import _exit_fast

        def late():
            time.sleep(0.5)
            pathlib.Path({str(marker)!r}).write_text("done")

        threading.Thread(target=late).start()
        _exit_fast(3)
        """
    )
    assert proc.returncode == 3
    assert marker.read_text() == "done"


def test_the_command_prints_its_whole_config_and_exits_0():
    proc = subprocess.run(
        [*PYTHON, "-m", "runner", "model=tiny", "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("model:") and proc.stdout.endswith("\n")
    assert "\nquality:" in proc.stdout and "\nmeasure:" in proc.stdout
