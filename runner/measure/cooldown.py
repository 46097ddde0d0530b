"""The wait before a run: a fixed gap, then (optionally) until the machine is idle again.

A sweep's jobs follow one another; the heat and the load one leaves behind would be
measured by the next. ``measure.cooldown_seconds`` sleeps a fixed gap first;
``measure.cooldown_until_idle`` then samples the machine once a second until it is idle,
or ``measure.cooldown_max_seconds`` is reached:

- the CPUs: the share of all CPU time that was busy over the last sample (``/proc/stat``)
  at most ``measure.cooldown_cpu_busy``. The 1-minute load average is recorded, not used:
  it trails the load by about a minute;
- temperatures settled: the hottest CPU thermal zone (``/sys/class/thermal``) and every
  GPU (NVML) no longer falling, by at most 0.5 °C over the last ``SETTLE_SECONDS``;
- the GPUs' board power settled within 5% over the same span.

What the machine cannot tell (no thermal zones on a VM, no NVML without a GPU) is left
out of the rule and recorded as ``None``. The run records how long it waited, whether the
machine got idle (and why not), and the state it started in (:class:`Cooldown`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.measure.nvml import NvmlLike
from runner.sections.metrics import Cooldown, MachineState

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0  # one reading of the CPUs' busy share
SETTLE_SECONDS = 5.0  # temperatures and GPU power compared over this span
TEMP_SETTLED_C = 0.5  # not falling by more than this
POWER_SETTLED = 0.05  # relative change of a GPU's power over the span
CPU_ZONE_WORDS = ("cpu", "pkg", "x86", "core", "soc", "acpitz")


@dataclass
class MachineReader:
    """Reads the machine's state from ``proc`` and ``thermal`` (kernel layouts; tests
    point them at their own trees) and the GPUs ``gpus`` (NVML indices) of ``nvml``."""

    proc: Path = Path("/proc")
    thermal: Path = Path("/sys/class/thermal")
    nvml: NvmlLike | None = None
    gpus: Sequence[int] = ()
    _handles: dict[int, object] = field(default_factory=dict)

    def cpu_times(self) -> tuple[float, float] | None:
        """``(busy, total)`` jiffies of all CPUs since boot; None when unreadable."""
        try:
            line = (self.proc / "stat").read_text().splitlines()[0].split()
            values = [float(v) for v in line[1:]]
        except (OSError, IndexError, ValueError):
            return None
        if line[0] != "cpu" or len(values) < 4:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
        total = sum(values[:8])  # guest time is already in user
        return total - idle, total

    def load_1m(self) -> float | None:
        try:
            return float((self.proc / "loadavg").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def cpu_temp_c(self) -> float | None:
        """The hottest thermal zone that is a CPU's (by its type), °C."""
        temps = []
        for zone in sorted(self.thermal.glob("thermal_zone*")):
            try:
                kind = (zone / "type").read_text().strip().lower()
                value = float((zone / "temp").read_text().strip()) / 1000.0
            except (OSError, ValueError):
                continue
            if any(word in kind for word in CPU_ZONE_WORDS):
                temps.append(value)
        return max(temps) if temps else None

    def gpu(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per GPU: temperature (°C) and board power (W); what fails is left out."""
        temps: dict[str, float] = {}
        power: dict[str, float] = {}
        if self.nvml is None:
            return temps, power
        for index in self.gpus:
            try:
                handle = self._handles.setdefault(index, self.nvml.handle(index))
                temps[str(index)] = float(self.nvml.temperature_c(handle))
                power[str(index)] = self.nvml.power_mw(handle) / 1000.0
            except Exception as exc:  # a GPU that cannot say is left out of the rule
                log.debug("cooldown: GPU %s unreadable: %s", index, exc)
        return temps, power

    def sample(self, seconds: float, sleep: Callable[[float], None]) -> MachineState:
        """The state now, the CPUs' busy share over the next ``seconds``."""
        before = self.cpu_times()
        sleep(seconds)
        after = self.cpu_times()
        busy = None
        if before is not None and after is not None and after[1] > before[1]:
            busy = (after[0] - before[0]) / (after[1] - before[1])
        temps, power = self.gpu()
        return MachineState(
            cpu_busy_fraction=busy,
            load_1m=self.load_1m(),
            cpu_temp_c=self.cpu_temp_c(),
            gpu_temp_c=temps,
            gpu_power_w=power,
        )


def _not_idle(
    now: MachineState, then: MachineState | None, cpu_busy: float, settle: bool
) -> list[str]:
    """Why ``now`` is not idle (empty: it is), against ``then``, the state
    :data:`SETTLE_SECONDS` ago (None: not yet that long, so nothing is settled yet)."""
    out = []
    if now.cpu_busy_fraction is not None and now.cpu_busy_fraction > cpu_busy:
        out.append(f"CPUs {now.cpu_busy_fraction:.0%} busy (idle: at most {cpu_busy:.0%})")
    if not settle:
        return out
    temps = {"CPU": (now.cpu_temp_c, then.cpu_temp_c if then else None)}
    for gpu, value in now.gpu_temp_c.items():
        temps[f"GPU {gpu}"] = (value, then.gpu_temp_c.get(gpu) if then else None)
    for name, (current, earlier) in temps.items():
        if current is None:
            continue
        if earlier is None:
            out.append(f"{name} temperature not yet followed for {SETTLE_SECONDS:g} s")
        elif earlier - current > TEMP_SETTLED_C:
            out.append(f"{name} still cooling ({earlier:.1f} -> {current:.1f} °C)")
    for gpu, watts in now.gpu_power_w.items():
        earlier = then.gpu_power_w.get(gpu) if then else None
        if earlier is not None and abs(watts - earlier) > POWER_SETTLED * max(earlier, 1e-9):
            out.append(f"GPU {gpu} power changing ({earlier:.0f} -> {watts:.0f} W)")
    return out


def cool_down(
    fixed_seconds: float,
    until_idle: bool,
    max_seconds: float,
    cpu_busy: float,
    reader: MachineReader,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    check: Callable[[], None] = lambda: None,
) -> Cooldown:
    """Wait ``fixed_seconds``, then with ``until_idle`` until the machine is idle (see the
    module docstring) or ``max_seconds`` more have passed; ``check`` is called between
    steps (a stop request raises there). Returns what was waited and the state at the end.
    """
    t0 = clock()
    remaining = fixed_seconds
    while remaining > 0:  # in short steps: a stop is heard within a second
        step = min(remaining, SAMPLE_SECONDS)
        sleep(step)
        remaining -= step
        check()
    if not until_idle:
        state = reader.sample(min(SAMPLE_SECONDS, 0.2), sleep)
        return Cooldown(fixed_seconds, False, clock() - t0, None, None, state)
    start = clock()
    history: list[tuple[float, MachineState]] = []
    while True:
        state = reader.sample(SAMPLE_SECONDS, sleep)
        now = clock()
        history.append((now, state))
        earlier = [s for t, s in history if now - t >= SETTLE_SECONDS]
        then = earlier[-1] if earlier else None
        waiting = _not_idle(state, then, cpu_busy, settle=True)
        if not waiting:
            reason = f"idle after {now - start:.0f} s"
            return Cooldown(fixed_seconds, True, now - t0, True, reason, state)
        if now - start >= max_seconds:
            reason = f"not idle after {max_seconds:g} s: " + "; ".join(waiting)
            log.warning("cooldown: %s; starting anyway (recorded)", reason)
            return Cooldown(fixed_seconds, True, now - t0, False, reason, state)
        check()
