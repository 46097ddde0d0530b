"""The hardware time series sources: /proc and sysfs trees laid out as the kernel lays them
out (in tmp_path), the real process tree, this real machine, and NVML faked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.hardware.cpu import (
    CPUFREQ_PATH,
    RAPL_PATH,
    THERMAL_PATHS,
    CpuLoad,
    ProcessTree,
    cpu_governors,
    cpu_sources,
)
from runner.hardware.gpu import (
    HW_THERMAL,
    SW_POWER_CAP,
    THERMAL_BITS,
    gpu_sources,
    theoretical_bandwidth_gbs,
    throttle_names,
)
from runner.hardware.sources import Absent
from runner.measure.nvml import NvmlError, Pynvml
from tests.fake_nvml import FakeClock, FakeNvml


def put(root: Path, files: dict[str, str | int]) -> None:
    """Write ``files`` (path under root -> content) as the kernel would show them."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{content}\n")


def by_name(sources: list[Any]) -> dict[str, Any]:
    return {s.name: s for s in sources}


def stat(user: int, system: int, idle: int, iowait: int, cpus: int = 4) -> str:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice
    lines = [f"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0"]
    lines += [f"cpu{i} 1 0 1 1 0 0 0 0 0 0" for i in range(cpus)]
    return "\n".join([*lines, "intr 12345", "ctxt 678", "btime 1700000000"])


# --- /proc: the machine's load ----------------------------------------------------------


def test_machine_cores_from_proc_stat_and_first_read_none(tmp_path: Path):
    put(
        tmp_path, {"proc/stat": stat(1000, 500, 8000, 500), "proc/loadavg": "1.25 0.9 0.5 2/118 99"}
    )
    sources, absent = cpu_sources(tmp_path, pid=os.getpid())
    load = by_name(sources)["cpu_load"]
    assert isinstance(load, CpuLoad) and load.cpus == 4
    first = load.read(10.0)
    assert first["cpu_machine_cores"] is None and first["cpu_tree_cores"] is None
    assert first["cpu_other_cores"] is None
    assert first["load1"] == 1.25 and first["rss_bytes"] > 0
    # +250 user +50 system +80 idle +20 iowait: busy 300 of 400 jiffies, on 4 CPUs = 3 cores.
    put(tmp_path, {"proc/stat": stat(1250, 550, 8080, 520)})
    second = load.read(11.0)
    assert second["cpu_machine_cores"] == pytest.approx(3.0)
    own = second["cpu_tree_cores"]
    assert own is not None and own >= 0
    assert second["cpu_other_cores"] == pytest.approx(max(0.0, 3.0 - own))
    assert [a.source for a in absent] == ["thermal", "cpufreq", "rapl"]


def test_process_tree_counts_a_busy_thread():
    load = by_name(cpu_sources()[0])["cpu_load"]
    load.read(time.perf_counter())

    def spin() -> None:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    out = load.read(time.perf_counter())
    assert out["cpu_tree_cores"] > 0.5
    assert out["rss_bytes"] > 10_000_000  # a Python with pytest loaded


def test_process_tree_counts_a_new_child_and_never_goes_negative():
    load = by_name(cpu_sources()[0])["cpu_load"]
    t0 = time.perf_counter()
    load.read(t0)
    spin = "import time\nend = time.time() + 0.3\nwhile time.time() < end: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        # A new child is found when the tree is listed again (at most once a second).
        time.sleep(ProcessTree.LIST_EVERY_SECONDS + 0.1)
        out = load.read(time.perf_counter())
        # The child started after the first read: all its CPU time (≥ 0.3 s) is this interval's.
        assert out["cpu_tree_cores"] > 0.3 / (time.perf_counter() - t0) * 0.8
    finally:
        child.kill()
        child.wait()
    time.sleep(0.2)  # CPU times tick in jiffies (10 ms): a longer interval than that
    after = load.read(time.perf_counter())  # the child's time is gone from the tree
    assert 0 <= after["cpu_tree_cores"] < 1.0


# --- sysfs: temperature, clocks, RAPL -----------------------------------------------------

THERMAL = {
    "sys/class/thermal/thermal_zone0/type": "acpitz",
    "sys/class/thermal/thermal_zone0/temp": 90000,  # a fallback only: there are CPU sensors
    "sys/class/thermal/thermal_zone1/type": "x86_pkg_temp",
    "sys/class/thermal/thermal_zone1/temp": 61000,
    "sys/class/thermal/thermal_zone2/type": "iwlwifi_1",
    "sys/class/thermal/thermal_zone2/temp": 95000,
    "sys/class/hwmon/hwmon0/name": "coretemp",
    "sys/class/hwmon/hwmon0/temp1_label": "Package id 0",
    "sys/class/hwmon/hwmon0/temp1_input": 65000,
    "sys/class/hwmon/hwmon0/temp2_label": "Core 0",  # a core: the package is taken
    "sys/class/hwmon/hwmon0/temp2_input": 99000,
    "sys/class/hwmon/hwmon1/name": "nvme",  # not the CPU
    "sys/class/hwmon/hwmon1/temp1_input": 80000,
    "sys/class/hwmon/hwmon2/name": "k10temp",
    "sys/class/hwmon/hwmon2/temp1_label": "Tctl",  # Tdie is there, and preferred
    "sys/class/hwmon/hwmon2/temp1_input": 70000,
    "sys/class/hwmon/hwmon2/temp3_label": "Tdie",
    "sys/class/hwmon/hwmon2/temp3_input": 68000,
}


def test_cpu_temperature_is_the_hottest_package_sensor(tmp_path: Path):
    put(tmp_path, THERMAL)
    thermal = by_name(cpu_sources(tmp_path)[0])["thermal"]
    assert thermal.read(1.0) == {"cpu_temp_c": 68.0}  # max(61 pkg zone, 65 Package id 0, 68 Tdie)
    put(tmp_path, {"sys/class/hwmon/hwmon0/temp1_input": 83500})
    assert thermal.read(2.0) == {"cpu_temp_c": 83.5}


def test_acpitz_is_the_fallback(tmp_path: Path):
    put(tmp_path, {k: v for k, v in THERMAL.items() if "zone0" in k or "zone2" in k})
    thermal = by_name(cpu_sources(tmp_path)[0])["thermal"]
    assert thermal.read(1.0) == {"cpu_temp_c": 90.0}


def test_cpufreq_in_mhz_and_governors(tmp_path: Path):
    base = "sys/devices/system/cpu"
    put(
        tmp_path,
        {
            f"{base}/cpu0/cpufreq/scaling_cur_freq": 2000000,
            f"{base}/cpu1/cpufreq/scaling_cur_freq": 3000000,
            f"{base}/cpu10/cpufreq/scaling_cur_freq": 1000000,
            f"{base}/cpu0/cpufreq/scaling_governor": "performance",
            f"{base}/cpu1/cpufreq/scaling_governor": "powersave",
            f"{base}/cpu10/cpufreq/scaling_governor": "powersave",
            f"{base}/cpufreq/policy0/scaling_cur_freq": 9999999,  # a policy, not a CPU
            f"{base}/cpuidle/current_driver": "intel_idle",
        },
    )
    freq = by_name(cpu_sources(tmp_path)[0])["cpufreq"]
    assert freq.read(1.0) == {
        "cpu_freq_mhz_mean": 2000.0,
        "cpu_freq_mhz_min": 1000.0,
        "cpu_freq_mhz_max": 3000.0,
    }
    put(tmp_path, {f"{base}/cpu10/cpufreq/scaling_cur_freq": 4000000})
    assert freq.read(2.0)["cpu_freq_mhz_max"] == 4000.0
    assert cpu_governors(tmp_path) == {"performance": 1, "powersave": 2}
    assert cpu_governors(tmp_path / "elsewhere") is None


def rapl_tree(root: Path) -> None:
    cap = "sys/class/powercap"
    put(
        root,
        {
            f"{cap}/intel-rapl/enabled": 1,  # the control type, not a zone
            f"{cap}/intel-rapl:0/name": "package-0",
            f"{cap}/intel-rapl:0/energy_uj": 1_000_000,
            f"{cap}/intel-rapl:0/max_energy_range_uj": 262143328850,
            f"{cap}/intel-rapl:0:0/name": "core",
            f"{cap}/intel-rapl:0:0/energy_uj": 900_000,
            f"{cap}/intel-rapl:0:0/max_energy_range_uj": 1_000_000,
            f"{cap}/intel-rapl:0:1/name": "dram",
            f"{cap}/intel-rapl:0:1/energy_uj": 7_000,
            f"{cap}/intel-rapl:0:1/max_energy_range_uj": 262143328850,
            f"{cap}/intel-rapl:1/name": "psys",
            f"{cap}/intel-rapl:1/energy_uj": 5_000,  # no max_energy_range_uj
        },
    )


def test_rapl_power_from_energy_deltas_with_wrap_around(tmp_path: Path):
    rapl_tree(tmp_path)
    sources, absent = cpu_sources(tmp_path)
    rapl = by_name(sources)["rapl"]
    assert "rapl" not in {a.source for a in absent}
    assert rapl.read(10.0) == {
        "rapl_package_0_w": None,
        "rapl_package_0_core_w": None,
        "rapl_package_0_dram_w": None,
        "rapl_psys_w": None,
    }
    cap = "sys/class/powercap"
    put(
        tmp_path,
        {
            f"{cap}/intel-rapl:0/energy_uj": 51_000_000,  # +50 J in 2 s
            f"{cap}/intel-rapl:0:0/energy_uj": 100_000,  # wrapped: 100k + 1M range - 900k
            f"{cap}/intel-rapl:1/energy_uj": 1_000,  # went back, range unknown
        },
    )
    assert rapl.read(12.0) == {
        "rapl_package_0_w": pytest.approx(25.0),
        "rapl_package_0_core_w": pytest.approx(0.1),  # 0.2 J / 2 s
        "rapl_package_0_dram_w": 0.0,
        "rapl_psys_w": None,
    }


def forbid(monkeypatch: pytest.MonkeyPatch, reject: Any) -> None:
    """Reading a file that ``reject(path)`` names raises PermissionError (as energy_uj does
    for anyone but root since Linux 5.10; the tests run as root, so chmod would not do)."""
    real = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if reject(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


def test_unreadable_rapl_is_absent_once_with_the_reason(tmp_path, monkeypatch):
    rapl_tree(tmp_path)
    forbid(monkeypatch, lambda p: p.name == "energy_uj")
    sources, absent = cpu_sources(tmp_path)
    assert "rapl" not in by_name(sources)
    assert [a.line() for a in absent if a.source == "rapl"] == [
        f"rapl: {RAPL_PATH} (not readable: PermissionError)"
    ]


def test_one_unreadable_zone_is_named_and_the_others_sampled(tmp_path, monkeypatch):
    rapl_tree(tmp_path)
    forbid(monkeypatch, lambda p: p.parent.name == "intel-rapl:0:1" and p.name == "energy_uj")
    sources, absent = cpu_sources(tmp_path)
    assert set(by_name(sources)["rapl"].read(1.0)) == {
        "rapl_package_0_w",
        "rapl_package_0_core_w",
        "rapl_psys_w",
    }
    assert [a for a in absent if a.source == "rapl"] == [
        Absent(
            "rapl",
            "/sys/class/powercap/intel-rapl:0:1/energy_uj",
            "not readable: PermissionError",
        )
    ]


def test_missing_trees_are_absent_once_and_give_no_columns(tmp_path: Path):
    sources, absent = cpu_sources(tmp_path, pid=os.getpid())
    assert [a.line() for a in absent] == [
        "cpu_load: /proc/stat (not found)",
        "cpu_load: /proc/loadavg (not found)",
        f"thermal: {THERMAL_PATHS} (no CPU sensor found)",
        f"cpufreq: {CPUFREQ_PATH} (not found)",
        f"rapl: {RAPL_PATH} (not found)",
    ]
    # Only the process tree is left: it needs no /proc tree under root.
    assert [s.name for s in sources] == ["cpu_load"]
    assert set(sources[0].read(1.0)) == {"cpu_tree_cores", "rss_bytes"}


def test_a_process_that_does_not_exist_is_absent(tmp_path: Path):
    put(tmp_path, {"proc/stat": stat(1, 1, 1, 1), "proc/loadavg": "0.1 0.1 0.1 1/1 1"})
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    sources, absent = cpu_sources(tmp_path, pid=child.pid)
    assert absent[0] == Absent("cpu_load", f"process {child.pid}", "no such process")
    assert set(sources[0].read(1.0)) == {"cpu_machine_cores", "load1"}


def test_this_machine(capsys: pytest.CaptureFixture[str]):
    sources, absent = cpu_sources()
    names = [s.name for s in sources]
    with capsys.disabled():
        print(f"\nthis machine: sources {names}; absent {[a.line() for a in absent]}")
    load = by_name(sources)["cpu_load"]
    load.read(time.perf_counter())
    time.sleep(0.05)
    out = load.read(time.perf_counter())
    assert {"cpu_tree_cores", "cpu_machine_cores", "cpu_other_cores", "load1"} <= set(out)
    assert out["cpu_machine_cores"] is not None and 0 <= out["cpu_machine_cores"] <= os.cpu_count()
    for kind in ("thermal", "cpufreq", "rapl"):
        # a source or absent, once, never both
        assert (kind in names) + sum(a.source == kind for a in absent) == 1
    for source in sources:
        assert source.read(time.perf_counter())  # columns, no exception


# --- NVML ---------------------------------------------------------------------------------


def test_gpu_columns_per_device():
    nv = FakeNvml(FakeClock(), count=2)
    nv.watts = [300.0, 150.5]
    nv.sm_mhz = [1980, 1410]
    nv.temp_c = [70, 55]
    nv.util = [(98, 60), (10, 2)]
    nv.reasons = [SW_POWER_CAP, 0]
    nv.counterless = {1}
    sources, absent = gpu_sources(nv, [0, 1])
    assert absent == [] and [s.name for s in sources] == ["gpu0", "gpu1"]
    row = {k: v for s in sources for k, v in s.read(1.0).items()}
    assert row == {
        "gpu0_power_w": 300.0,
        "gpu0_energy_j": 5000.0,
        "gpu0_sm_clock_mhz": 1980,
        "gpu0_mem_clock_mhz": 2619,
        "gpu0_temp_c": 70,
        "gpu0_util_pct": 98,
        "gpu0_mem_util_pct": 60,
        "gpu0_throttle_reasons": SW_POWER_CAP,
        "gpu1_power_w": 150.5,
        "gpu1_energy_j": None,  # no energy counter on this one: power still comes
        "gpu1_sm_clock_mhz": 1410,
        "gpu1_mem_clock_mhz": 2619,
        "gpu1_temp_c": 55,
        "gpu1_util_pct": 10,
        "gpu1_mem_util_pct": 2,
        "gpu1_throttle_reasons": 0,
    }
    nv.advance(2.0)  # 300 W for 2 s
    assert sources[0].read(3.0)["gpu0_energy_j"] == pytest.approx(5600.0)


def test_a_failing_nvml_query_reads_none():
    class Flaky(FakeNvml):
        def clocks_mhz(self, handle: int) -> tuple[int, int]:
            raise NvmlError("GPU is lost")

    source = gpu_sources(Flaky(FakeClock(), count=1), [0])[0][0]
    out = source.read(1.0)
    assert out["gpu0_sm_clock_mhz"] is None and out["gpu0_mem_clock_mhz"] is None
    assert out["gpu0_temp_c"] == 40


def test_gpu_absent_lines():
    nv = FakeNvml(FakeClock(), count=1)
    assert gpu_sources(None, [0]) == (
        [],
        [Absent("gpu", "NVML (nvidia-ml-py)", "NVML unavailable")],
    )
    assert gpu_sources(nv, []) == ([], [Absent("gpu", "NVML", "no GPU visible")])

    class OneGpu(FakeNvml):
        def handle(self, index: int) -> int:
            if index >= self.count:
                raise NvmlError("Invalid Argument")
            return index

    sources, absent = gpu_sources(OneGpu(FakeClock(), count=1), [0, 3])
    assert [s.name for s in sources] == ["gpu0"]
    assert [a.line() for a in absent] == ["gpu: NVML device 3 (not readable: Invalid Argument)"]


def test_throttle_names_and_bandwidth():
    assert throttle_names(0) == []
    assert throttle_names(SW_POWER_CAP | HW_THERMAL | 0x200) == [
        "sw_power_cap",
        "hw_thermal",
        "unknown_0x200",
    ]
    assert throttle_names(0x1 | 0x100) == ["gpu_idle", "display_clock"]
    assert throttle_names(THERMAL_BITS) == ["sw_thermal", "hw_thermal"]
    # H100 SXM, HBM3: 5120 bits / 8 = 640 bytes per transfer; 2619 MHz × 2 (DDR) = 5238e6
    # transfers/s; 640 × 5238e6 = 3352.32e9 B/s (the datasheet says 3.35 TB/s).
    assert theoretical_bandwidth_gbs(5120, 2619) == pytest.approx(3352.32)


def test_pynvml_wrapper_new_queries(monkeypatch: pytest.MonkeyPatch):
    import pynvml

    def clock(handle: Any, kind: int) -> int:
        return {pynvml.NVML_CLOCK_SM: 1755, pynvml.NVML_CLOCK_MEM: 2619}[kind]

    def unsupported(handle: Any) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetClockInfo", clock)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMaxClockInfo", clock)
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=87, memory=41)
    )
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", lambda h: 0x44)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryBusWidth", unsupported)
    lib = Pynvml()
    assert lib.clocks_mhz(object()) == (1755, 2619)
    assert lib.max_memory_clock_mhz(object()) == 2619
    assert lib.utilization_pct(object()) == (87, 41)
    assert lib.throttle_reasons(object()) == 0x44
    assert lib.memory_bus_width_bits(object()) is None
    # An older pynvml knows only the "throttle" name.
    monkeypatch.delattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", lambda h: 0x20)
    assert lib.throttle_reasons(object()) == 0x20
