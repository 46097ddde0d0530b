"""SweepBaselines: one idle baseline per machine and setting in a sweep, measured once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runner.measure.baseline_store import SweepBaselines

KEY = {"nvml_gpus": [], "baseline_seconds": 3.0}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_runs_on_one_machine_wait_for_one_measurement(tmp_path: Path):
    """A run that comes while another measures waits for it, then reuses its value."""
    calls: list[str] = []
    measuring, release = threading.Event(), threading.Event()

    def measure(name: str):
        def go():
            calls.append(name)
            measuring.set()
            release.wait(10)  # the idle measurement, for as long as the test wants
            return {"watts": 12.0}

        return go

    got: dict[str, tuple] = {}

    def run(name: str) -> None:
        got[name] = SweepBaselines(tmp_path, 600).get_or_measure(KEY, measure(name))

    threads = [threading.Thread(target=run, args=("first",))]
    threads[0].start()
    assert measuring.wait(10)
    threads.append(threading.Thread(target=run, args=("second",)))
    threads[1].start()
    time.sleep(0.2)  # the second run reaches the lock (if it does not, it comes later)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == ["first"]
    assert got["first"][1] is None and got["second"][1] is not None
    assert got["second"][0]["watts"] == 12.0


def test_each_host_measures_its_own(tmp_path: Path):
    clock = Clock()
    a = SweepBaselines(tmp_path, 600, host="node-a", wall_clock=clock)
    b = SweepBaselines(tmp_path, 600, host="node-b", wall_clock=clock)
    a.get_or_measure(KEY, lambda: {"watts": 1.0})
    value, reused = b.get_or_measure(KEY, lambda: {"watts": 2.0})
    assert (value["watts"], value["host"], reused) == (2.0, "node-b", None)
    clock.now += 5
    value, reused = a.get_or_measure(KEY, lambda: {"watts": 3.0})
    assert (value["watts"], reused.age_seconds) == (1.0, 5.0)


def test_a_failed_measurement_is_not_stored_and_a_bad_file_is_remeasured(tmp_path: Path):
    store = SweepBaselines(tmp_path, 600)
    assert store.get_or_measure(KEY, lambda: None) == (None, None)
    store.path(KEY).write_text("{not json")
    value, reused = store.get_or_measure(KEY, lambda: {"watts": 4.0})
    assert (value["watts"], reused) == (4.0, None)
    assert store.get_or_measure(KEY, lambda: {"watts": 5.0})[0]["watts"] == 4.0
