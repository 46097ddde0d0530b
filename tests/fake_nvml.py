"""A stand-in for NVML (runner.measure.nvml.NvmlLike): GPUs whose power, clocks,
temperature, utilisation and throttle reasons a test sets, and whose energy counter
integrates the power as a fake clock advances."""

from __future__ import annotations

from runner.measure.nvml import NvmlNotSupported


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeNvml:
    """GPUs with a settable power draw; the energy counter integrates it as time advances.

    ``counter=False`` (or an index in ``counterless``): that GPU has no energy counter.
    """

    def __init__(self, clock: FakeClock, count: int = 2, counter: bool = True) -> None:
        self.clock = clock
        self.count = count
        self.counter = counter
        self.counterless: set[int] = set()
        self.watts = [0.0] * count
        self.energy_mj = [5_000_000] * count  # the counter counts since driver load
        self.sm_mhz = [1980] * count
        self.mem_mhz = [2619] * count
        self.temp_c = [40] * count
        self.util = [(0, 0)] * count  # (GPU %, memory %)
        self.reasons = [0] * count
        self.bus_width_bits: int | None = 5120
        self.max_mem_mhz: int | None = 2619
        self.calls: list[str] = []

    def advance(self, seconds: float) -> None:
        for i in range(self.count):
            self.energy_mj[i] += round(self.watts[i] * seconds * 1000)
        self.clock.now += seconds

    def init(self) -> None:
        self.calls.append("init")

    def device_count(self) -> int:
        return self.count

    def handle(self, index: int) -> int:
        return index

    def total_energy_mj(self, handle: int) -> int:
        if not self.counter or handle in self.counterless:
            raise NvmlNotSupported("NVML_ERROR_NOT_SUPPORTED")
        return self.energy_mj[handle]

    def power_mw(self, handle: int) -> int:
        return round(self.watts[handle] * 1000)

    def name(self, handle: int) -> str:
        return "Fake GPU"

    def power_limit_mw(self, handle: int) -> int:
        return 300_000

    def temperature_c(self, handle: int) -> int:
        return self.temp_c[handle]

    def clocks_mhz(self, handle: int) -> tuple[int, int]:
        return self.sm_mhz[handle], self.mem_mhz[handle]

    def utilization_pct(self, handle: int) -> tuple[int, int]:
        return self.util[handle]

    def throttle_reasons(self, handle: int) -> int:
        return self.reasons[handle]

    def memory_bus_width_bits(self, handle: int) -> int | None:
        return self.bus_width_bits

    def max_memory_clock_mhz(self, handle: int) -> int | None:
        return self.max_mem_mhz
