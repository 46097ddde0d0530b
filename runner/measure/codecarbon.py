"""CodeCarbon plumbing: an offline tracker per window, its provenance, its logs.

Joules and seconds; CodeCarbon's kWh are converted on reading. Used by
:mod:`runner.measure.energy` and :mod:`runner.measure.idle_baseline`; the arithmetic of
windows lives in :mod:`runner.measure.energy_figures`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.schema_measure import EnergyConfig
from runner.measure import cpu_power_cache

log = logging.getLogger(__name__)

TRACKING_MODE = "machine"
PROJECT_NAME = "llm-sweep-runner"
CSV_FILE = "emissions.csv"
J_PER_KWH = 3.6e6

MEASURED_CPU_METHODS = frozenset(
    {"rapl", "windows-emi-rapl", "intel-power-gadget", "apple-powermetrics", "raspberry-pmic"}
)
_CPU_MODE_METHODS = {
    "intel_rapl": "rapl",
    "windows_emi": "windows-emi-rapl",
    "intel_power_gadget": "intel-power-gadget",
    "cpu_load": "codecarbon-cpu-load-estimate",
    "constant": "codecarbon-cpu-tdp-estimate",
}
# CodeCarbon 3.x logs this on every tracker construction; it says nothing about the run.
_CODECARBON_NOISE = ("Multiple instances of codecarbon are allowed",)
# Its notices that this machine has no readable RAPL files and what it falls back to: the
# same lines on every run, kept in run.log only, with one line said on the terminal.
_RUN_LOG_ONLY = ("No CPU tracking mode found",)
PROVENANCE = (
    "CodeCarbon: no readable RAPL files here, so CPU power is its estimate (from the CPU's "
    "TDP and load); its notices are in run.log"
)
_provenance_said = False


@dataclass(frozen=True)
class CodeCarbonReading:
    """One tracker's totals in joules (PUE applied, as CodeCarbon reports them).

    ``tracked_seconds`` is the runner's clock from ``start()`` returning to ``stop()``.
    """

    cpu_joules: float
    ram_joules: float
    gpu_joules: float
    total_joules: float
    emissions_kg: float
    tracked_seconds: float
    cpu_method: str
    ram_method: str
    cpu_detail: str
    has_gpu: bool


def codecarbon_version() -> str:
    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


ENERGY_MIX_FILE = "data/private_infra/global_energy_mix.json"  # codecarbon.input's path


def energy_mix_table() -> dict[str, Any]:
    """CodeCarbon's packaged per-country energy-mix table (no network), keyed by ISO alpha-3.

    Read from the package directory without importing CodeCarbon (whose import pulls
    pandas: a second of the command's pre-flight); through CodeCarbon where that file
    is not where its ``DataSource`` keeps it.
    """
    spec = importlib.util.find_spec("codecarbon")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / ENERGY_MIX_FILE
        if path.is_file():
            return json.loads(path.read_text())
    from codecarbon.input import DataSource

    return DataSource().get_global_energy_mix_data()


def known_country_codes() -> frozenset[str] | None:
    """Country codes CodeCarbon has data for; None when CodeCarbon or its data is missing."""
    try:
        return frozenset(energy_mix_table())
    except (ImportError, OSError, ValueError):
        return None


class _Forward(logging.Filter):
    """On the ``codecarbon`` logger: hands each record to the run's logger (noise left
    out) and stops it there, so none of CodeCarbon's own handlers print it. A logger's
    filters see every record before any handler, also those of the stderr handler that
    each tracker construction adds anew."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self._target = target

    def filter(self, record: logging.LogRecord) -> bool:
        global _provenance_said
        message = record.getMessage()
        if message.startswith(_RUN_LOG_ONLY):
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                    handler.handle(record)
            if not _provenance_said:
                _provenance_said = True
                self._target.info("%s", PROVENANCE)
        elif not message.startswith(_CODECARBON_NOISE):
            self._target.handle(record)
        return False


@contextlib.contextmanager
def _codecarbon_logs_to(target: logging.Logger) -> Iterator[None]:
    """Route the ``codecarbon`` logger into ``target`` while the block runs; its level
    and filters are restored on exit."""
    import codecarbon.external.logger  # noqa: F401  # its import-time setup first, not inside

    cc = logging.getLogger("codecarbon")
    saved_level = cc.level
    forward = _Forward(target)
    cc.addFilter(forward)
    cc.setLevel(logging.WARNING)
    try:
        yield
    finally:
        cc.removeFilter(forward)
        cc.setLevel(saved_level)


def offline_tracker(**kwargs: Any) -> Any:
    from codecarbon import OfflineEmissionsTracker

    return OfflineEmissionsTracker(**kwargs)


def tracker_kwargs(
    cfg: EnergyConfig, run_dir: Path, nvml_indices: Sequence[int], *, csv: bool
) -> dict[str, Any]:
    from codecarbon.output_methods.base_output import OutputMethod

    return {
        "project_name": PROJECT_NAME,
        # The CSV's experiment_id column: rows of many runs' emissions.csv join back to
        # result.json's run_id (the run directory's name).
        "experiment_id": run_dir.name,
        "country_iso_code": cfg.country_iso_code,
        "output_dir": str(run_dir),
        "output_file": CSV_FILE,
        # Same as save_to_file=True, which CodeCarbon 3.x deprecates with a warning.
        "output_methods": [OutputMethod.CSV] if csv else [],
        "measure_power_secs": float(cfg.measure_power_secs),
        "pue": float(cfg.pue),
        # An empty list meters no GPU; None would meter every GPU of the machine.
        "gpu_ids": list(nvml_indices),
        "log_level": "warning",
        "tracking_mode": TRACKING_MODE,
        "allow_multiple_runs": True,  # no lock file in /tmp
        # Explicit values win over ~/.codecarbon.config and CODECARBON_* variables,
        # which could otherwise add an HTTP output or an online carbon-intensity API.
        "emissions_endpoint": None,
        "electricitymaps_api_token": None,
    }


def _cpu_method(hardware: Sequence[Any]) -> tuple[str, str]:
    """Provenance of CodeCarbon's CPU figure from its hardware objects: (method, detail)."""
    for hw in hardware:
        kind, part = type(hw).__name__, getattr(hw, "chip_part", None)
        if kind == "CPU":
            mode = str(getattr(hw, "_mode", "unknown"))
            detail = (
                f"CodeCarbon CPU mode {mode!r}, model {getattr(hw, '_model', None)!r}, "
                f"TDP {getattr(hw, '_tdp', None)} W"
            )
            if getattr(hw, "_is_generic_tdp", False):
                detail += " (generic default)"
            return _CPU_MODE_METHODS.get(mode, f"codecarbon-cpu-{mode}"), detail
        if kind == "AppleSiliconChip" and part == "CPU":
            return "apple-powermetrics", "Apple powermetrics"
        if kind == "Raspberry" and part == "CPU":
            return "raspberry-pmic", "Raspberry Pi PMIC"
    return "codecarbon-cpu-unknown", "CodeCarbon reported no CPU hardware"


def _ram_method(hardware: Sequence[Any]) -> str:
    for hw in hardware:
        kind = type(hw).__name__
        if kind == "RAM":
            forced = getattr(hw, "_force_ram_power", None) is not None
            return "codecarbon-ram-constant" if forced else "codecarbon-ram-estimate"
        if kind == "Raspberry" and getattr(hw, "chip_part", None) == "RAM":
            return "raspberry-pmic"
    return "codecarbon-ram-unknown"


def _read_tracker(tracker: Any, tracked_seconds: float) -> CodeCarbonReading | None:
    """Per-component totals from ``final_emissions_data`` (kWh, kg) after ``stop()``."""
    data = getattr(tracker, "final_emissions_data", None)
    if data is None:
        return None
    hardware = list(getattr(tracker, "_hardware", None) or [])
    cpu_method, cpu_detail = _cpu_method(hardware)
    return CodeCarbonReading(
        cpu_joules=float(data.cpu_energy) * J_PER_KWH,
        ram_joules=float(data.ram_energy) * J_PER_KWH,
        gpu_joules=float(data.gpu_energy) * J_PER_KWH,
        total_joules=float(data.energy_consumed) * J_PER_KWH,
        emissions_kg=float(data.emissions),
        tracked_seconds=tracked_seconds,
        cpu_method=cpu_method,
        ram_method=_ram_method(hardware),
        cpu_detail=cpu_detail,
        has_gpu=any(type(hw).__name__ == "GPU" for hw in hardware),
    )


class TrackerBox:
    """Filled when a :func:`tracker_run` block exits; ``start_seconds`` on entering it."""

    reading: CodeCarbonReading | None = None
    error: str | None = None
    start_seconds: float | None = None  # constructing and starting the tracker (probing)


@contextlib.contextmanager
def tracker_run(
    factory: Callable[..., Any],
    make_kwargs: Callable[[], dict[str, Any]],
    clock: Callable[[], float],
    target: logging.Logger,
) -> Iterator[TrackerBox]:
    """One tracker around the block: always stopped, even on KeyboardInterrupt.

    A tracker that fails to start is recorded in the box, not raised: energy must
    not cost the run its timing results.
    """
    box = TrackerBox()
    with _codecarbon_logs_to(target):
        tracker = None
        started_at = None
        try:
            try:
                t0 = clock()
                # This machine's CPU power, if a process kept it; else CodeCarbon looks it
                # up as the tracker starts, and its answer is kept for later processes.
                seeded = cpu_power_cache.seed()
                tracker = factory(**make_kwargs())
                tracker.start()
                started_at = clock()  # after start(): its hardware probing is not measured
                box.start_seconds = started_at - t0
                if not seeded:
                    cpu_power_cache.keep()
            except Exception as exc:
                box.error = f"CodeCarbon tracker failed to start: {type(exc).__name__}: {exc}"
                log.warning("%s", box.error)
            yield box
        finally:
            if tracker is not None:
                stopped_at = clock()
                try:
                    tracker.stop()
                except Exception as exc:
                    box.error = f"CodeCarbon tracker failed to stop: {type(exc).__name__}: {exc}"
                    log.warning("%s", box.error)
                else:
                    if started_at is not None:
                        box.reading = _read_tracker(tracker, stopped_at - started_at)


def carbon_intensity_g_per_kwh(
    reading: CodeCarbonReading | None, country: str
) -> tuple[float | None, list[str]]:
    """The intensity CodeCarbon applied (its emissions / its energy), else its country table."""
    try:
        table = energy_mix_table()
    except Exception as exc:  # codecarbon missing or its data unreadable
        table, warnings = {}, [f"CodeCarbon's energy-mix table is unreadable: {exc}"]
    else:
        warnings = (
            []
            if country in table
            else [
                f"country_iso_code {country!r} is not in CodeCarbon's energy-mix table: "
                "the world-average carbon intensity was used"
            ]
        )
    if reading is not None and reading.total_joules > 0:
        return reading.emissions_kg / (reading.total_joules / J_PER_KWH) * 1000.0, warnings
    value = table.get(country, {}).get("carbon_intensity")
    return (None if value is None else float(value)), warnings
