"""The run's side of the hardware record: start the sampler, then turn what it saw into the
result's ``metrics.timeseries``, ``timeseries.parquet`` and named warnings; place the run
on the roofline (``metrics.roofline``).

Kept apart from runner.run so that the run only calls in at its start, after its model
loads, and at its end; every step here must not cost the run's own results, so each
failure becomes a line in ``result.warnings`` instead of an exception.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.schema_measure import MeasureConfig
from runner.hardware.sampler import Sampler, write_timeseries
from runner.sections.hardware import TIMESERIES_FILE, Roofline, Timeseries
from runner.sections.warnings import NamedWarning

log = logging.getLogger(__name__)


def start_sampler(
    m: MeasureConfig, phase: Callable[[], str], gpus: Sequence[int], warnings: list[str]
) -> tuple[Sampler | None, tuple[str, ...]]:
    """A running sampler over this machine's sources (None with ``measure.sample_hz=0``),
    and the sources it lacks as ``source: path (reason)`` lines."""
    if not m.sample_hz:
        return None, ()
    try:
        from runner.hardware.cpu import cpu_sources
        from runner.hardware.gpu import gpu_sources
        from runner.measure.nvml import cuda_to_nvml_indices, open_nvml

        sources, absent = cpu_sources()
        nvml = open_nvml() if gpus else None
        indices = cuda_to_nvml_indices(gpus, nvml.device_count())[0] if nvml else list(gpus)
        gpu, gpu_absent = gpu_sources(nvml, indices)
        sampler = Sampler([*sources, *gpu], m.sample_hz, phase)
        sampler.start()
    except Exception as exc:  # the time series must not cost the run
        warnings.append(f"hardware time series not recorded: {type(exc).__name__}: {exc}")
        log.warning("hardware time series not recorded: %s", exc)
        return None, ()
    return sampler, tuple(a.line() for a in [*absent, *gpu_absent])


def governor_text(governors: dict[str, int] | None) -> str | None:
    """``performance`` when every CPU agrees, else ``powersave (2 CPUs), performance (6 CPUs)``."""
    if not governors:
        return None
    if len(governors) == 1:
        return next(iter(governors))
    return ", ".join(f"{name} ({n} CPUs)" for name, n in sorted(governors.items()))


def finish_sampler(
    sampler: Sampler | None,
    absent: tuple[str, ...],
    run_dir: Path,
    m: MeasureConfig,
    phase: str,
    warnings: list[str],
) -> tuple[Timeseries | None, list[NamedWarning]]:
    """Stop the sampler, write its table and judge the measured windows
    (runner.hardware.throttle); the findings become named warnings of ``phase``."""
    if sampler is None:
        return None, []
    from runner.hardware.cpu import cpu_governors
    from runner.hardware.throttle import findings

    sampler.stop()
    rows, windows = sampler.snapshot()
    written = None
    try:
        write_timeseries(run_dir / TIMESERIES_FILE, rows, windows)
        written = TIMESERIES_FILE
    except Exception as exc:  # the table must not cost the result
        warnings.append(f"{TIMESERIES_FILE} not written: {type(exc).__name__}: {exc}")
    section = Timeseries(
        file=written,
        sample_hz=m.sample_hz,
        samples=len(rows),
        largest_gap_seconds=sampler.largest_gap(),
        sources=tuple(sorted({getattr(s, "name", "?") for s in sampler.sources})),
        absent=absent,
        cpu_governor=governor_text(cpu_governors()),
        windows=len(windows),
    )
    named = [
        NamedWarning(f.name, f.message, phase)
        for f in findings(rows, windows, drop=m.throttle_clock_drop, cores=m.interference_cores)
    ]
    for w in named:
        log.warning("%s: %s", w.name, w.message)
    return section, named


def roofline_inputs(latency: Any) -> dict[str, float | None]:
    """The workload's mean shape per call and the median prefill and decode-step times."""
    requests, calls = latency.requests, latency.calls

    def per(total: float | None) -> float | None:
        return total / requests if total is not None and requests else None

    return {
        "batch": requests / calls if requests and calls else None,
        "prompt_len": per(latency.input_tokens),
        "new_tokens": per(latency.output_tokens),
        "ttft_s": latency.ttft_seconds.median if latency.ttft_seconds else None,
        "itl_s": latency.itl_seconds.median if latency.itl_seconds else None,
    }


# --- against the limit ---------------------------------------------------------------------

PROBED_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class Placement:
    """What the run knows once its model is loaded, for :func:`place_run` at its end."""

    config: dict[str, Any]
    device: str
    dtype: str
    weight_bytes: float | None
    kv_elem_bytes: float | None
    peaks: Any = None
    probe_file: str | None = None
    note: str | None = None


def probe_for_run(
    config: dict[str, Any],
    device: str,
    dtype: str,
    weight_bytes: float | None,
    kv_elem_bytes: float | None,
    step: Callable[..., None],
) -> Placement:
    """This machine's peaks for the run's device and dtype (runner.hardware.probe): the kept
    figures, or measured now (once per machine, dtype and torch threads; ``step`` says so)."""
    placement = Placement(config, device, dtype, weight_bytes, kv_elem_bytes)
    if dtype not in PROBED_DTYPES:
        placement.note = f"no probe for dtype {dtype}"
        return placement
    try:
        from runner.hardware import probe

        key = probe.machine_key(device, dtype)
        peaks = probe.read_kept(key)
        if peaks is None:
            step(
                "probing this machine's memory bandwidth and %s matmul throughput (once; "
                "`python -m runner.hardware.probe --rerun` measures again)",
                dtype,
            )
            peaks = probe.measure_peaks(device, dtype)
            probe.keep(peaks)
        placement.peaks, placement.probe_file = peaks, str(probe.kept_path(key))
    except Exception as exc:  # the probe must not cost the run
        placement.note = f"hardware probe failed: {type(exc).__name__}: {exc}"
        log.warning("%s", placement.note)
    return placement


def place_run(placement: Placement | None, latency: Any, online: bool) -> Roofline | None:
    """The run on the roofline (runner.hardware.roofline.place); None before its model
    loaded. Under load the batch changes at every step, so the run is not placed."""
    if placement is None:
        return None
    from runner.hardware.roofline import DTYPE_BYTES, place, read_shape

    where = {"device": placement.device, "dtype": placement.dtype}
    if online:
        return Roofline(**where, note="not placed under load: the batch changes every step")
    if latency is None:
        return Roofline(**where, note="nothing was measured")
    shape, why = read_shape(placement.config)
    notes = [n for n in (placement.note, why) if n]
    roof = place(
        shape,
        weight_bytes=placement.weight_bytes,
        elem_bytes=DTYPE_BYTES.get(placement.dtype),
        kv_elem_bytes=placement.kv_elem_bytes,
        peaks=placement.peaks,
        note="; ".join(notes) or None,
        **roofline_inputs(latency),
    )
    return dataclasses.replace(roof, **where, probe_file=placement.probe_file)
