"""CodeCarbon's CPU power lookup, kept on disk for each machine.

Without RAPL, CodeCarbon estimates CPU power from the CPU's TDP, which it looks up by CPU
model (py-cpuinfo in a subprocess, then a fuzzy search of its CSV table): about 2 s of CPU,
once per process (``codecarbon.core.hardware_cache``), that is once per spawned job and
once per fork server. Its answer (model name, watts) depends only on the CPU model, the
number of CPUs (its per-thread default for a model it does not know) and its table, that
is its version. Keyed by those, the answer is kept in the runner's cache
(``$RUNNER_CACHE``, else ``~/.cache/llm-sweep-runner``) under ``codecarbon-cpu/``; every
later process on the machine seeds CodeCarbon's per-process cache from it.

Not under Slurm, where CodeCarbon counts the CPUs of each job with ``scontrol``; nor where
``/proc/cpuinfo`` names no CPU model to key on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

DIR = "codecarbon-cpu"


def machine_key() -> str | None:
    """What CodeCarbon's answer depends on; None where it cannot be read cheaply."""
    if os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID"):
        return None
    from runner.environment import cpu_model_name

    model = cpu_model_name()
    if model is None:
        return None
    import psutil

    from runner.measure.codecarbon import codecarbon_version

    return f"codecarbon {codecarbon_version()}|{platform.machine()}|{model}|{psutil.cpu_count()}"


def kept_path(key: str) -> Path:
    from runner.models.cache import cache_root

    return cache_root(None) / DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def seed() -> bool:
    """Give CodeCarbon this machine's kept answer; True when its cache holds one now."""
    try:
        from codecarbon.core import cpu, hardware_cache
    except ImportError:
        return False
    if getattr(hardware_cache, "_tdp", None) is not None:
        return True
    key = machine_key()
    if key is None:
        return False
    try:
        kept = json.loads(kept_path(key).read_text())
        if kept["key"] != key:
            return False
        tdp = cpu.TDP.__new__(cpu.TDP)  # what TDP() would have found, without looking
        tdp.model, tdp.tdp = kept["model"], kept["tdp"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    hardware_cache._tdp = tdp
    return True


def keep() -> None:
    """Write the answer CodeCarbon found in this process, once per machine key."""
    try:
        from codecarbon.core import hardware_cache
    except ImportError:
        return
    tdp = getattr(hardware_cache, "_tdp", None)
    key = machine_key() if tdp is not None else None
    if key is None:
        return
    path = kept_path(key)
    if path.is_file():
        return
    from runner.results import atomic_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "model": tdp.model, "tdp": tdp.tdp}))
    except OSError as exc:  # a read-only cache: CodeCarbon looks it up again next time
        log.debug("CodeCarbon's CPU power not kept in %s: %s", path, exc)
