"""Logging results to MLflow: one run per job, a parent run per sweep.

Everything logged comes from what the job left on disk (``result.json``, the per-request
table, ``emissions.csv``, ``run.log``), so a job is logged the same way whether its
end-of-job callback ran or the command was stopped and logs it afterwards. A small pointer
file, ``tracking.json``, in each run and sweep directory says where its MLflow run is and
which result it logged: a skipped job (already ``ok``) or a second settling does not log
it twice, and a resumed sweep keeps its parent run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.config.overrides import parse_lenient
from runner.report.quality import headline as quality_headline
from runner.results import ResultReadError, flatten, read_result, write_json_atomic
from runner.sections.energy import Energy
from runner.sections.figures import headline_numbers
from runner.sections.metrics import Metrics

log = logging.getLogger(__name__)

POINTER = "tracking.json"
DB_FILE = "mlflow.db"
# Hidden: a copy of a run's result.json stored there is never taken for a run by the
# report's scan, which skips hidden folders (and recognises copies anyway).
ARTIFACTS_DIR = ".mlartifacts"
# result status -> MLflow run status
STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
JOB_ARTIFACTS = ("result.json", "requests.parquet", "requests.csv", "emissions.csv", "run.log")
SWEEP_ARTIFACTS = (
    "report.md",
    "summary.csv",
    "summary.parquet",
    "search.json",
    "optimization_results.yaml",
)
KNOWN_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
_BATCH = 100  # MLflow's limit of params (and tags) per log_batch call


class TrackingError(ValueError):
    """A tracking URI that cannot be used; one-line message."""


def default_uri(directory: Path) -> str:
    """The store when ``tracking.uri`` is unset: SQLite in ``directory``, no server."""
    return f"sqlite:///{Path(directory).resolve() / DB_FILE}"


def _local_dir(uri: str) -> Path | None:
    """The directory a local store writes to; None for a remote one."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri.split("sqlite:///", 1)[1] if "sqlite:///" in uri else ""
        return Path(path).parent if path else None
    if parsed.scheme in ("", "file"):
        return Path(parsed.path or uri)
    return None


def check_uri(uri: str) -> None:
    """A local store's directory can be created and written; the scheme is one MLflow has.

    Remote stores (a tracking server, a database) cannot be checked without the network
    and are left to MLflow. Raises :class:`TrackingError`.
    """
    scheme = urlparse(uri).scheme
    if scheme and scheme not in KNOWN_SCHEMES and len(scheme) > 1:  # len 1: a Windows drive
        raise TrackingError(
            f"tracking.uri={uri}: unknown scheme {scheme!r}; use one of "
            + ", ".join(KNOWN_SCHEMES)
            + " (e.g. sqlite:///outputs/mlflow.db)"
        )
    if scheme == "sqlite" and "sqlite:///" not in uri:
        raise TrackingError(
            f"tracking.uri={uri}: expected sqlite:///relative.db or sqlite:////abs.db"
        )
    directory = _local_dir(uri)
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise TrackingError(
            f"tracking.uri={uri}: cannot write to {directory} ({exc.strerror})"
        ) from exc


def read_pointer(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(directory) / POINTER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_pointer(directory: Path, data: dict[str, Any]) -> None:
    write_json_atomic(Path(directory) / POINTER, data)


def _ms(iso: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(iso)).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _identity(result: dict[str, Any]) -> str:
    """Which result was logged: a rerun of the directory writes a different one."""
    keys = ("run_id", "config_hash", "status", "started_at", "finished_at")
    return "|".join(str(result.get(k)) for k in keys)


class Tracker:
    """An MLflow client bound to one store and experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            local = _local_dir(uri)
            artifacts = None
            if local is not None:  # beside the store, not in the working directory
                artifacts = (local.resolve() / ARTIFACTS_DIR).as_uri()
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=artifacts
            )
        else:
            self.experiment_id = found.experiment_id

    # ------------------------------------------------------------------ sweeps
    def start_parent(self, sweep_dir: Path, tags: dict[str, str]) -> str:
        """The sweep's parent run, created or (same sweep directory, same store) resumed."""
        pointer = read_pointer(sweep_dir)
        if pointer.get("uri") == self.uri and pointer.get("run_id"):
            run_id = str(pointer["run_id"])
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=Path(sweep_dir).name,
            tags={"runner.kind": "sweep", "runner.sweep_dir": str(sweep_dir), **tags},
        )
        write_pointer(
            sweep_dir,
            {"uri": self.uri, "experiment_id": self.experiment_id, "run_id": run.info.run_id},
        )
        return run.info.run_id

    def finish_parent(self, sweep_dir: Path, status: str) -> None:
        """Log the sweep's report, table, search and plots; end the parent run."""
        run_id = read_pointer(sweep_dir).get("run_id")
        if not run_id:
            return
        sweep_dir = Path(sweep_dir)
        for name in SWEEP_ARTIFACTS:
            if (sweep_dir / name).is_file():
                self.client.log_artifact(run_id, str(sweep_dir / name))
        if (sweep_dir / "plots").is_dir():
            self.client.log_artifacts(run_id, str(sweep_dir / "plots"), artifact_path="plots")
        self.client.set_terminated(run_id, status)

    # ------------------------------------------------------------------ jobs
    def log_job(self, run_dir: Path, parent_run_id: str | None) -> str | None:
        """Log one job's result as its own run (once per result); return the run id."""
        run_dir = Path(run_dir)
        try:
            result = read_result(run_dir)
        except (OSError, ResultReadError):
            log.warning("tracking: %s has no readable result; nothing logged", run_dir)
            return None
        pointer = read_pointer(run_dir)
        identity = _identity(result)
        if pointer.get("logged") == identity and pointer.get("uri") == self.uri:
            return pointer.get("run_id")
        status = str(result.get("status"))
        tags = {
            "runner.kind": "job",
            "runner.status": status,
            "runner.config_hash": str(result.get("config_hash")),
            "runner.git_commit": str((result.get("environment") or {}).get("git_commit")),
            "runner.run_dir": str(run_dir),
        }
        error = result.get("error") or {}
        if isinstance(error, dict) and error:
            tags["runner.error"] = f"{error.get('type')}: {error.get('message')}"[:5000]
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(
            self.experiment_id,
            start_time=_ms(result.get("started_at")),
            tags=tags,
            run_name=run_dir.name,
        )
        run_id = run.info.run_id
        self._log_params(run_id, result)
        self._log_metrics(run_id, result)
        for name in JOB_ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(run_id, str(run_dir / name))
        self.client.set_terminated(
            run_id, STATUS.get(status, "FAILED"), end_time=_ms(result.get("finished_at"))
        )
        write_pointer(
            run_dir,
            {
                "uri": self.uri,
                "experiment_id": self.experiment_id,
                "parent_run_id": parent_run_id,
                "run_id": run_id,
                "logged": identity,
            },
        )
        return run_id

    def _log_params(self, run_id: str, result: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = {
            f"override.{s.key}": "(deleted)" if s.deleted else str(s.value)
            for s in parse_lenient(result.get("overrides") or [])
        }
        config = result.get("config")
        if isinstance(config, dict):
            params |= {k: str(v) for k, v in flatten(config).items()}
        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def _log_metrics(self, run_id: str, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        energy = result.get("energy")
        numbers = headline_numbers(
            Metrics.from_dict(result.get("metrics")),
            Energy.from_dict(energy) if isinstance(energy, dict) else None,
        )
        # The report's quality columns too (perplexity, agreement, lm_eval.<task>.<metric>).
        numbers |= {k: v for k, v in quality_headline(result).items() if isinstance(v, float)}
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in numbers.items() if v == v]  # NaN: absent
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)


def sweep_status(statuses: Iterable[str]) -> str:
    """The parent run's status: KILLED if a job was interrupted, else FINISHED (failed jobs
    are failed runs of their own; the sweep itself went through)."""
    return "KILLED" if "interrupted" in set(statuses) else "FINISHED"
