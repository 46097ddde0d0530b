"""EnergyMeter: window arithmetic, provenance and warnings with fake NVML, clock and tracker.

One test runs the real CodeCarbon tracker on this CPU (marked slow).
"""

from __future__ import annotations

import csv
import json
import logging
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.config.schema_measure import EnergyBackend, EnergyConfig
from runner.measure import idle_baseline
from runner.measure.codecarbon import J_PER_KWH, codecarbon_version
from runner.measure.energy import EnergyMeter
from runner.measure.nvml import (
    NvmlError,
    NvmlNotSupported,
    Pynvml,
    SampledGpuSource,
    cuda_to_nvml_indices,
    open_nvml,
    trapezoid_joules,
)
from runner.sections.energy import EnergyComponent, GrossNet
from tests.fake_nvml import FakeClock, FakeNvml

SECTION_KEYS = {
    "backend",
    "codecarbon_version",
    "tracking_mode",
    "country_iso_code",
    "pue",
    "window_seconds",
    "sampling_interval_seconds",
    "repeats",
    "components",
    "gross_joules",
    "baseline",
    "net_joules",
    "per_output_token_joules",
    "per_request_joules",
    "per_1000_requests_joules",
    "average_power_watts",
    "emissions_kg",
    "carbon_intensity_g_per_kwh",
    "gpu_nvml",
    "codecarbon_gpu_joules",
    "gpu_relative_difference",
    "tracker_start_seconds",
    "is_estimate",
    "warnings",
}


# --- fakes -------------------------------------------------------------------------------


class CPU:  # named like CodeCarbon's hardware classes, which the meter inspects by name
    def __init__(self, mode: str) -> None:
        self._mode, self._model, self._tdp = mode, "Fake CPU", 100


class RAM:
    _force_ram_power = None


class GPU:
    pass


def kwh(joules: float) -> float:
    return joules / J_PER_KWH


class FakeTracker:
    def __init__(self, script: dict[str, Any], log: list[str], **kwargs: Any) -> None:
        self.script, self.log, self.kwargs = script, log, kwargs
        self._hardware = [RAM(), CPU(script.get("cpu_mode", "cpu_load"))]
        if script.get("gpu_joules") is not None:
            self._hardware.append(GPU())

    def start(self) -> None:
        self.log.append("start")
        logging.getLogger("codecarbon").warning("fake tracker started")

    def stop(self) -> None:
        self.log.append("stop")
        s = self.script
        total = s["cpu_joules"] + s["ram_joules"] + (s.get("gpu_joules") or 0.0)
        self.final_emissions_data = SimpleNamespace(
            cpu_energy=kwh(s["cpu_joules"]),
            ram_energy=kwh(s["ram_joules"]),
            gpu_energy=kwh(s.get("gpu_joules") or 0.0),
            energy_consumed=kwh(total),
            emissions=kwh(total) * 0.4,  # 400 g/kWh
        )


class FakeFactory:
    """Hands out trackers with scripted totals, in order; records their kwargs."""

    def __init__(self, *scripts: dict[str, Any]) -> None:
        self.scripts = list(scripts)
        self.trackers: list[FakeTracker] = []
        self.events: list[str] = []

    def __call__(self, **kwargs: Any) -> FakeTracker:
        tracker = FakeTracker(self.scripts.pop(0), self.events, **kwargs)
        self.trackers.append(tracker)
        return tracker


def cfg(**kw: Any) -> EnergyConfig:
    base = {"backend": EnergyBackend.codecarbon, "baseline_seconds": 0.0}
    return EnergyConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def _no_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # Only the window edges sample power, so sample counts are deterministic.
    monkeypatch.setattr(EnergyMeter, "power_sample_interval_s", 3600.0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(idle_baseline, "_sleep", lambda s: setattr(c, "now", c.now + s))
    return c


def run_windows(meter: EnergyMeter, nv: FakeNvml, plan: list[tuple[float, float]]) -> None:
    """Each (gap_s, window_s): idle gap, then a window; a final gap of the first gap."""
    for gap, seconds in plan:
        nv.advance(gap)
        meter.begin_window()
        nv.advance(seconds)
        meter.end_window()
    nv.advance(plan[0][0])


# --- window arithmetic -------------------------------------------------------------------


def test_window_arithmetic_per_repeat_and_derived_figures(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock, count=1)
    factory = FakeFactory({"cpu_joules": 20.0, "ram_joules": 8.0, "gpu_joules": 1700.0})
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        nv.advance(2.5)
        meter.begin_window()
        nv.watts[0] = 100.0
        nv.advance(2.0)
        meter.end_window()
        meter.begin_window()
        nv.watts[0] = 200.0
        nv.advance(3.0)
        meter.end_window()
        nv.advance(2.5)
    s = meter.summary(output_tokens=407, requests=4)

    assert set(s.to_dict()) == SECTION_KEYS
    json.dumps(s.to_dict(), allow_nan=False)
    assert s.repeats == 2
    assert s.window_seconds == pytest.approx(5.0)
    assert s.gpu_nvml.method == "nvml-counter"
    assert s.gpu_nvml.per_repeat_joules == pytest.approx([200.0, 600.0])
    assert s.gpu_nvml.joules == pytest.approx(800.0)
    # CodeCarbon tracked 10 s, the windows are 5 s of it: its totals are halved.
    assert s.components["cpu"] == EnergyComponent(
        pytest.approx(10.0), "codecarbon-cpu-load-estimate"
    )
    assert s.components["ram"].joules == pytest.approx(4.0)
    assert s.components["ram"].method == "codecarbon-ram-estimate"
    assert s.components["gpu"] == EnergyComponent(pytest.approx(800.0), "nvml-counter")
    assert s.codecarbon_gpu_joules == pytest.approx(850.0)
    assert s.gpu_relative_difference == pytest.approx((800 - 850) / 800)
    assert s.gross_joules == pytest.approx(814.0)
    assert s.per_output_token_joules == GrossNet(pytest.approx(2.0), None)
    assert s.per_request_joules == GrossNet(pytest.approx(203.5), None)
    assert s.per_1000_requests_joules.gross == pytest.approx(203_500.0)
    assert s.average_power_watts.gross == pytest.approx(814.0 / 5.0)
    assert s.carbon_intensity_g_per_kwh == pytest.approx(400.0)
    assert s.emissions_kg == pytest.approx(814.0 / J_PER_KWH * 0.4)
    assert s.tracking_mode == "machine"
    assert s.is_estimate is True
    assert any("CPU energy is an estimate" in w for w in s.warnings)
    assert any("cover 50%" in w for w in s.warnings)
    assert not any("shorter than 1" in w for w in s.warnings)

    kw = factory.trackers[0].kwargs
    assert kw["output_dir"] == str(tmp_path)
    assert kw["tracking_mode"] == "machine"
    assert kw["gpu_ids"] == [0]
    assert kw["country_iso_code"] == "USA"
    assert kw["emissions_endpoint"] is None


def test_multi_gpu_sums_and_keys_by_cuda_index(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock, count=2)
    nv.watts = [150.0, 50.0]
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0, "gpu_joules": 400.0})
    meter = EnergyMeter(cfg(), tmp_path, [0, 1], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        run_windows(meter, nv, [(0.0, 2.0)])
    s = meter.summary(output_tokens=10, requests=1)
    assert s.gpu_nvml.per_gpu_joules == {"0": pytest.approx(300.0), "1": pytest.approx(100.0)}
    assert s.gpu_nvml.joules == pytest.approx(400.0)
    assert s.gpu_relative_difference == pytest.approx(0.0)
    assert factory.trackers[0].kwargs["gpu_ids"] == [0, 1]


def test_cuda_visible_devices_maps_to_nvml_indices(tmp_path: Path, clock: FakeClock, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    nv = FakeNvml(clock, count=4)
    nv.watts = [0.0, 0.0, 0.0, 70.0]
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        run_windows(meter, nv, [(0.0, 2.0)])
    s = meter.summary(output_tokens=1, requests=1)
    assert s.gpu_nvml.per_gpu_joules == {"0": pytest.approx(140.0)}
    assert factory.trackers[0].kwargs["gpu_ids"] == [3]
    # A cgroup that already hides the other GPUs: NVML numbers from 0 as CUDA does.
    assert cuda_to_nvml_indices([0, 1], device_count=2, visible="2,3") == ([0, 1], [])
    assert cuda_to_nvml_indices([0], 4, visible="GPU-abc")[1]


def test_counter_unsupported_falls_back_to_power_samples(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock, count=2, counter=False)
    nv.watts = [100.0, 40.0]
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0, "gpu_joules": 280.0})
    meter = EnergyMeter(cfg(), tmp_path, [0, 1], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        run_windows(meter, nv, [(0.0, 2.0)])
    s = meter.summary(output_tokens=1, requests=1)
    assert s.gpu_nvml.method == "nvml-power-samples"
    assert s.components["gpu"].method == "nvml-power-samples"
    assert s.gpu_nvml.per_gpu_joules == {"0": pytest.approx(200.0), "1": pytest.approx(80.0)}
    assert any("fewer than 10 GPU power samples" in w for w in s.warnings)


def test_power_sampler_thread_integrates_real_samples():
    clock = time.perf_counter
    nv = SimpleNamespace(power_mw=lambda h: 120_000)
    src = SampledGpuSource(nv, [0], clock, interval_s=0.005)
    src.start()
    begin = src.read(clock())
    time.sleep(0.2)
    end = src.read(clock())
    src.stop()
    e = src.energy(begin, end)
    assert e.samples >= 10
    assert e.per_gpu_joules[0] == pytest.approx(120.0 * (end.time_s - begin.time_s))
    assert trapezoid_joules([(0.0, 0.0), (1.0, 10.0), (3.0, 10.0)]) == pytest.approx(25.0)


def test_pynvml_errors_are_translated(monkeypatch: pytest.MonkeyPatch):
    import pynvml

    def unsupported(handle: Any) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def not_found(handle: Any) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", unsupported)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", not_found)
    lib = Pynvml()
    with pytest.raises(NvmlNotSupported):
        lib.total_energy_mj(object())
    with pytest.raises(NvmlError) as info:
        lib.power_mw(object())
    assert not isinstance(info.value, NvmlNotSupported)


def test_counter_going_backwards_is_warned(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock, count=1)
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        meter.begin_window()
        nv.advance(2.0)
        nv.energy_mj[0] -= 1000
        meter.end_window()
    s = meter.summary(output_tokens=1, requests=1)
    assert s.gpu_nvml.joules == 0.0
    assert any("went backwards" in w for w in s.warnings)


def test_short_window_warning(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock, count=1)
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        run_windows(meter, nv, [(0.0, 0.4), (0.0, 2.0)])
    s = meter.summary(output_tokens=1, requests=1)
    assert any("1 of 2 measured windows are shorter than 1 s" in w for w in s.warnings)
    assert not any("shorter than CodeCarbon's sampling interval" in w for w in s.warnings)


# --- baseline ----------------------------------------------------------------------------


def test_baseline_subtraction(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch):
    nv = FakeNvml(clock, count=1)
    nv.watts = [50.0]
    factory = FakeFactory(
        {"cpu_joules": 20.0, "ram_joules": 10.0},  # idle: 30 J over the 2 s baseline
        {"cpu_joules": 60.0, "ram_joules": 20.0, "gpu_joules": 1000.0},
    )
    meter = EnergyMeter(
        cfg(baseline_seconds=2.0),
        tmp_path,
        [0],
        nvml=nv,
        clock=clock,
        wall_clock=clock,
        tracker_factory=factory,
    )
    # The idle GPU draws 50 W while the baseline sleeps.
    monkeypatch.setattr(idle_baseline, "_sleep", nv.advance)
    b = meter.measure_baseline()
    assert b.watts == pytest.approx(15.0 + 50.0)
    assert factory.trackers[0].kwargs["output_methods"] == []  # the baseline writes no CSV
    nv.advance(30.0)  # model load
    nv.watts = [250.0]
    with meter.tracking():
        run_windows(meter, nv, [(0.0, 4.0)])
    s = meter.summary(output_tokens=100, requests=2)
    base = s.baseline
    assert base.watts == pytest.approx(65.0)
    assert base.joules == pytest.approx(65.0 * 4.0)
    assert base.measured_seconds == pytest.approx(2.0)
    assert base.age_seconds == pytest.approx(30.0)
    assert base.cached is False
    assert (base.measured_by, base.host) == (tmp_path.name, socket.gethostname())
    assert base.tracker_start_seconds == pytest.approx(0.0)  # the fake starts at once
    assert base.method == (
        "cpu=codecarbon-cpu-load-estimate;ram=codecarbon-ram-estimate;gpu=nvml-counter"
    )
    gross = 60.0 + 20.0 + 1000.0
    assert s.gross_joules == pytest.approx(gross)
    assert s.net_joules == pytest.approx(gross - 260.0)
    assert s.per_output_token_joules.net == pytest.approx((gross - 260.0) / 100)
    assert s.per_request_joules.net == pytest.approx((gross - 260.0) / 2)
    assert s.average_power_watts.net == pytest.approx((gross - 260.0) / 4.0)
    assert not any("baseline missing" in w for w in s.warnings)


def test_baseline_missing_warning(tmp_path: Path, clock: FakeClock):
    factory = FakeFactory({"cpu_joules": 4.0, "ram_joules": 1.0})
    meter = EnergyMeter(
        cfg(baseline_seconds=0.0), tmp_path, [], clock=clock, tracker_factory=factory
    )
    assert meter.measure_baseline() is None
    with meter.tracking():
        meter.begin_window()
        clock.now += 2.0
        meter.end_window()
    s = meter.summary(output_tokens=5, requests=1)
    assert s.baseline is None and s.net_joules is None
    assert s.per_output_token_joules == GrossNet(pytest.approx(1.0), None)
    assert "gpu" not in s.components and s.gpu_nvml is None
    assert any("baseline missing (baseline_seconds=0)" in w for w in s.warnings)
    assert len(factory.trackers) == 1


def _sweep_meter(
    c: EnergyConfig, run_dir: Path, sweep: Path, clock: FakeClock, factory: FakeFactory
) -> EnergyMeter:
    return EnergyMeter(
        c, run_dir, [], clock=clock, wall_clock=clock, tracker_factory=factory, sweep_dir=sweep
    )


def test_a_sweeps_later_runs_reuse_the_first_runs_baseline_with_its_age(
    tmp_path: Path, clock: FakeClock
):
    scripts = [{"cpu_joules": 10.0, "ram_joules": 0.0}, {"cpu_joules": 1.0, "ram_joules": 1.0}]
    factory = FakeFactory(*scripts, *scripts)
    c = cfg(baseline_seconds=1.0, cache_baseline=True)
    sweep = tmp_path / "sweep"
    first = _sweep_meter(c, sweep / "a", sweep, clock, factory)
    first.measure_baseline()
    with first.tracking():
        pass
    assert first.summary(1, 1).baseline.cached is False
    clock.now += 100.0
    second = _sweep_meter(c, sweep / "b", sweep, clock, factory)
    second.measure_baseline()
    assert len(factory.trackers) == 2  # no new baseline tracker
    with second.tracking():
        second.begin_window()
        clock.now += 1.0
        second.end_window()
    s = second.summary(output_tokens=1, requests=1)
    assert s.baseline.cached is True
    assert s.baseline.watts == pytest.approx(10.0)
    # measured 1000..1001, second run's tracking starts at 1101
    assert s.baseline.age_seconds == pytest.approx(100.0)
    assert s.baseline.joules == pytest.approx(10.0)
    assert (s.baseline.measured_by, s.baseline.host) == ("a", socket.gethostname())
    assert s.baseline.tracker_start_seconds is None  # this run started no baseline tracker


def test_a_baseline_older_than_the_max_age_is_measured_again(tmp_path: Path, clock: FakeClock):
    scripts = [{"cpu_joules": 10.0, "ram_joules": 0.0}, {"cpu_joules": 30.0, "ram_joules": 0.0}]
    factory = FakeFactory(*scripts)
    c = cfg(baseline_seconds=1.0, cache_baseline=True, baseline_max_age_s=60.0)
    sweep = tmp_path / "sweep"
    _sweep_meter(c, sweep / "a", sweep, clock, factory).measure_baseline()
    clock.now += 61.0
    second = _sweep_meter(c, sweep / "b", sweep, clock, factory)
    assert second.measure_baseline().watts == pytest.approx(30.0)
    assert len(factory.trackers) == 2
    assert second.summary(1, 1).baseline.measured_by == "b"


@pytest.mark.parametrize(
    ("reason", "cache", "sweep_of_second", "setting"),
    [
        ("a run on its own", True, None, {}),
        ("cache_baseline=false", False, "sweep", {}),
        ("another baseline setting", True, "sweep", {"pue": 1.5}),
        ("another sweep", True, "other", {}),
    ],
)
def test_a_baseline_is_not_reused(
    tmp_path: Path, clock: FakeClock, reason, cache, sweep_of_second, setting
):
    scripts = [{"cpu_joules": 10.0, "ram_joules": 0.0}, {"cpu_joules": 30.0, "ram_joules": 0.0}]
    factory = FakeFactory(*scripts)
    c = cfg(baseline_seconds=1.0, cache_baseline=cache)
    _sweep_meter(c, tmp_path / "sweep" / "a", tmp_path / "sweep", clock, factory).measure_baseline()
    second_sweep = tmp_path / sweep_of_second if sweep_of_second else None
    second = _sweep_meter(
        cfg(baseline_seconds=1.0, cache_baseline=cache, **setting),
        tmp_path / "b",
        second_sweep,
        clock,
        factory,
    )
    b = second.measure_baseline()
    assert len(factory.trackers) == 2, reason
    assert b.watts == pytest.approx(30.0)
    assert second.summary(1, 1).baseline.cached is False


# --- lifecycle ---------------------------------------------------------------------------


def test_off_backend_returns_none_and_starts_nothing(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock)

    def factory(**kw: Any) -> None:
        raise AssertionError("no tracker when energy is off")

    c = EnergyConfig(backend=EnergyBackend.off, baseline_seconds=5.0)
    meter = EnergyMeter(c, tmp_path, [0, 1], nvml=nv, clock=clock, tracker_factory=factory)
    assert meter.measure_baseline() is None
    with meter.tracking():
        meter.begin_window()
        meter.end_window()
    assert meter.summary(output_tokens=10, requests=1) is None
    assert nv.calls == []
    assert clock.now == 1000.0  # no baseline sleep
    off_by_name = EnergyMeter(EnergyConfig(backend="off"), tmp_path, [], tracker_factory=factory)
    assert off_by_name.summary(1, 1) is None


@pytest.mark.parametrize("exc", [RuntimeError("generate failed"), KeyboardInterrupt()])
def test_tracker_stopped_when_body_raises(tmp_path: Path, clock: FakeClock, exc: BaseException):
    nv = FakeNvml(clock, count=1, counter=False)
    nv.watts = [100.0]
    factory = FakeFactory({"cpu_joules": 3.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with pytest.raises(type(exc)), meter.tracking():
        run_windows(meter, nv, [(1.0, 2.0)])
        meter.begin_window()
        nv.advance(1.0)
        raise exc
    assert factory.events == ["start", "stop"]
    assert meter._impl._gpus._source._thread is None  # the sampler thread is stopped too
    s = meter.summary(output_tokens=4, requests=2)
    assert s.repeats == 1
    assert s.gpu_nvml.joules == pytest.approx(200.0)
    # tracked 5 s (gaps 1+1, window 2, open window 1): 2/5 of the tracker totals
    assert s.components["cpu"].joules == pytest.approx(3.0 * 2.0 / 5.0)
    assert any("still open" in w for w in s.warnings)


def test_codecarbon_logs_reach_the_run_logger(tmp_path: Path, clock: FakeClock):
    records: list[logging.LogRecord] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    run_log = logging.getLogger("test.run")
    run_log.addHandler(ListHandler())
    cc = logging.getLogger("codecarbon")
    before = list(cc.handlers)
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [], logger=run_log, clock=clock, tracker_factory=factory)
    with meter.tracking():
        pass
    assert [r.getMessage() for r in records] == ["fake tracker started"]
    assert cc.handlers == before


def test_codecarbons_rapl_notices_go_to_run_log_with_one_line_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from runner.measure import codecarbon as cc_mod

    monkeypatch.setattr(cc_mod, "_provenance_said", False)
    said: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    run_log = logging.getLogger("test.rapl")
    run_log.propagate = False
    run_log.setLevel(logging.INFO)
    run_log.addHandler(ListHandler())
    file_handler = logging.FileHandler(tmp_path / "run.log")
    root = logging.getLogger()
    root.addHandler(file_handler)
    try:
        with cc_mod._codecarbon_logs_to(run_log):
            for _ in range(2):  # every tracker says it again
                logging.getLogger("codecarbon").warning("No CPU tracking mode found. RAPL ...")
            logging.getLogger("codecarbon").warning("something else")
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
    assert said == [cc_mod.PROVENANCE, "something else"]
    assert (tmp_path / "run.log").read_text().count("No CPU tracking mode found") == 2


def test_rapl_is_a_measurement_and_missing_tracker_data_is_reported(tmp_path, clock):
    factory = FakeFactory({"cpu_joules": 5.0, "ram_joules": 1.0, "cpu_mode": "intel_rapl"})
    meter = EnergyMeter(cfg(), tmp_path, [], clock=clock, tracker_factory=factory)
    with meter.tracking():
        meter.begin_window()
        clock.now += 2.0
        meter.end_window()
    s = meter.summary(1, 1)
    assert s.components["cpu"].method == "rapl"
    assert s.is_estimate is False
    assert not any("estimate" in w for w in s.warnings)

    def broken(**kw: Any) -> Any:
        raise OSError("no hardware")

    meter = EnergyMeter(cfg(), tmp_path, [], clock=clock, tracker_factory=broken)
    with meter.tracking():
        meter.begin_window()
        clock.now += 2.0
        meter.end_window()
    s = meter.summary(1, 1)
    assert s.gross_joules is None and s.components["cpu"].joules is None
    assert any("failed to start" in w for w in s.warnings)


def test_unknown_country_is_warned(tmp_path: Path, clock: FakeClock):
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(
        cfg(country_iso_code="XYZ"), tmp_path, [], clock=clock, tracker_factory=factory
    )
    with meter.tracking():
        meter.begin_window()
        clock.now += 2.0
        meter.end_window()
    s = meter.summary(1, 1)
    assert s.country_iso_code == "XYZ"
    assert any("'XYZ' is not in CodeCarbon's energy-mix table" in w for w in s.warnings)


def test_missing_nvml_is_a_stand_in(tmp_path: Path, clock: FakeClock):
    class NoNvml(FakeNvml):
        def init(self) -> None:
            raise NvmlError("NVML Shared Library Not Found")

    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    nv = NoNvml(clock)
    meter = EnergyMeter(cfg(), tmp_path, [0], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        meter.begin_window()
        clock.now += 2.0
        meter.end_window()
    s = meter.summary(1, 1)
    assert s.gpu_nvml is None
    # A GPU run without a GPU figure has no honest total.
    assert s.components["gpu"] == EnergyComponent(None, "codecarbon-gpu")
    assert s.gross_joules is None and s.emissions_kg is None
    assert any("NVML unavailable" in w for w in s.warnings)


def test_cpu_run_never_touches_nvml_and_window_misuse(tmp_path: Path, clock: FakeClock):
    nv = FakeNvml(clock)
    factory = FakeFactory({"cpu_joules": 1.0, "ram_joules": 1.0})
    meter = EnergyMeter(cfg(), tmp_path, [], nvml=nv, clock=clock, tracker_factory=factory)
    with meter.tracking():
        assert meter.end_window() is None
        meter.begin_window()
        with pytest.raises(RuntimeError):
            meter.begin_window()
        clock.now += 1.5
        assert meter.end_window().seconds == pytest.approx(1.5)
    assert nv.calls == []
    assert factory.trackers[0].kwargs["gpu_ids"] == []
    with pytest.raises(RuntimeError), meter.tracking():
        pass


# --- real CodeCarbon ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_codecarbon_offline_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    attempts: list[Any] = []

    def no_network(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1:] or kwargs)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_dir = tmp_path / "run"
    c = cfg(baseline_seconds=0.5, measure_power_secs=0.5)

    t0 = time.perf_counter()
    meter = EnergyMeter(c, run_dir, [])
    meter.measure_baseline()
    with meter.tracking():
        for _ in range(2):
            meter.begin_window()
            end = time.perf_counter() + 0.6
            while time.perf_counter() < end:
                sum(i * i for i in range(1000))
            meter.end_window()
    s = meter.summary(output_tokens=64, requests=2)
    elapsed = time.perf_counter() - t0

    assert attempts == []
    assert sorted(p.name for p in run_dir.iterdir()) == ["emissions.csv"]
    # Its one row names the run, so emissions.csv files of a sweep join back to result.json.
    rows = list(csv.DictReader((run_dir / "emissions.csv").open()))
    assert [(r["project_name"], r["experiment_id"]) for r in rows] == [("llm-sweep-runner", "run")]
    assert list(cwd.iterdir()) == []
    assert not Path("emissions.csv").exists()
    json.dumps(s.to_dict(), allow_nan=False)
    assert s.components["cpu"].joules > 0
    assert s.components["ram"].joules > 0
    assert s.components["cpu"].method in {
        "rapl",
        "codecarbon-cpu-load-estimate",
        "codecarbon-cpu-tdp-estimate",
    }
    assert "estimate" in s.components["ram"].method
    assert s.baseline.watts > 0 and s.net_joules is not None
    assert s.codecarbon_version == codecarbon_version() != "unknown"
    assert s.carbon_intensity_g_per_kwh > 0 and s.emissions_kg > 0
    assert elapsed < 30


@pytest.mark.gpu
def test_real_nvml_window_on_gpu(tmp_path: Path):
    lib = open_nvml()
    if lib is None or lib.device_count() == 0:
        pytest.skip("no NVIDIA GPU with NVML here")
    meter = EnergyMeter(cfg(baseline_seconds=1.0), tmp_path, [0], nvml=lib)
    meter.measure_baseline()
    with meter.tracking():
        meter.begin_window()
        time.sleep(1.5)
        meter.end_window()
    s = meter.summary(output_tokens=1, requests=1)
    json.dumps(s.to_dict(), allow_nan=False)
    assert s.gpu_nvml.method in {"nvml-counter", "nvml-power-samples"}
    assert s.gpu_nvml.joules > 0
    assert s.components["gpu"].joules > 0
    assert s.codecarbon_gpu_joules is not None
    assert "gpu=nvml-" in s.baseline.method
