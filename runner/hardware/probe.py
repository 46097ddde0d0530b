"""The machine's limits, measured once per machine and kept: memory bandwidth and matmul rate.

Two micro-benchmarks give the ceilings a run is placed against (``runner.hardware.roofline``):

- memory bandwidth: a STREAM-style triad ``a = b + s*c`` (``torch.add(b, c, alpha=s, out=a)``)
  on tensors far larger than the last-level cache, counted as 3 arrays x size bytes (two read,
  one written), as STREAM counts it; the write-allocate read of ``a`` that a CPU also makes
  is not counted, so the figure is STREAM's, not the bus's.
- matrix-multiply throughput: square ``n x n`` matmuls in the run's dtype, ``2 n^3`` FLOPs.

Each is the best of several timed repeats after a warm-up (the best is the ceiling; the
others lost time to something else). The probe uses the threads torch has
(``torch.get_num_threads()``) and records them. On a GPU, NVML's bus width and maximum memory
clock add the datasheet bandwidth beside the measured one.

The figures are kept in the runner's cache (``$RUNNER_CACHE``, else
``~/.cache/llm-sweep-runner``) under ``hardware-probe/``, keyed by the machine (CPU model and
count, GPU name and count), the device kind, the dtype and torch's version, so each machine
pays for the probe once. ``python -m runner.hardware.probe --rerun`` measures again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR = "hardware-probe"
DTYPES = ("float32", "bfloat16", "float16")
MIB = 1 << 20
GIB = 1 << 30

# CPU triad: each tensor at least this, or 4x the last-level cache, whichever is larger ...
CPU_TENSOR_MIN_BYTES = 256 * MIB
# ... but the three together stay under ~1.5 GiB and under this share of available memory.
CPU_TENSOR_MAX_BYTES = 512 * MIB
CPU_AVAILABLE_SHARE = 0.25
CUDA_TENSOR_BYTES = 1 * GIB
CPU_MATMUL_N = 2048
CUDA_MATMUL_N = 8192
# A CPU without native arithmetic for the dtype (float16 on most x86) multiplies 2048^2
# matrices in tens of seconds; n stops growing where one multiply would take longer.
CPU_MATMUL_SECONDS = 0.5
CPU_REPEATS = 5
CUDA_REPEATS = 10
# Timed repeats stop early once a benchmark has used this much (at least one is timed).
CPU_BUDGET_SECONDS = 3.0
# On a GPU each timed sample runs this many back-to-back iterations between
# synchronisations, so a launch and a sync are not timed as part of a millisecond kernel.
CUDA_INNER = 10
TRIAD_SCALAR = 3.0


@dataclass(frozen=True)
class Peaks:
    """A machine's measured ceilings for one device kind and dtype.

    ``bandwidth_gbs`` is the triad's rate in GB/s (1e9 bytes/s); ``matmul_tflops`` the matmul
    rate in TFLOP/s (1e12 FLOP/s) in ``dtype``; ``theoretical_bandwidth_gbs`` the datasheet
    memory bandwidth from NVML (GPUs; None on CPU or where NVML does not say).
    ``tensor_bytes`` is the size of each of the triad's three tensors, ``matmul_n`` the
    matrices' side, ``threads`` torch's intra-op threads, ``probe_seconds`` the probe's wall
    time, ``measured_at`` its UTC time (ISO 8601) and ``key`` what the kept file is keyed by.
    """

    device: str
    device_name: str | None
    dtype: str
    bandwidth_gbs: float
    matmul_tflops: float
    theoretical_bandwidth_gbs: float | None
    measured_at: str
    probe_seconds: float
    torch_version: str
    tensor_bytes: int
    matmul_n: int
    repeats: int
    threads: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peaks:
        """Rebuild from :meth:`to_dict`'s output; raises KeyError/TypeError on another shape."""
        names = {f.name for f in fields(cls)}
        missing = names - data.keys()
        if missing:
            raise KeyError(f"kept peaks lack {sorted(missing)}")
        return cls(**{name: data[name] for name in names})


def _torch() -> Any:
    import torch  # here, not at import: the module's pure parts load without torch

    return torch


def _device_kind(device: str) -> str:
    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return kind


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


def _resolve_device(device: str) -> str:
    """'cpu' stays; 'cuda' becomes 'cuda:<current>'; raises where CUDA is not visible."""
    if _device_kind(device) == "cpu":
        return "cpu"
    torch = _torch()
    if not torch.cuda.is_available():
        raise RuntimeError(f"{device}: no CUDA device is visible")
    if device == "cuda":
        return f"cuda:{torch.cuda.current_device()}"
    return device


def last_level_cache_bytes() -> int | None:
    """The largest cache level's size that sysfs reports for CPU 0; None where unreadable."""
    best: tuple[int, int] | None = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": MIB, "G": GIB}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if not digits.isdigit():
            continue
        size = int(digits) * scale
        if best is None or (level, size) > best:
            best = (level, size)
    return best[1] if best else None


def cpu_tensor_bytes() -> int:
    """Each CPU triad tensor: max(256 MiB, 4 x LLC), capped at 512 MiB (three under
    1.5 GiB) and at a quarter of available memory for the three together."""
    import psutil

    llc = last_level_cache_bytes() or 0
    wanted = max(CPU_TENSOR_MIN_BYTES, 4 * llc)
    available = psutil.virtual_memory().available
    cap = min(CPU_TENSOR_MAX_BYTES, int(available * CPU_AVAILABLE_SHARE / 3))
    return max(4 * MIB, min(wanted, cap)) // 4 * 4


def _sync(device: Any) -> None:
    # runner.measure.timing.synchronize does the same, but importing it imports transformers
    # (seconds), which a CLI that only runs torch kernels has no use for.
    if device.type == "cuda":
        _torch().cuda.synchronize(device)


def _best_seconds(
    step: Callable[[], Any], device: Any, repeats: int, inner: int, budget_s: float | None
) -> tuple[float, int]:
    """Best seconds per call of ``step`` over ``repeats`` samples of ``inner`` calls each,
    after one warm-up sample; stops early past ``budget_s``. Returns (best, samples timed)."""
    _sync(device)
    for _ in range(inner):
        step()
    _sync(device)
    best = float("inf")
    timed = 0
    started = time.perf_counter()
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
        timed += 1
        if budget_s is not None and time.perf_counter() - started > budget_s:
            break
    return best, timed


def _triad_gbs(
    device: Any, tensor_bytes: int, repeats: int, inner: int, budget_s: float | None
) -> float:
    """The triad's rate: 3 x ``tensor_bytes`` per call. Float32 whatever the run's dtype:
    the bytes moved do not depend on it, and a bfloat16/float16 add on a CPU without native
    arithmetic for it would be bound by conversion, not memory."""
    torch = _torch()
    n = tensor_bytes // 4
    b = torch.ones(n, dtype=torch.float32, device=device)
    c = torch.full((n,), 2.0, dtype=torch.float32, device=device)
    a = torch.zeros(n, dtype=torch.float32, device=device)  # touched now, not in the warm-up
    best, _ = _best_seconds(
        lambda: torch.add(b, c, alpha=TRIAD_SCALAR, out=a), device, repeats, inner, budget_s
    )
    return 3 * tensor_bytes / best / 1e9


def _cpu_matmul_n(dtype: Any, wanted: int) -> int:
    """``wanted``, or less where the dtype is slow: n doubles from 256 while a multiply of
    the next size is predicted (at n^3, from one timed at this size) to take under
    CPU_MATMUL_SECONDS. Grown from measured sizes, not predicted from a small one: a small
    multiply's time is noise (thread wake-ups) on a busy machine."""
    torch = _torch()
    n = min(256, wanted)
    while n < wanted:
        x = torch.randn(n, n).to(dtype)
        seconds, _ = _best_seconds(lambda x=x: torch.mm(x, x), torch.device("cpu"), 1, 1, None)
        if seconds * 8 > CPU_MATMUL_SECONDS:
            break
        n *= 2
    return min(n, wanted)


def _matmul_tflops(
    device: Any, dtype: Any, n: int, repeats: int, inner: int, budget_s: float | None
) -> float:
    torch = _torch()
    x = torch.randn(n, n, device=device).to(dtype)
    y = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    best, _ = _best_seconds(lambda: torch.mm(x, y, out=out), device, repeats, inner, budget_s)
    return 2 * n**3 / best / 1e12


def _gpu_name_count() -> tuple[str | None, int]:
    torch = _torch()
    if not torch.cuda.is_available():
        return None, 0
    return torch.cuda.get_device_name(torch.cuda.current_device()), torch.cuda.device_count()


def gpu_theoretical_bandwidth_gbs(cuda_index: int) -> float | None:
    """The datasheet bandwidth from NVML's bus width and maximum memory clock
    (``runner.hardware.gpu.theoretical_bandwidth_gbs``); None where NVML or a reading is
    not available here."""
    try:
        from runner.hardware import gpu
        from runner.measure import nvml as nvml_module

        nvml = nvml_module.open_nvml()
        formula = getattr(gpu, "theoretical_bandwidth_gbs", None)
        bus_width = getattr(nvml, "memory_bus_width_bits", None)
        clock = getattr(nvml, "max_memory_clock_mhz", None)
        if nvml is None or formula is None or bus_width is None or clock is None:
            return None
        (index,), _ = nvml_module.cuda_to_nvml_indices([cuda_index], nvml.device_count())
        handle = nvml.handle(index)
        bits, mhz = bus_width(handle), clock(handle)
        if not bits or not mhz:
            return None
        return float(formula(bits, mhz))
    except Exception as exc:  # no pynvml, no driver, a reading NVML refuses
        log.debug("no theoretical bandwidth for cuda:%s: %s", cuda_index, exc)
        return None


def machine_key(device: str, dtype: str) -> str:
    """What the kept figures depend on: the machine, the device kind, dtype, torch, threads."""
    import psutil

    from runner.environment import cpu_model_name

    torch = _torch()
    kind = _device_kind(device)
    parts = [
        "hardware-probe 1",
        platform.machine(),
        cpu_model_name() or platform.processor() or "unknown cpu",
        f"cpus {psutil.cpu_count()}",
        f"threads {torch.get_num_threads()}",
    ]
    if kind == "cuda":
        name, count = _gpu_name_count()
        parts += [f"gpu {name}", f"gpus {count}"]
    parts += [kind, dtype, f"torch {torch.__version__}"]
    return "|".join(parts)


def kept_path(key: str) -> Path:
    from runner.models.cache import cache_root

    return cache_root(None) / DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def measure_peaks(
    device: str,
    dtype: str,
    *,
    tensor_bytes: int | None = None,
    matmul_n: int | None = None,
    repeats: int | None = None,
) -> Peaks:
    """Measure the triad bandwidth and the matmul rate on ``device`` ('cpu', 'cuda',
    'cuda:N') in ``dtype`` (float32, bfloat16, float16).

    Sizes default per device (CPU: tensors of max(256 MiB, 4 x LLC) capped as
    :func:`cpu_tensor_bytes` says, n = 2048, less where the dtype is slow; CUDA: 1 GiB
    tensors, n = 8192); tests pass small ones. On CPU it takes a few seconds.
    """
    _check_dtype(dtype)
    started = time.perf_counter()
    torch = _torch()
    resolved = _resolve_device(device)
    dev = torch.device(resolved)
    on_cuda = dev.type == "cuda"
    torch_dtype = getattr(torch, dtype)
    if on_cuda:
        torch.cuda.set_device(dev)
    tensor_bytes = tensor_bytes or (CUDA_TENSOR_BYTES if on_cuda else cpu_tensor_bytes())
    repeats = repeats or (CUDA_REPEATS if on_cuda else CPU_REPEATS)
    inner = CUDA_INNER if on_cuda else 1
    budget = None if on_cuda else CPU_BUDGET_SECONDS
    bandwidth = _triad_gbs(dev, tensor_bytes, repeats, inner, budget)
    if matmul_n is None:
        matmul_n = CUDA_MATMUL_N if on_cuda else _cpu_matmul_n(torch_dtype, CPU_MATMUL_N)
    tflops = _matmul_tflops(dev, torch_dtype, matmul_n, repeats, inner, budget)
    if on_cuda:
        name: str | None = torch.cuda.get_device_name(dev)
        theoretical = gpu_theoretical_bandwidth_gbs(dev.index or 0)
        torch.cuda.empty_cache()
    else:
        from runner.environment import cpu_model_name

        name = cpu_model_name() or platform.processor() or None
        theoretical = None
    return Peaks(
        device=resolved,
        device_name=name,
        dtype=dtype,
        bandwidth_gbs=bandwidth,
        matmul_tflops=tflops,
        theoretical_bandwidth_gbs=theoretical,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        probe_seconds=time.perf_counter() - started,
        torch_version=str(torch.__version__),
        tensor_bytes=int(tensor_bytes),
        matmul_n=int(matmul_n),
        repeats=int(repeats),
        threads=int(torch.get_num_threads()),
        key=machine_key(resolved, dtype),
    )


def read_kept(key: str) -> Peaks | None:
    """The figures kept under ``key``; None when absent, unreadable or kept for another key."""
    path = kept_path(key)
    try:
        peaks = Peaks.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("kept hardware probe %s unreadable (%s); measuring again", path, exc)
        return None
    if peaks.key != key:
        log.warning("kept hardware probe %s is for another machine; measuring again", path)
        return None
    return peaks


def keep(peaks: Peaks) -> Path | None:
    """Write ``peaks`` under its key, atomically; None where the cache is not writable."""
    from runner.results import write_json_atomic

    path = kept_path(peaks.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(path, peaks.to_dict())
    except OSError as exc:  # a read-only cache: measured again next time
        log.warning("hardware probe not kept in %s: %s", path, exc)
        return None


def cached_peaks(device: str, dtype: str, *, measure_if_missing: bool = True) -> Peaks | None:
    """This machine's kept figures for ``device`` and ``dtype``; measured and kept first when
    there are none (or they are unreadable), unless ``measure_if_missing`` is False."""
    _check_dtype(dtype)
    resolved = _resolve_device(device)
    kept = read_kept(machine_key(resolved, dtype))
    if kept is not None or not measure_if_missing:
        return kept
    peaks = measure_peaks(resolved, dtype)
    keep(peaks)
    return peaks


def describe(peaks: Peaks, path: Path | None) -> list[str]:
    """The CLI's lines: one per figure, then where they are kept."""
    lines = [
        f"device: {peaks.device} ({peaks.device_name or 'unknown'}), "
        f"{peaks.threads} torch threads, torch {peaks.torch_version}",
        f"memory bandwidth (triad): {peaks.bandwidth_gbs:.1f} GB/s"
        f" (3 x {peaks.tensor_bytes / MIB:.0f} MiB, best of {peaks.repeats})",
    ]
    if peaks.theoretical_bandwidth_gbs is not None:
        lines.append(f"memory bandwidth (datasheet): {peaks.theoretical_bandwidth_gbs:.1f} GB/s")
    lines += [
        f"matmul {peaks.dtype}: {peaks.matmul_tflops:.3g} TFLOP/s"
        f" (n = {peaks.matmul_n}, best of {peaks.repeats})",
        f"measured at {peaks.measured_at} in {peaks.probe_seconds:.1f} s",
        f"kept in {path}" if path is not None else "not kept (cache not writable)",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m runner.hardware.probe",
        description="Print this machine's kept memory bandwidth and matmul rate, measuring "
        "them first if none are kept (or with --rerun).",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--rerun", action="store_true", help="measure again and overwrite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.device == "cuda" and not _torch().cuda.is_available():
        print("--device cuda: no CUDA device is visible", file=sys.stderr)
        raise SystemExit(2)
    if args.rerun:
        peaks = measure_peaks(args.device, args.dtype)
        path = keep(peaks)
    else:
        peaks = cached_peaks(args.device, args.dtype)
        assert peaks is not None  # measure_if_missing
        path = kept_path(peaks.key)
        path = path if path.is_file() else None
    print("\n".join(describe(peaks, path)))


if __name__ == "__main__":
    main()
