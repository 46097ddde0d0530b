"""The pre-flight's CUDA answer without importing torch (runner/cuda_probe.py)."""

from __future__ import annotations

import subprocess
import sys

from runner.cuda_probe import gpu_build_in

CPU_BUILD = """from typing import Optional
__version__ = '2.13.0+cpu'
cuda: Optional[str] = None
hip: Optional[str] = None
"""


def test_the_build_is_read_from_torch_version_py():
    assert not gpu_build_in(CPU_BUILD)
    assert gpu_build_in(
        CPU_BUILD.replace("cuda: Optional[str] = None", "cuda: Optional[str] = '12.8'")
    )
    assert gpu_build_in(CPU_BUILD.replace("hip: Optional[str] = None", "hip = '6.2.41133'"))


def test_it_agrees_with_torch_and_does_not_import_it():
    code = (
        "import sys; from runner.cuda_probe import cuda_available; a = cuda_available(); "
        "imported = 'torch' in sys.modules; import torch; "
        "print(a, torch.cuda.is_available(), imported)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == out[1]
    assert out[2] == "False"
