"""Readable, unique run-directory names derived from a job's overrides.

Which overrides name a directory is Hydra's own setting,
``hydra.job.config.override_dirname.exclude_keys`` (the keys left out of
``hydra.job.override_dirname``); the name is built here rather than taken from
``hydra.job.override_dirname`` because values must be made path-safe and long names
shortened. For a sweep, ``python -m runner`` sets that list to every key that is not swept
(:func:`sweep_exclude_override`): a Hydra override reaches every job's config, whatever the
launcher, and is recorded in the job's ``.hydra/hydra.yaml``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from omegaconf import OmegaConf

from runner.config.overrides import parse, read

# Keys that do not describe the measured point (unless swept); left out of the name when
# exclude_keys is empty (a single run).
NOISE_KEYS = (
    "cache_dir",
    "measure.isolation",
    "model.path",
    "workload.path",
    "decoding.seed",
    "workload.seed",
    "model.init_seed",
    "search.objectives",
    "search.constraints",
    "search.violation",
    "tracking",
    "tracking.uri",
    "tracking.experiment",
    "quality.text_path",
    "quality.reference",
    "quality.task_dir",
    "repeat.count",
    "repeat.order",
    "repeat.seed",
)
MAX_LENGTH = 120
EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"


def job_dirname(overrides: Iterable[str], exclude: Iterable[str] | None = None) -> str:
    """``compile=on,quant=nf4`` from the overrides; ``default`` when none is left.

    Overrides of keys in ``exclude`` do not name the job; with ``exclude`` empty, those of
    :data:`NOISE_KEYS` do not. Values are made path-safe; when that loses information (a
    path value, a very long name) a short hash of the original overrides keeps the name
    unique.
    """
    items = sorted(str(o) for o in overrides)
    dropped = {str(k) for k in (exclude or ()) if k} or set(NOISE_KEYS)
    kept = [o for o in items if read(o).key not in dropped]
    safe = [o.replace("/", "_").replace(" ", "") for o in kept]
    name = ",".join(safe) or "default"
    if safe != kept or len(name) > MAX_LENGTH:
        digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
        name = f"{name[:MAX_LENGTH]}-{digest}"
    return name


def sweep_exclude_keys(overrides: list[str]) -> list[str]:
    """For a sweep: every key of the command line that is not swept, and the noise keys
    that are not swept (a swept seed names its jobs). Raises Hydra's parse errors."""
    settings = [s for s in parse(overrides) if not s.is_hydra]
    swept = {s.key for s in settings if s.swept}
    fixed = [s.key for s in settings if not s.swept and s.key not in swept]
    return sorted({*fixed, *NOISE_KEYS} - swept)


def sweep_exclude_override(overrides: list[str]) -> str:
    """The Hydra override that names a sweep's jobs by their swept keys only."""
    keys = ",".join(
        "'" + k.replace("\\", "\\\\").replace("'", "\\'") + "'"
        for k in sweep_exclude_keys(overrides)
    )
    return f"{EXCLUDE_KEYS}=[{keys}]"


def register_resolver() -> None:
    if not OmegaConf.has_resolver("runner.job_dirname"):
        OmegaConf.register_new_resolver(
            "runner.job_dirname", lambda o, exclude=None: job_dirname(o or [], exclude or [])
        )
