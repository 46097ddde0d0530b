"""Whether CUDA is usable here, for the pre-flight, without importing torch.

The command's pre-flight runs beside the fork server's preload on the same cores, so
torch's import (~1.4 s of CPU) there delays every job. ``torch.cuda.is_available()`` is
true when torch was built with CUDA (``torch/version.py``) and the driver shows a device
this process may use; both are read here directly. The run itself validates again with
torch, so a wrong answer here costs a late refusal, never a wrong measurement.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

_VERSION_LINE = re.compile(r"^(cuda|hip)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


def torch_gpu_build() -> bool:
    """torch was built with CUDA (or ROCm, which answers to torch.cuda too)."""
    spec = importlib.util.find_spec("torch")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    except OSError:
        return False
    return gpu_build_in(text)


def gpu_build_in(version_py: str) -> bool:
    """Whether the text of a ``torch/version.py`` names a CUDA or HIP version."""
    return any(value != "None" for _, value in _VERSION_LINE.findall(version_py))


def visible_devices() -> int:
    """NVIDIA devices the driver reports, limited by ``CUDA_VISIBLE_DEVICES``; 0 without
    a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    from runner.measure.nvml import NvmlError, open_nvml

    nvml = open_nvml()
    if nvml is None:  # no driver, no library: no device
        return 0
    try:
        count = nvml.device_count()
    except NvmlError:
        return 0
    if visible is None:
        return count
    return min(count, len([v for v in visible.split(",") if v.strip()]))


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, asked of torch itself when it is imported already."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    return torch_gpu_build() and visible_devices() > 0
