"""The hardware time series: the sampler's rows, phases and windows, the table it writes,
and the throttling and interference rules judged on it (runner.hardware)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from runner.hardware.sampler import Sampler, Window, read_windows, write_timeseries
from runner.hardware.throttle import findings
from runner.models.fallbacks import (
    HARDWARE_CLOCK_DROP,
    HARDWARE_GPU_THROTTLE,
    HARDWARE_INTERFERENCE,
)


class Counter:
    """A source whose value is the number of reads so far; ``fail_at`` raises once."""

    name = "counter"

    def __init__(self, fail_at: int | None = None) -> None:
        self.reads = 0
        self.fail_at = fail_at

    def read(self, now: float) -> dict[str, Any]:
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError("sensor gone")
        return {"count": self.reads}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rows_carry_time_phase_and_the_open_window() -> None:
    clock, phase = FakeClock(), ["load"]
    s = Sampler([Counter()], 5.0, lambda: phase[0], clock=clock)
    s.now()
    s.tick()  # t=0, load, no window
    clock.now += 1.0
    phase[0] = "measure"
    s.begin_window()
    s.tick()  # t=1, in window 0
    clock.now += 1.0
    s.end_window()
    s.tick()  # t=2, after window 0
    s.begin_window()
    clock.now += 0.5
    s.tick()  # in window 1
    rows, windows = s.snapshot()
    assert [r["t_seconds"] for r in rows] == [0.0, 1.0, 2.0, 2.5]
    assert [r["phase"] for r in rows] == ["load", "measure", "measure", "measure"]
    assert [r["window"] for r in rows] == [None, 0, None, 1]
    assert [r["count"] for r in rows] == [1, 2, 3, 4]
    assert windows == [Window(0, 1.0, 2.0), Window(1, 2.0, None)]
    assert s.largest_gap() == 1.0


def test_a_failing_source_costs_its_values_for_one_tick_only() -> None:
    s = Sampler([Counter(fail_at=2)], 5.0, lambda: "x", clock=FakeClock())
    s.tick()
    s.tick()
    s.tick()
    assert [r.get("count") for r in s.rows] == [1, None, 3]


def test_the_thread_keeps_its_rate_and_ends_with_a_last_row() -> None:
    source = Counter()
    s = Sampler([source], 10.0, lambda: "measure")
    s.start()
    time.sleep(0.55)
    s.stop()
    n = len(s.rows)
    # A first row at start, ~5 ticks at 10 Hz, a last one at stop; generous for a busy CI.
    assert 3 <= n <= 9, n
    assert not any(t.name == "hardware-sampler" for t in threading.enumerate())
    time.sleep(0.2)
    assert len(s.rows) == n  # nothing after stop


def test_the_table_round_trips_with_its_windows(tmp_path: Path) -> None:
    rows = [
        {"t_seconds": 0.0, "time_unix": 1.0, "phase": "load", "window": None, "a": 1.5},
        {"t_seconds": 0.5, "time_unix": 1.5, "phase": "measure", "window": 0, "a": None, "b": 7},
    ]
    path = tmp_path / "timeseries.parquet"
    write_timeseries(path, rows, [Window(0, 0.4, 0.9)])
    table = pq.read_table(path).to_pylist()
    assert table == [
        {"t_seconds": 0.0, "time_unix": 1.0, "phase": "load", "window": None, "a": 1.5, "b": None},
        {"t_seconds": 0.5, "time_unix": 1.5, "phase": "measure", "window": 0, "a": None, "b": 7},
    ]
    assert read_windows(path) == [Window(0, 0.4, 0.9)]


# --- the rules ----------------------------------------------------------------------------


def _rows(column: str, values: list[float | None], windows: list[int | None]) -> list[dict]:
    return [
        {"t_seconds": float(i), "phase": "measure", "window": w, column: v}
        for i, (v, w) in enumerate(zip(values, windows, strict=True))
    ]


def _names(rows: list[dict], windows: list[Window], **kw: float) -> dict[str, str]:
    rules = {"drop": 0.1, "cores": 0.5, **kw}
    return {f.name: f.message for f in findings(rows, windows, **rules)}


def test_a_thermal_throttle_bit_inside_a_window_is_named() -> None:
    # 0x40: hardware thermal slowdown; 0x1 (idle) and 0x2 (application clocks) are not.
    rows = _rows("gpu0_throttle_reasons", [0x40, 0x1, 0x2, 0x40, 0x20], [None, 0, 0, 1, 1])
    found = _names(rows, [Window(0, 1.0, 2.5), Window(1, 2.5, 5.0)])
    assert list(found) == [HARDWARE_GPU_THROTTLE]
    message = found[HARDWARE_GPU_THROTTLE]
    assert "in 1 of 2 measured window(s) (1)" in message
    assert "thermal" in message.lower() and "gpu0" in message


def test_idle_and_application_clock_reasons_are_not_throttling() -> None:
    rows = _rows("gpu0_throttle_reasons", [0x1, 0x2, 0x3], [0, 0, 0])
    assert _names(rows, [Window(0, 0.0, 3.0)]) == {}


def test_a_clock_falling_past_the_threshold_from_the_windows_start() -> None:
    # The level at the start is the last row at or before the window's first edge (1500).
    rows = _rows("gpu1_sm_clock_mhz", [1500, 1480, 1400, 1300], [None, 0, 0, 0])
    found = _names(rows, [Window(0, 0.0, 4.0)], drop=0.1)
    assert "gpu1_sm_clock_mhz 1500 -> 1300 MHz (-13%)" in found[HARDWARE_CLOCK_DROP]
    assert _names(rows, [Window(0, 0.0, 4.0)], drop=0.15) == {}


def test_the_cpu_frequency_is_judged_too() -> None:
    rows = _rows("cpu_freq_mhz_mean", [3000, 2990, 2000], [0, 0, 0])
    assert HARDWARE_CLOCK_DROP in _names(rows, [Window(0, 0.0, 3.0)])


def test_interference_is_the_mean_load_of_other_processes_over_a_window() -> None:
    rows = _rows("cpu_other_cores", [3.0, 0.2, 0.4, 1.0, 1.2], [None, 0, 0, 1, 1])
    found = _names(rows, [Window(0, 1.0, 2.5), Window(1, 2.5, 5.0)], cores=0.5)
    # Window 0 (mean 0.3) is quiet; the busy row before it is not in any window.
    assert "in 1 of 2 measured window(s) (1)" in found[HARDWARE_INTERFERENCE]
    assert "at most 1.10" in found[HARDWARE_INTERFERENCE]
    assert _names(rows, [Window(0, 1.0, 2.5), Window(1, 2.5, 5.0)], cores=1.5) == {}


def test_a_window_without_rows_is_not_judged() -> None:
    rows = _rows("cpu_other_cores", [2.0, 2.0], [None, None])
    assert _names(rows, [Window(0, 0.2, 0.3)]) == {}


@pytest.mark.parametrize("value", [None, float("nan")])
def test_missing_values_are_not_judged(value: float | None) -> None:
    rows = _rows("gpu0_sm_clock_mhz", [value, value], [0, 0])
    assert _names(rows, [Window(0, 0.0, 2.0)]) == {}


# --- the run's record path (runner.hardware.record) -----------------------------------------


def test_a_stand_in_gpu_reporting_thermal_throttle_gives_the_named_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a run takes (start_sampler, windows, finish_sampler) with the project's NVML
    stand-in in place of pynvml: a GPU that reports a hardware thermal slowdown and loses
    clock during the measured window."""
    from runner.config.schema_measure import MeasureConfig
    from runner.hardware import record
    from runner.measure import nvml as nvml_mod
    from tests.fake_nvml import FakeClock, FakeNvml

    fake = FakeNvml(FakeClock(), count=1)
    monkeypatch.setattr(nvml_mod, "open_nvml", lambda nvml=None: fake)
    # Whatever else this machine runs (a test suite beside) is not what is tested here.
    m = MeasureConfig(sample_hz=10.0, interference_cores=1e6)
    warnings: list[str] = []
    phase = ["warmup"]
    sampler, absent = record.start_sampler(m, lambda: phase[0], [0], warnings)
    assert sampler is not None and not any(a.startswith("gpu") for a in absent)
    time.sleep(0.25)
    phase[0] = "measure"
    sampler.begin_window()
    time.sleep(0.15)
    fake.reasons[0], fake.sm_mhz[0] = 0x40, 1200  # HW thermal slowdown, clock held down
    time.sleep(0.3)
    sampler.end_window()
    series, named = record.finish_sampler(sampler, absent, tmp_path, m, "measure", warnings)
    assert warnings == []
    assert series is not None and series.file == "timeseries.parquet"
    assert series.samples == len(pq.read_table(tmp_path / series.file)) >= 5
    assert series.windows == 1 and "gpu0" in series.sources
    assert {w.name for w in named} == {HARDWARE_GPU_THROTTLE, HARDWARE_CLOCK_DROP}
    assert all(w.phase == "measure" for w in named)
    table = pq.read_table(tmp_path / "timeseries.parquet").to_pandas()
    assert set(table["phase"]) == {"warmup", "measure"}
    assert table.loc[table["window"] == 0, "gpu0_throttle_reasons"].max() == 0x40


def test_sampling_off_records_nothing(tmp_path: Path) -> None:
    from runner.config.schema_measure import MeasureConfig
    from runner.hardware import record

    m = MeasureConfig(sample_hz=0.0)
    sampler, absent = record.start_sampler(m, lambda: "load", [], [])
    assert sampler is None and absent == ()
    assert record.finish_sampler(None, (), tmp_path, m, "measure", []) == (None, [])
    assert not (tmp_path / "timeseries.parquet").exists()


@pytest.mark.slow
def test_a_cpu_burner_started_in_the_measured_window_is_named_interference(
    compose: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run on the tiny model; when its measured phase begins, real processes outside
    the run start spinning on every CPU (no stand-in: the kernel's own accounting)."""
    import os
    import signal
    import subprocess
    import sys

    from runner import run as run_mod
    from tests.conftest import TINY

    burners: list[int] = []
    announce = run_mod.announce_measure
    spin = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"

    def announce_and_burn(*args: Any) -> None:
        # Started through a shell that exits at once: the burners are orphans, not the
        # run's children, as another user's job would be.
        for _ in range(os.cpu_count() or 2):
            out = subprocess.run(["sh", "-c", spin], capture_output=True, text=True, check=True)
            burners.append(int(out.stdout))
        time.sleep(0.3)  # the burners are running before the first window opens
        announce(*args)

    monkeypatch.setattr(run_mod, "announce_measure", announce_and_burn)
    cfg = compose(
        [*TINY, "measure.min_seconds=2", "measure.sample_hz=10", "workload.num_prompts=4"]
    )
    try:
        result = run_mod.run(cfg, tmp_path / "run")
    finally:
        for pid in burners:
            os.kill(pid, signal.SIGKILL)
    assert burners, "the measured phase never began"
    assert result.status.value == "ok", result.error
    named = {w.name: w for w in result.warnings_detail.named}
    assert HARDWARE_INTERFERENCE in named, result.warnings
    assert named[HARDWARE_INTERFERENCE].phase == "measure"
    table = pq.read_table(tmp_path / "run" / "timeseries.parquet").to_pandas()
    inside = table[table["window"].notna()]
    assert len(inside) >= 5 and inside["cpu_other_cores"].mean() > 0.5
    # The burners are not the run's: its own tree stayed below what the machine did.
    assert (inside["cpu_tree_cores"] < inside["cpu_machine_cores"]).all()
