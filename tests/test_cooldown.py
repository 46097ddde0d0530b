"""The wait before a run: on directory trees laid out like the kernel's /proc and
/sys/class/thermal (this VM exposes no thermal zones), a fake NVML and a fake clock, and
once for real."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from runner.measure.cooldown import SETTLE_SECONDS, MachineReader, cool_down
from tests.conftest import PYTHON

REPO = Path(__file__).resolve().parents[1]


class Machine:
    """A machine on a fake clock: ``busy(t)`` the CPUs' busy share, ``temp(t)`` the CPU
    package temperature, written where the kernel would as time passes."""

    def __init__(self, root: Path, busy, temp=None, zones: bool = True) -> None:
        self.t, self.busy, self.temp = 0.0, busy, temp
        self.jiffies = [0.0, 0.0]  # busy, idle
        self.proc = root / "proc"
        self.proc.mkdir()
        self.thermal = root / "thermal"
        self.thermal.mkdir()
        if zones and temp is not None:
            for i, kind in enumerate(["acpitz", "x86_pkg_temp", "iwlwifi_1"]):
                zone = self.thermal / f"thermal_zone{i}"
                zone.mkdir()
                (zone / "type").write_text(kind + "\n")
        self.write()

    def write(self) -> None:
        busy, idle = self.jiffies
        (self.proc / "stat").write_text(
            f"cpu  {busy:.0f} 0 0 {idle:.0f} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n"
        )
        (self.proc / "loadavg").write_text(f"{2 * self.busy(self.t):.2f} 0.5 0.3 1/100 42\n")
        if self.temp is not None:
            for zone in self.thermal.glob("thermal_zone*"):
                offset = 30.0 if "iwlwifi" in (zone / "type").read_text() else 0.0
                millis = int((self.temp(self.t) + offset) * 1000)
                (zone / "temp").write_text(f"{millis}\n")

    def sleep(self, seconds: float) -> None:
        share = self.busy(self.t)
        self.jiffies[0] += share * seconds * 200  # two CPUs at 100 jiffies a second
        self.jiffies[1] += (1 - share) * seconds * 200
        self.t += seconds
        self.write()

    def clock(self) -> float:
        return self.t

    def reader(self, **kw) -> MachineReader:
        return MachineReader(proc=self.proc, thermal=self.thermal, **kw)


def _wait(machine: Machine, fixed=0.0, until_idle=True, max_seconds=60.0, **kw):
    return cool_down(
        fixed,
        until_idle,
        max_seconds,
        0.1,
        machine.reader(**kw),
        sleep=machine.sleep,
        clock=machine.clock,
    )


def test_waits_for_the_load_to_end_and_the_cpu_to_stop_cooling(tmp_path):
    # Busy until t=10 s; the package cools from 60 °C towards 40 °C with a 5 s constant.
    machine = Machine(
        tmp_path, busy=lambda t: 0.5 if t < 10 else 0.02, temp=lambda t: 40 + 20 * math.exp(-t / 5)
    )
    record = _wait(machine, fixed=2.0)
    # Settled: falling by at most 0.5 °C over the 5 s from t: 20 e^(-t/5) (1 - e^-1) <= 0.5
    # for t >= 16.2 s, so at 21.2 s at the earliest (samples a second apart).
    assert record.reached_idle and record.reason.startswith("idle after")
    assert 21.2 <= record.waited_seconds <= 23.0
    assert record.fixed_seconds == 2.0 and record.until_idle
    state = record.start_state
    assert state.cpu_busy_fraction == pytest.approx(0.02)
    assert state.cpu_temp_c == pytest.approx(40 + 20 * math.exp(-machine.t / 5), abs=0.01)
    assert state.load_1m == pytest.approx(0.04)  # recorded, not the rule: it lags a minute


def test_gives_up_at_the_maximum_and_says_why(tmp_path):
    machine = Machine(tmp_path, busy=lambda t: 0.5, temp=lambda t: 50.0)
    record = _wait(machine, max_seconds=30.0)
    assert record.reached_idle is False
    assert record.reason.startswith("not idle after 30 s: CPUs 50% busy (idle: at most 10%)")
    assert 30.0 <= record.waited_seconds <= 31.5


def test_without_thermal_zones_the_cpus_alone_decide(tmp_path):
    machine = Machine(tmp_path, busy=lambda t: 0.0, temp=None, zones=False)
    record = _wait(machine)
    assert record.reached_idle and record.waited_seconds == pytest.approx(1.0)
    assert record.start_state.cpu_temp_c is None


class FakeGpu:
    """NVML for one GPU cooling from 80 °C and dropping its power to 60 W by t=20 s."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def handle(self, index: int) -> int:
        return index

    def temperature_c(self, handle: int) -> int:
        return round(35 + 45 * math.exp(-self.machine.t / 4))

    def power_mw(self, handle: int) -> int:
        return 60_000 if self.machine.t >= 20 else 250_000


def test_gpus_must_stop_cooling_and_their_power_settle(tmp_path):
    machine = Machine(tmp_path, busy=lambda t: 0.0, temp=None, zones=False)
    record = _wait(machine, nvml=FakeGpu(machine), gpus=[0])
    # Power settles at 20 s and must be level over the 5 s after; temperature is level by then.
    assert record.reached_idle and 20 + SETTLE_SECONDS <= record.waited_seconds <= 28
    assert record.start_state.gpu_power_w == {"0": 60.0}
    assert record.start_state.gpu_temp_c["0"] <= 36


def test_a_fixed_gap_alone_and_a_stop_during_it(tmp_path):
    machine = Machine(tmp_path, busy=lambda t: 0.3, temp=None, zones=False)
    record = _wait(machine, fixed=3.0, until_idle=False)
    assert (record.until_idle, record.reached_idle) == (False, None)
    assert record.waited_seconds == pytest.approx(3.2)  # the gap, then a short state sample
    assert record.start_state.cpu_busy_fraction == pytest.approx(0.3)

    class Stop(Exception):
        pass

    def check() -> None:
        if machine.t >= 10:
            raise Stop

    machine.t = 0.0
    with pytest.raises(Stop):
        cool_down(
            60.0, False, 1.0, 0.1, machine.reader(), sleep=machine.sleep, clock=machine.clock,
            check=check,
        )  # fmt: skip
    assert machine.t == pytest.approx(10.0)  # heard within a second


@pytest.mark.slow
def test_a_run_records_its_cooldown(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            *PYTHON, "-m", "runner", "model=tiny", "measure=quick", "energy=off",
            "quality=off", "workload.num_prompts=2", "decoding.max_new_tokens=4",
            "measure.isolation=inline", "measure.cooldown_seconds=0.5",
            "measure.cooldown_until_idle=true", "measure.cooldown_max_seconds=5",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    cooldown = result["metrics"]["cooldown"]
    assert cooldown["fixed_seconds"] == 0.5 and cooldown["until_idle"] is True
    assert cooldown["waited_seconds"] >= 1.5  # the gap and at least one one-second sample
    assert isinstance(cooldown["reached_idle"], bool) and cooldown["reason"]
    assert 0 <= cooldown["start_state"]["cpu_busy_fraction"] <= 1
    assert result["metrics"]["phase_seconds"]["cooldown"] >= 1.5
