"""``python -m bench.gpu_check``: refused without CUDA, and its verdicts on hand-made results
(the GPU sweep itself needs a GPU: ``make gpu-check``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_exits_3_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: run `make gpu-check` instead")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = "gpu-check needs an NVIDIA GPU (torch.cuda.is_available() is False); nothing was run"
    assert line in (proc.stdout + proc.stderr).splitlines()


def test_make_gpu_check_without_cuda_is_not_a_make_failure():
    """The message, and make exits 0 (no "Error 3"); -o: never reinstall the venv here."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: run `make gpu-check` instead")
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "gpu-check", f"PY={sys.executable}"],
        cwd=REPO,
        # Not the make that runs this suite's arguments (`make test ARGS=...` passes them on
        # to every make below it through MAKEFLAGS).
        env={
            **{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "ARGS")},
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gpu-check needs an NVIDIA GPU" in proc.stdout + proc.stderr
    assert "Error" not in proc.stderr


def _gpu_result(quant: str, compiled: bool, footprint_mib: float, **energy: Any) -> dict:
    gpu = {"joules": 100.0, "method": "nvml-counter", **energy}
    return {
        "status": "ok",
        "config": {"quant": {"name": quant}, "compile": {"enabled": compiled}},
        "applied": {"model": {"compiled": compiled, "compiled_frames": 3 if compiled else None}},
        "metrics": {
            "memory": {"model_footprint_bytes": footprint_mib * 2**20},
            "ttft_seconds": {"mean": 0.02},
            "itl_seconds": {"mean": 0.01},
            "throughput": {"output_tokens_per_second": 90.0},
        },
        "energy": {
            "gpu_nvml": gpu,
            "codecarbon_gpu_joules": 90.0,
            "gpu_relative_difference": (gpu["joules"] - 90.0) / gpu["joules"],
        },
        "error": None,
    }


def test_gpu_check_verdicts_on_results(tmp_path):
    """The checks of bench.gpu_check on hand-made results (the GPU run itself needs a GPU)."""
    from bench import gpu_check

    def sweep(results: dict[str, dict]) -> list[str]:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for name, result in results.items():
            (root / name).mkdir(parents=True)
            (root / name / "result.json").write_text(json.dumps(result))
        rows = gpu_check.read_rows(root)
        assert gpu_check.table(rows).count("\n") == len(rows) + 1
        return gpu_check.check_rows(rows, gpu_check.LEAN, tolerance=0.25)

    good = {
        "quant=int8": _gpu_result("int8", False, 1100),
        "quant=nf4": _gpu_result("nf4", False, 600),
        "compile=off": _gpu_result("none", False, 1900),
        "compile=on": _gpu_result("none", True, 1900),
    }
    assert sweep(good) == []

    bad = dict(good)
    bad["quant=nf4"] = _gpu_result("nf4", False, 1200)  # 4-bit above 8-bit
    bad["compile=on"] = _gpu_result("none", True, 1900, joules=200.0)  # 55% off CodeCarbon
    bad["compile=on"]["applied"]["model"]["compiled_frames"] = 0
    bad["quant=int8"] = {**_gpu_result("int8", False, 1100), "status": "failed"}
    bad["quant=int8"]["error"] = {"message": "CUDA out of memory"}
    problems = "\n".join(sweep(bad))
    assert "nf4 < int8 < bf16" in problems
    assert "+55.0% exceeds +-25%" in problems
    assert "compiled forward not used" in problems
    assert "status failed: CUDA out of memory" in problems
