"""What limits a run's energy figures: the thresholds and the warnings they raise."""

from __future__ import annotations

from collections.abc import Sequence

from runner.measure.codecarbon import MEASURED_CPU_METHODS, CodeCarbonReading, TrackerBox
from runner.measure.energy_figures import WindowEnergy
from runner.sections.energy import NET_NOT_POSITIVE, SHORT_WINDOW

MIN_COUNTER_WINDOW_S = 1.0  # the NVML counter moves in steps of tens of ms
MIN_POWER_SAMPLES = 10
MIN_WINDOW_COVERAGE = 0.8
GPU_DIFFERENCE_WARN = 0.10


def quality_warnings(
    *,
    run: TrackerBox | None,
    reading: CodeCarbonReading | None,
    windows: Sequence[WindowEnergy],
    window_s: float,
    measure_power_secs: float,
    discarded_windows: int,
    gpu_method: str | None,
    window_warnings: Sequence[str],
    relative: float | None,
    net: float | None,
) -> list[str]:
    """Why the figures may be missing, coarse or estimated; ``run`` is None when
    ``tracking()`` was never entered, ``discarded_windows`` the windows left open."""
    out: list[str] = []
    if run is None:
        out.append("tracking() was never entered: nothing was measured")
    elif reading is None:
        reason = run.error or "see the run log"
        out.append(f"CodeCarbon reported no data ({reason}): CPU and RAM energy unknown")
    if run is not None and not windows:
        out.append("no measured window completed")
    if discarded_windows:
        out.append(
            f"{discarded_windows} window(s) still open when tracking ended "
            "(interrupted or failed repeat) are not counted"
        )
    if reading is not None and windows:
        if window_s < measure_power_secs:
            out.append(
                f"measured time {window_s:.3f} s is {SHORT_WINDOW} "
                f"(measure_power_secs={measure_power_secs:g}): its CPU/RAM "
                "figures rest on one or two power samples; energy is unresolved"
            )
        coverage = window_s / reading.tracked_seconds if reading.tracked_seconds > 0 else 0
        if coverage < MIN_WINDOW_COVERAGE:
            out.append(
                f"measured windows cover {coverage:.0%} of CodeCarbon's tracked span; its "
                "figures were scaled to the windows assuming constant average power"
            )
    if gpu_method is not None and windows:
        short = [w.seconds for w in windows if w.seconds < MIN_COUNTER_WINDOW_S]
        if short:
            out.append(
                f"{len(short)} of {len(windows)} measured windows are shorter than "
                f"{MIN_COUNTER_WINDOW_S:g} s (shortest {min(short):.3f} s): too short for "
                "the resolution of NVML energy readings"
            )
        sampled = [w.gpu_samples for w in windows if w.gpu_samples is not None]
        few = [n for n in sampled if n < MIN_POWER_SAMPLES]
        if few:
            out.append(
                f"fewer than {MIN_POWER_SAMPLES} GPU power samples in {len(few)} of "
                f"{len(windows)} windows (fewest {min(few)}): GPU energy is coarse"
            )
    out += window_warnings
    if relative is not None and abs(relative) > GPU_DIFFERENCE_WARN:
        out.append(f"NVML and CodeCarbon GPU energy differ by {relative:+.0%} of the NVML figure")
    if reading is not None and reading.cpu_method not in MEASURED_CPU_METHODS:
        out.append(
            f"CPU energy is an estimate, not a measurement ({reading.cpu_detail}); "
            "no RAPL-like counter was readable"
        )
    if net is not None and net <= 0:
        out.append(f"{NET_NOT_POSITIVE}: net energy is unresolved")
    return out
