"""The machine's side of a run in ``result.json``: ``metrics.timeseries`` and ``metrics.roofline``.

``timeseries``: what the sampler recorded into ``timeseries.parquet`` (runner.hardware.sampler)
and what this machine could not tell it: each missing source once, with the path looked for.

``roofline``: the run placed against this machine's measured limits (runner.hardware.probe,
runner.hardware.roofline; formulas in docs/methodology.md). Bytes, FLOPs, GB/s (1e9 bytes
per second) and TFLOP/s (1e12); utilisations are fractions of the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.sections.base import Section

TIMESERIES_FILE = "timeseries.parquet"


@dataclass(frozen=True)
class Timeseries(Section):
    """``file``: the table's name in the run directory (None when nothing was written);
    ``sample_hz``: the rate asked; ``samples``: rows written; ``largest_gap_seconds``: the
    longest time between two rows (a sampler starved of CPU shows here); ``sources``: what
    was sampled; ``absent``: what this machine lacks, ``source: path (reason)``;
    ``cpu_governor``: cpufreq's scaling governor of the CPUs (``name`` or ``name (n CPUs),
    ...``), None without cpufreq; ``windows``: measured windows marked in the table."""

    file: str | None = None
    sample_hz: float | None = None
    samples: int | None = None
    largest_gap_seconds: float | None = None
    sources: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    cpu_governor: str | None = None
    windows: int | None = None


@dataclass(frozen=True)
class Roofline(Section):
    """Where the run sits against the hardware's limit (runner.hardware.roofline.place).

    The peaks (``peak_*``) are the probe's, measured on this machine in ``dtype`` on
    ``device`` (``probe_file`` keeps them); ``theoretical_bandwidth_gbs`` from the GPU's bus
    width and memory clock (None on CPUs); ``machine_balance``: their ridge point, FLOPs per
    byte. Inputs: the model's ``model_type``, ``weight_bytes_total`` (the loaded weights;
    None outside the process), ``weight_bytes_read`` per decode step and where it came from
    (``weight_bytes_source``), ``batch`` (mean requests per call), ``prompt_tokens`` and
    ``new_tokens`` (means per request), ``kv_elem_bytes``, ``ttft_s`` and ``itl_s`` (medians,
    seconds). Outputs: ``context_tokens_mean``, ``kv_bytes_per_token``,
    ``decode_bytes_per_step`` (weights read plus the KV cache read at the mean context),
    ``decode_flops_per_token``, ``prefill_flops`` and ``prefill_bytes`` per call, the
    intensities (FLOPs per byte), the achieved ``decode_bandwidth_gbs`` (bytes per step over
    the median inter-token latency) and ``prefill_tflops`` (FLOPs over the median time to
    first token), and their fractions of the peaks. ``note``: why a figure is missing.
    """

    device: str | None = None
    dtype: str | None = None
    probe_file: str | None = None
    model_type: str | None = None
    weight_bytes_total: float | None = None
    weight_bytes_read: float | None = None
    weight_bytes_source: str | None = None
    batch: float | None = None
    prompt_tokens: float | None = None
    new_tokens: float | None = None
    kv_elem_bytes: float | None = None
    ttft_s: float | None = None
    itl_s: float | None = None
    peak_bandwidth_gbs: float | None = None
    peak_matmul_tflops: float | None = None
    theoretical_bandwidth_gbs: float | None = None
    context_tokens_mean: float | None = None
    kv_bytes_per_token: float | None = None
    decode_bytes_per_step: float | None = None
    decode_flops_per_token: float | None = None
    prefill_flops: float | None = None
    prefill_bytes: float | None = None
    decode_intensity: float | None = None
    prefill_intensity: float | None = None
    machine_balance: float | None = None
    decode_bandwidth_gbs: float | None = None
    decode_bandwidth_util: float | None = None
    decode_bandwidth_util_theoretical: float | None = None
    prefill_tflops: float | None = None
    prefill_compute_util: float | None = None
    note: str | None = None
