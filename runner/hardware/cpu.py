"""The CPU side of the time series, read from /proc and sysfs as the kernel lays them out
under ``root`` (tests pass a tree of their own):

- ``cpu_load``: the run's process tree (psutil) and the whole machine (``/proc/stat``,
  ``/proc/loadavg``), :class:`CpuLoad`;
- ``thermal``: the CPU temperature, from the sensors :func:`cpu_temp_sensors` picks;
- ``cpufreq``: the CPUs' current clocks, in MHz;
- ``rapl``: the power of each RAPL domain, from its energy counter (:func:`find_rapl`).

Each is looked for once (:func:`cpu_sources`); what the machine lacks is an :class:`Absent`
with the path looked for, never a source of empty columns.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.engines.processes import tree
from runner.hardware.sources import Absent, Reading, Source, read_number, unreadable
from runner.measure.cooldown import MachineReader

THERMAL_PATHS = "/sys/class/thermal/thermal_zone*/temp, /sys/class/hwmon/hwmon*/temp*_input"
CPUFREQ_PATH = "/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq"
RAPL_PATH = "/sys/class/powercap/intel-rapl:*/energy_uj"
RAPL_ZONES = ("intel-rapl:*", "amd-rapl:*")
CPU_HWMON = ("coretemp", "k10temp", "zenpower", "cpu_thermal")
PACKAGE_LABELS = ("Package id", "Tdie", "Tctl")  # in this order of preference, per chip
FALLBACK_ZONES = ("acpitz",)
FREQ_COLUMNS = ("cpu_freq_mhz_mean", "cpu_freq_mhz_min", "cpu_freq_mhz_max")


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _shown(path: Path, root: Path) -> str:
    """``path`` as the kernel names it, whatever ``root`` the tree is under."""
    return "/" + str(path.relative_to(root))


# --- process tree and machine load ------------------------------------------------------


class ProcessTree:
    """CPU use (cores) and resident memory (bytes) of ``pid`` and its descendants
    (runner.engines.processes.tree).

    The cores are the CPU seconds (user + system) used since the previous read over the
    seconds between the reads, summed per process (a pid with its start time, so a reused
    pid is a new process): a process seen at both reads adds its increase; one first seen
    adds all its CPU time (it started since the previous read); one that ended in between
    adds nothing. So the figure may miss the last moments of a process that ended, and is
    never negative."""

    # Finding the descendants reads every process's /proc entry (about 1 ms here, most of
    # a tick): done at most once a second; in between the known processes are read.
    LIST_EVERY_SECONDS = 1.0

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu: dict[tuple[int, float], float] = {}
        self._time: float | None = None
        self._procs: list[Any] = []
        self._listed: float | None = None

    def _processes(self, now: float) -> list[Any]:
        import psutil

        if self._listed is None or now - self._listed >= self.LIST_EVERY_SECONDS:
            known = {p.pid: p for p in self._procs}
            procs = []
            for pid in tree(self.pid):
                with contextlib.suppress(psutil.Error):
                    procs.append(known[pid] if pid in known else psutil.Process(pid))
            self._procs, self._listed = procs, now
        return self._procs

    def read(self, now: float) -> tuple[float | None, int | None]:
        import psutil

        cpu: dict[tuple[int, float], float] = {}
        rss = 0
        with contextlib.suppress(psutil.Error):
            for proc in self._processes(now):
                with contextlib.suppress(psutil.Error):
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss += proc.memory_info().rss
                    cpu[(proc.pid, proc.create_time())] = times.user + times.system
        if not cpu:
            return None, None
        cores = None
        if self._time is not None and now > self._time:
            used = sum(max(0.0, t - self._cpu.get(key, 0.0)) for key, t in cpu.items())
            cores = used / (now - self._time)
        self._cpu, self._time = cpu, now
        return cores, rss


class CpuLoad:
    """``cpu_tree_cores`` and ``rss_bytes`` (the run's :class:`ProcessTree`);
    ``cpu_machine_cores``: the machine's CPUs busy, in cores (the busy share of all CPU
    jiffies in /proc/stat since the previous read, busy = total - idle - iowait, times the
    CPUs it lists: in a container, the host's); ``cpu_other_cores``: what the rest of the
    machine kept busy, machine - tree, at least 0; ``load1``: the 1-minute load average.
    Each only where its part was found (``tree`` None, ``cpus`` 0, ``load`` False: not)."""

    name = "cpu_load"

    def __init__(
        self, tree: ProcessTree | None, machine: MachineReader, cpus: int, load: bool
    ) -> None:
        self.tree, self.machine, self.cpus, self.load = tree, machine, cpus, load
        self._jiffies: tuple[float, float] | None = None

    def _machine_cores(self) -> float | None:
        jiffies, last = self.machine.cpu_times(), self._jiffies
        self._jiffies = jiffies
        if jiffies is None or last is None or jiffies[1] <= last[1]:
            return None
        return (jiffies[0] - last[0]) / (jiffies[1] - last[1]) * self.cpus

    def read(self, now: float) -> Reading:
        out: Reading = {}
        own = None
        if self.tree is not None:
            own, out["rss_bytes"] = self.tree.read(now)
            out["cpu_tree_cores"] = own
        if self.cpus:
            machine = out["cpu_machine_cores"] = self._machine_cores()
            if self.tree is not None:
                known = machine is not None and own is not None
                out["cpu_other_cores"] = max(0.0, machine - own) if known else None
        if self.load:
            out["load1"] = self.machine.load_1m()
        return out


# --- temperature ----------------------------------------------------------------------


def _package_inputs(chip: Path) -> list[Path]:
    inputs = sorted(chip.glob("temp*_input"))
    labels = {p: _text(p.with_name(p.name.replace("_input", "_label"))) for p in inputs}
    for prefix in PACKAGE_LABELS:
        if chosen := [p for p in inputs if labels[p].startswith(prefix)]:
            return chosen
    return inputs


def cpu_temp_sensors(root: Path) -> list[Path]:
    """The files (millidegrees Celsius) whose highest reading is ``cpu_temp_c``:

    1. hwmon chips named coretemp, k10temp, zenpower or cpu_thermal: on each, the inputs
       labelled with the first of ``Package id`` (one per socket), ``Tdie``, ``Tctl`` it
       has (Tdie before Tctl, which carries a fan-control offset on some Zen parts); all
       its inputs where it has none of these labels;
    2. thermal zones whose type names the CPU (contains ``pkg`` or ``cpu``:
       ``x86_pkg_temp``, ``cpu-thermal``, ...);
    3. only where 1 and 2 find nothing: ``acpitz`` zones (ACPI's, often the board's).

    Only files that read as a number now are kept; none: the machine has no CPU sensor.
    """
    chips = sorted((root / "sys/class/hwmon").glob("hwmon*"))
    hwmon = [p for c in chips if _text(c / "name") in CPU_HWMON for p in _package_inputs(c)]
    zones = {
        z: _text(z / "type").lower() for z in (root / "sys/class/thermal").glob("thermal_zone*")
    }
    package = sorted(z / "temp" for z, kind in zones.items() if "pkg" in kind or "cpu" in kind)
    fallback = sorted(z / "temp" for z, kind in zones.items() if kind in FALLBACK_ZONES)
    found = [p for p in hwmon + package if read_number(p) is not None]
    return found or [p for p in fallback if read_number(p) is not None]


class CpuTemperature:
    """``cpu_temp_c``: the highest of ``sensors`` (:func:`cpu_temp_sensors`), °C."""

    name = "thermal"

    def __init__(self, sensors: list[Path]) -> None:
        self.sensors = sensors

    def read(self, now: float) -> Reading:
        temps = [v for p in self.sensors if (v := read_number(p)) is not None]
        return {"cpu_temp_c": max(temps) / 1000.0 if temps else None}


# --- clocks ---------------------------------------------------------------------------


def _cpufreq_files(root: Path, leaf: str) -> list[Path]:
    """``cpu<N>/cpufreq/<leaf>`` of every CPU that has it, in CPU order."""
    cpus = [d for d in (root / "sys/devices/system/cpu").glob("cpu*") if d.name[3:].isdigit()]
    files = [d / "cpufreq" / leaf for d in sorted(cpus, key=lambda d: int(d.name[3:]))]
    return [f for f in files if f.exists()]


class CpuFrequency:
    """``cpu_freq_mhz_mean``, ``_min``, ``_max``: the CPUs' current clocks
    (``scaling_cur_freq``, kHz), in MHz."""

    name = "cpufreq"

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def read(self, now: float) -> Reading:
        mhz = [v / 1000.0 for f in self.files if (v := read_number(f)) is not None]
        if not mhz:
            return dict.fromkeys(FREQ_COLUMNS)
        return dict(zip(FREQ_COLUMNS, (sum(mhz) / len(mhz), min(mhz), max(mhz)), strict=True))


def cpu_governors(root: Path = Path("/")) -> dict[str, int] | None:
    """cpufreq's scaling governor -> the number of CPUs using it; None without cpufreq."""
    names = Counter(g for f in _cpufreq_files(root, "scaling_governor") if (g := _text(f)))
    return dict(sorted(names.items())) or None


# --- RAPL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RaplZone:
    """A RAPL domain: its column, its ``energy_uj`` file and the counter's range (µJ)."""

    column: str
    energy: Path
    range_uj: float | None


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def find_rapl(root: Path) -> tuple[list[RaplZone], list[tuple[str, str]]]:
    """The RAPL zones under /sys/class/powercap (``intel-rapl:0``, its sub-zones
    ``intel-rapl:0:0``, ...; AMD's ``amd-rapl:*`` alike), and ``(path, reason)`` for each
    whose ``energy_uj`` cannot be read (root only since Linux 5.10).

    A zone's column is ``rapl_<names>_w``: its name after those of the zones above it,
    non-alphanumerics as ``_``: package-0 gives ``rapl_package_0_w``, its sub-zones core
    and dram ``rapl_package_0_core_w`` and ``rapl_package_0_dram_w``, psys ``rapl_psys_w``.
    """
    base = root / "sys/class/powercap"
    dirs = sorted({d for pattern in RAPL_ZONES for d in base.glob(pattern)})
    names = {d.name: _text(d / "name") or d.name for d in dirs}
    zones: list[RaplZone] = []
    failed: list[tuple[str, str]] = []
    for d in dirs:
        parts = d.name.split(":")
        ids = [":".join(parts[:k]) for k in range(2, len(parts) + 1)]
        column = "rapl_" + "_".join(_slug(names.get(i, i)) for i in ids) + "_w"
        if any(z.column == column for z in zones):  # two zones of one name: tell them apart
            column = f"rapl_{_slug(d.name)}_w"
        if why := unreadable(d / "energy_uj"):
            failed.append((_shown(d / "energy_uj", root), why))
        else:
            zones.append(RaplZone(column, d / "energy_uj", read_number(d / "max_energy_range_uj")))
    return zones, failed


def rapl_watts(
    before_uj: float | None, after_uj: float | None, seconds: float, range_uj: float | None
) -> float | None:
    """Power (W) from two readings of a RAPL energy counter (µJ) ``seconds`` apart. A
    counter that went backwards wrapped: its range is added (unknown range: None)."""
    if before_uj is None or after_uj is None or seconds <= 0:
        return None
    delta = after_uj - before_uj
    if delta < 0:
        if range_uj is None:
            return None
        delta += range_uj
    return delta / 1e6 / seconds


class RaplPower:
    """One ``rapl_<names>_w`` column per zone: its energy since the previous read over the
    seconds between the reads (None on the first read)."""

    name = "rapl"

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self._last: tuple[float, list[float | None]] | None = None

    def read(self, now: float) -> Reading:
        energy = [read_number(z.energy) for z in self.zones]
        then, last = self._last or (now, [None] * len(energy))
        self._last = (now, energy)
        return {
            z.column: rapl_watts(b, a, now - then, z.range_uj)
            for z, b, a in zip(self.zones, last, energy, strict=True)
        }


# --- what this machine has ------------------------------------------------------------


def _process_tree(pid: int, absent: list[Absent]) -> ProcessTree | None:
    try:
        import psutil
    except ImportError:
        absent.append(Absent("cpu_load", "psutil", "not installed"))
        return None
    if not psutil.pid_exists(pid):
        absent.append(Absent("cpu_load", f"process {pid}", "no such process"))
        return None
    return ProcessTree(pid)


def cpu_sources(
    root: Path = Path("/"), pid: int | None = None
) -> tuple[list[Source], list[Absent]]:
    """The CPU-side sources this machine has under ``root``, for the process tree of
    ``pid`` (this process by default), and those it lacks, each once."""
    absent: list[Absent] = []
    sources: list[Source] = []
    process = _process_tree(pid or os.getpid(), absent)
    machine = MachineReader(proc=root / "proc")
    stat, loadavg = root / "proc/stat", root / "proc/loadavg"
    cpus = len(re.findall(r"^cpu\d+\s", _text(stat), re.M)) if machine.cpu_times() else 0
    if not cpus:
        absent.append(Absent("cpu_load", "/proc/stat", unreadable(stat) or "not understood"))
    load = machine.load_1m() is not None
    if not load:
        absent.append(Absent("cpu_load", "/proc/loadavg", unreadable(loadavg) or "not understood"))
    if process is not None or cpus or load:
        sources.append(CpuLoad(process, machine, cpus, load))

    if sensors := cpu_temp_sensors(root):
        sources.append(CpuTemperature(sensors))
    else:
        absent.append(Absent("thermal", THERMAL_PATHS, "no CPU sensor found"))

    if freq := [f for f in _cpufreq_files(root, "scaling_cur_freq") if read_number(f)]:
        sources.append(CpuFrequency(freq))
    else:
        absent.append(Absent("cpufreq", CPUFREQ_PATH, "not found"))

    zones, failed = find_rapl(root)
    if zones:
        sources.append(RaplPower(zones))
    if failed and not zones:  # the usual case: every counter is root only
        absent.append(Absent("rapl", RAPL_PATH, failed[0][1]))
    elif failed:
        absent.append(Absent("rapl", ", ".join(p for p, _ in failed), failed[0][1]))
    elif not zones:
        absent.append(Absent("rapl", RAPL_PATH, "not found"))
    return sources, absent
