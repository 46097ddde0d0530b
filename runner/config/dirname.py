"""Readable, unique run-directory names derived from a job's overrides."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from omegaconf import OmegaConf

# Keys that do not describe the measured point; left out of the name.
NOISE_KEYS = ("cache_dir", "measure.isolation")
MAX_LENGTH = 120


def job_dirname(overrides: Iterable[str]) -> str:
    """``compile=on,quant=nf4`` from the overrides; ``default`` when there are none.

    Values are made path-safe; when that loses information (a path value, a very
    long name) a short hash of the original overrides keeps the name unique.
    """
    items = sorted(str(o) for o in overrides)
    kept = [o for o in items if o.lstrip("+~").split("=", 1)[0] not in NOISE_KEYS]
    safe = [o.replace("/", "_").replace(" ", "") for o in kept]
    name = ",".join(safe) or "default"
    if safe != kept or len(name) > MAX_LENGTH:
        digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
        name = f"{name[:MAX_LENGTH]}-{digest}"
    return name


def register_resolver() -> None:
    if not OmegaConf.has_resolver("runner.job_dirname"):
        OmegaConf.register_new_resolver("runner.job_dirname", lambda o: job_dirname(o or []))
