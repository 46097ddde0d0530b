"""Hydra callback: log jobs and sweeps to MLflow when ``tracking=mlflow``.

Always registered (``hydra.callbacks.tracking`` in ``conf/config.yaml``) and idle with
``tracking=off``. Listed before ``sweep_report``: Hydra runs end-of-sweep callbacks in
reverse order, so the report exists when the parent run logs it.

Hydra calls no ``on_job_end``/``on_multirun_end`` when a stop signal ends the job (a
``BaseException``); :func:`settle_interrupted` is what ``python -m runner`` calls then. A
tracking failure is logged, never raised: the results on disk are what counts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.tracking.store import POINTER, read_pointer, sweep_status, write_pointer

log = logging.getLogger(__name__)


def _enabled(config: DictConfig) -> bool:
    backend = (config.get("tracking") or {}).get("backend")
    return getattr(backend, "value", backend) == "mlflow"  # an Enum in a structured config


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.get("mode") == RunMode.MULTIRUN


def _tracker(uri: str, experiment: str) -> Any:
    from runner.tracking.store import Tracker

    return Tracker(uri, experiment)


def resolve_uri(config: DictConfig, run_dir: Path | None = None) -> str:
    """``tracking.uri``, or SQLite in the sweep directory (a sweep) or beside the run
    directories (a single run)."""
    from runner.tracking.store import default_uri

    uri = config.tracking.get("uri")
    if uri:
        return str(uri)
    if _is_multirun(config):
        return default_uri(Path(str(config.hydra.sweep.dir)))
    return default_uri((run_dir or Path(str(config.hydra.runtime.output_dir))).parent)


class TrackingCallback(Callback):
    """One MLflow run per job, a parent run per sweep (see :mod:`runner.tracking.store`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _enabled(config):
            return
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            tracker = _tracker(resolve_uri(config), str(config.tracking.experiment))
            command = " ".join(["python -m runner", *sys.argv[1:]])[:5000]
            run_id = tracker.start_parent(sweep_dir, {"runner.command": command})
            log.info("tracking: sweep run %s in %s", run_id, tracker.uri)
        except Exception:
            log.exception("tracking: the sweep's parent run could not be started")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _enabled(config):
            return
        try:
            run_dir = Path(str(config.hydra.runtime.output_dir))
            parent = None
            if _is_multirun(config):
                parent = read_pointer(Path(str(config.hydra.sweep.dir))).get("run_id")
            # Where this job is to be logged, also if a stop ends it before on_job_end.
            pointer = read_pointer(run_dir)
            pointer.update(
                uri=resolve_uri(config, run_dir),
                experiment=str(config.tracking.experiment),
                parent_run_id=parent,
            )
            write_pointer(run_dir, pointer)
        except Exception:
            log.exception("tracking: could not prepare the job's run")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if _enabled(config):
            log_pending(Path(str(config.hydra.runtime.output_dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _enabled(config):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        statuses = [log_pending(p.parent) for p in sorted(sweep_dir.glob(f"*/{POINTER}"))]
        finish_sweep(sweep_dir, sweep_status(s for s in statuses if s))


def log_pending(run_dir: Path) -> str | None:
    """Log the job in ``run_dir`` if its pointer says where and it is not logged yet;
    return the job's result status (None when nothing could be logged)."""
    pointer = read_pointer(run_dir)
    if not pointer.get("uri"):
        return None
    try:
        from runner.results import read_result

        tracker = _tracker(pointer["uri"], str(pointer.get("experiment") or "llm-sweep-runner"))
        tracker.log_job(run_dir, pointer.get("parent_run_id"))
        return str(read_result(run_dir).get("status"))
    except Exception:
        log.exception("tracking: %s could not be logged", run_dir)
        return None


def finish_sweep(sweep_dir: Path, status: str) -> None:
    pointer = read_pointer(sweep_dir)
    if not pointer.get("uri"):
        return
    try:
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient(pointer["uri"]).get_experiment(str(pointer["experiment_id"]))
        _tracker(pointer["uri"], experiment.name).finish_parent(sweep_dir, status)
    except Exception:
        log.exception("tracking: the sweep's parent run could not be finished")


def settle_interrupted(run_dirs: list[Path], multirun: bool) -> None:
    """After a stop: log the jobs that ran (the stopped one as KILLED) and end the sweep's
    parent run as KILLED, with the report written so far."""
    statuses = [log_pending(Path(d)) for d in dict.fromkeys(run_dirs)]
    if multirun and run_dirs and any(s is not None for s in statuses):
        finish_sweep(Path(run_dirs[0]).parent, "KILLED")
