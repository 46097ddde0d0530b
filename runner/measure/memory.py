"""Memory over a measured window: CUDA peak allocated/reserved, or process peak RSS.

On CUDA the peak statistics are reset at the window's start. On CPU, Linux
lets a process reset its own RSS high-water mark (``/proc/self/clear_refs``
with ``5``), so the peak belongs to the window; where that is not possible
the lifetime peak is reported and labelled as such.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path

import torch

from runner.sections.metrics import Memory


def read_hwm_bytes(pid: int | str = "self") -> int | None:
    """The RSS high-water mark of process ``pid`` (Linux ``VmHWM``), None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_hwm(pid: int | str = "self") -> bool:
    """Reset the RSS high-water mark of process ``pid``; False where Linux refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _Box:
    value: Memory | None = None


@contextlib.contextmanager
def track_memory(device: torch.device | None) -> Iterator[_Box]:
    """Yield a box whose ``value`` holds the window's peaks after the block exits.

    The :class:`Memory` in the box has no ``model_footprint_bytes``: the caller knows it.
    """
    box = _Box()
    cuda = device is not None and device.type == "cuda"
    reset_ok = False
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_ok = reset_hwm()
    try:
        yield box
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            allocated = torch.cuda.max_memory_allocated(device)
            box.value = Memory(
                peak_bytes=allocated,
                peak_source="cuda-max-allocated",
                peak_allocated_bytes=allocated,
                peak_reserved_bytes=torch.cuda.max_memory_reserved(device),
                peak_rss_bytes=read_hwm_bytes(),
            )
        else:
            hwm = read_hwm_bytes() if reset_ok else None
            if hwm is None:
                # ru_maxrss is in KiB on Linux and covers the whole process lifetime.
                hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                source = "process-lifetime-peak-rss"
            else:
                source = "process-peak-rss"
            box.value = Memory(peak_bytes=hwm, peak_source=source, peak_rss_bytes=hwm)


def model_footprint_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (quantized storage counted as stored)."""
    return (
        int(model.get_memory_footprint())
        if hasattr(model, "get_memory_footprint")
        else sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    )
