"""Calls spread over forked worker processes (the report's figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from runner.report import forked

REPO = Path(__file__).resolve().parents[1]


def _pid_and(value: int):
    return lambda: (os.getpid(), value * value)


def _in_a_fresh_interpreter(code: str) -> str:
    """Run ``code`` where no other test's thread is alive (a fork needs none), its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_results_come_back_in_call_order_from_other_processes():
    out = _in_a_fresh_interpreter(
        """
        import json, os
        from runner.report import forked
        calls = [lambda i=i: (os.getpid(), i * i) for i in range(12)]
        print(json.dumps([os.getpid(), forked.map_forked(calls, workers=3)]))
        """
    )
    parent, results = json.loads(out)
    assert [v for _, v in results] == [i * i for i in range(12)]
    assert parent not in {pid for pid, _ in results}


@pytest.mark.parametrize("workers", [1, 0])
def test_one_worker_calls_here(workers):
    results = forked.map_forked([_pid_and(i) for i in range(3)], workers=workers)
    assert results == [(os.getpid(), i * i) for i in range(3)]


def test_with_another_thread_alive_nothing_is_forked():
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not forked.fork_is_safe()
        results = forked.map_forked([_pid_and(i) for i in range(3)], workers=2)
    finally:
        release.set()
        other.join()
    assert {pid for pid, _ in results} == {os.getpid()}


def test_a_worker_that_dies_leaves_its_calls_to_this_process():
    out = _in_a_fresh_interpreter(
        """
        import json, os
        from runner.report import forked
        parent = os.getpid()

        def dies_in_a_worker():
            if os.getpid() != parent:
                os._exit(1)
            return "drawn here"

        calls = [lambda: 1, dies_in_a_worker, lambda: 9]
        print(json.dumps(forked.map_forked(calls, workers=2)))
        """
    )
    assert json.loads(out) == [1, "drawn here", 9]


def test_a_call_that_raises_raises_here():
    def broken():
        raise ValueError("no data")

    with pytest.raises(ValueError, match="no data"):
        forked.map_forked([_pid_and(1), broken], workers=2)
