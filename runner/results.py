"""The result of one run: schema, atomic write, reading back, flattening.

``result.json`` (``SCHEMA_VERSION`` 1) has these top-level keys:

- ``schema_version``: int.
- ``status``: ``ok`` | ``failed`` | ``interrupted``.
- ``run_id``: the run directory's name; ``config_hash``: sha256 of everything
  that changes the measurement (not output paths), used to resume sweeps.
- ``overrides``: the command-line overrides of this job (the swept factors).
- ``started_at`` / ``finished_at``: ISO 8601 UTC.
- ``config``: the resolved config.
- ``requested``: the kwargs the runner passed (``from_pretrained``,
  ``generate``, ``compile``); ``applied``: what the loaded model and
  ``generate`` actually used, read back after loading.
- ``warnings``: list of one-line strings for people: named warnings (silent fallbacks the
  runner caught, :mod:`runner.models.fallbacks`), the runner's own warnings, and one line
  per distinct library warning with its count per phase.
- ``warnings_detail``: the same typed, :class:`runner.sections.warnings.WarningsDetail`.
- ``workload``: a summary of the requests.
- ``metrics``: timing, throughput and memory, :class:`runner.sections.metrics.Metrics`
  (see README "Result fields"); distributions are :class:`~runner.sections.metrics.Stats`.
- ``energy``: :class:`runner.sections.energy.Energy`, or ``null`` when energy is off.
- ``quality``: :class:`runner.sections.quality.Quality` (perplexity, agreement with a
  reference run, lm-eval), or ``null`` when the run did not get that far.
- ``environment``: versions, hardware, git commit, Slurm ids.
- ``error``: ``null`` or ``{type, message, traceback, phase}``.

``metrics``, ``energy``, ``quality`` and ``warnings_detail`` are typed sections: written and
read only through their ``to_dict``/``from_dict`` (see :mod:`runner.sections.base` for how
unknown, missing or mistyped keys are read). The per-request table is
:mod:`runner.sections.requests`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from runner.sections.energy import Energy
from runner.sections.metrics import Metrics
from runner.sections.quality import Quality
from runner.sections.warnings import WarningsDetail

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"


class Status(str, Enum):
    ok = "ok"
    failed = "failed"
    interrupted = "interrupted"


class Phase(str, Enum):
    """Where a run was when it failed or was stopped; recorded in ``error.phase``.

    In order: ``config`` (validation, translation), ``cooldown`` (the wait before the run,
    ``measure.cooldown_*``), ``baseline`` (idle energy baseline),
    ``load``, ``compile`` (up to and including the first, compiling call), ``verify``
    (read-back), ``warmup``, ``measure``, ``quality`` (perplexity, agreement, lm-eval: after
    the timed and energy windows), ``energy`` (the energy summary), ``write``.
    """

    config = "config"
    cooldown = "cooldown"
    baseline = "baseline"
    load = "load"
    compile = "compile"
    verify = "verify"
    warmup = "warmup"
    measure = "measure"
    quality = "quality"
    energy = "energy"
    write = "write"


@dataclass
class RunError:
    type: str
    message: str
    traceback: str | None
    phase: str


@dataclass
class RunResult:
    status: Status
    run_id: str
    config_hash: str
    overrides: list[str]
    started_at: str
    finished_at: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    requested: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    warnings_detail: WarningsDetail = field(default_factory=WarningsDetail)
    workload: dict[str, Any] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    energy: Energy | None = None
    quality: Quality | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    error: RunError | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # deep copies of the plain dicts; sections replaced below
        data["status"] = self.status.value
        data["metrics"] = self.metrics.to_dict()
        data["warnings_detail"] = self.warnings_detail.to_dict()
        data["energy"] = None if self.energy is None else self.energy.to_dict()
        data["quality"] = None if self.quality is None else self.quality.to_dict()
        # schema_version first: a reader can dispatch on it before anything else.
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """A result from its dict (e.g. :func:`read_result`'s); needs a known ``status``.

        Values of the wrong type read as empty, like the sections' (see
        :mod:`runner.sections.base`), so a hand-edited file still renders.
        """

        def typed(key: str, kind: type, default: Any) -> Any:
            value = data.get(key)
            return value if isinstance(value, kind) else default

        err = typed("error", dict, None)
        energy = data.get("energy")
        quality = data.get("quality")
        return cls(
            status=Status(data["status"]),
            run_id=typed("run_id", str, ""),
            config_hash=typed("config_hash", str, ""),
            overrides=[str(o) for o in typed("overrides", list, [])],
            started_at=typed("started_at", str, ""),
            finished_at=typed("finished_at", str, None),
            config=typed("config", dict, {}),
            requested=typed("requested", dict, {}),
            applied=typed("applied", dict, {}),
            warnings=[str(w) for w in typed("warnings", list, [])],
            warnings_detail=WarningsDetail.from_dict(data.get("warnings_detail")),
            workload=typed("workload", dict, None),
            metrics=Metrics.from_dict(data.get("metrics")),
            energy=Energy.from_dict(energy) if isinstance(energy, dict) else None,
            quality=Quality.from_dict(quality) if isinstance(quality, dict) else None,
            environment=typed("environment", dict, {}),
            error=None
            if err is None
            else RunError(
                str(err.get("type") or ""),
                str(err.get("message") or ""),
                err.get("traceback"),
                str(err.get("phase") or ""),
            ),
            schema_version=typed("schema_version", int, SCHEMA_VERSION),
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    return str(obj)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path in ``path``'s directory; on success fsync it and rename it over ``path``.

    Whatever the block writes there (``Path.write_text``, pandas, pyarrow) appears at
    ``path`` whole or not at all; on an exception the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            # mkstemp creates 0600; results are shared files, readable like any other.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        finally:
            os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> Path:
    """Write JSON to a temp file in the same directory, fsync, then rename over ``path``."""
    text = json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def write_result(run_dir: Path, result: RunResult) -> Path:
    """Atomically write ``result.json`` into ``run_dir``."""
    return write_json_atomic(Path(run_dir) / RESULT_FILE, result.to_dict())


class ResultReadError(ValueError):
    """A result file exists but cannot be used (partial, corrupt, wrong schema)."""


def read_result(path: Path) -> dict[str, Any]:
    """Read a ``result.json`` (or the run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ResultReadError(f"{path}: unreadable result ({exc})") from exc
    if not isinstance(data, dict) or "status" not in data or "schema_version" not in data:
        raise ResultReadError(f"{path}: not a runner result (no status/schema_version)")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ResultReadError(
            f"{path}: schema_version {data['schema_version']} is newer than this runner's "
            f"({SCHEMA_VERSION}); upgrade the runner"
        )
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys (``metrics.ttft_seconds.mean``); lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
