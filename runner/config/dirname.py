"""Readable, unique run-directory names derived from a job's overrides."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from omegaconf import OmegaConf

from runner.config.overrides import read

# Keys that do not describe the measured point (unless swept); left out of the name.
NOISE_KEYS = (
    "cache_dir",
    "measure.isolation",
    "model.path",
    "workload.path",
    "decoding.seed",
    "workload.seed",
    "model.init_seed",
    "quality.text_path",
    "quality.reference",
    "quality.task_dir",
)
MAX_LENGTH = 120
# Set by the entry for a multirun; exported to launcher jobs with the environment.
SWEPT_ENV = "RUNNER_SWEPT_KEYS"


def job_dirname(overrides: Iterable[str], swept: Iterable[str] | None = None) -> str:
    """``compile=on,quant=nf4`` from the overrides; ``default`` when there are none.

    In a sweep only the ``swept`` keys (those given several values) name the
    job: the others are the same for every job and recorded in its config.
    Values are made path-safe; when that loses information (a path value, a very
    long name) a short hash of the original overrides keeps the name unique.
    """
    items = sorted(str(o) for o in overrides)
    key = {o: read(o).key for o in items}
    swept = {s for s in (swept or ()) if s}
    kept = [o for o in items if key[o] not in NOISE_KEYS or key[o] in swept]
    if swept:
        kept = [o for o in kept if key[o] in swept] or kept
    safe = [o.replace("/", "_").replace(" ", "") for o in kept]
    name = ",".join(safe) or "default"
    if safe != kept or len(name) > MAX_LENGTH:
        digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
        name = f"{name[:MAX_LENGTH]}-{digest}"
    return name


def register_resolver() -> None:
    if not OmegaConf.has_resolver("runner.job_dirname"):
        OmegaConf.register_new_resolver(
            "runner.job_dirname",
            lambda o: job_dirname(o or [], os.environ.get(SWEPT_ENV, "").split(",")),
        )
