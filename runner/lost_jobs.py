"""A result for a sweep job that ended without reporting back.

A job killed outright (``scancel --signal=KILL``, the out-of-memory killer, a node that
went away, a time limit that struck before the run could record it) never reaches the code
that records it. The sweep's process, which waits for every job
(``hydra_plugins.runner_launcher``), writes the job's ``result.json`` for it: ``failed``
or ``interrupted`` from the scheduler's state, with a message that says what happened and
what to change.

What the job itself wrote during this sweep is kept: an ``ok`` result stands as it is; a
result that is not ``ok`` (a run that recorded a stop, or an earlier attempt of a requeued
job) keeps its measurements, and its error says both what the scheduler reported and what
the run last recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.results import (
    RESULT_FILE,
    ResultReadError,
    RunError,
    RunResult,
    Status,
    read_result,
    write_json_atomic,
)
from runner.slurm.stops import lost_job

log = logging.getLogger(__name__)

ERROR_TYPE = "JobLost"
PHASE_UNKNOWN = "unknown"  # the sweep's process cannot know where the job was
# A result written by the job counts as this sweep's when it is at most this much older
# than the submission: a shared filesystem's clock may run behind the submitting host's.
CLOCK_SKEW_S = 60.0


def _fresh(path: Path, since: float) -> dict[str, Any] | None:
    try:
        if path.stat().st_mtime >= since - CLOCK_SKEW_S:
            return read_result(path)
    except (OSError, ResultReadError):
        pass
    return None


def record(
    run_dir: Path,
    overrides: list[str],
    state: str,
    detail: str,
    since: float,
    config: dict[str, Any] | None = None,
    config_hash: str = "",
) -> dict[str, Any]:
    """Write (and return) the result that stands for a job that left no output.

    ``state`` is the scheduler's final state, ``detail`` what submitit said about the job,
    ``since`` the submission's ``time.time()``.
    """
    path = Path(run_dir) / RESULT_FILE
    status, message = lost_job(state, detail)
    own = _fresh(path, since)
    if own is not None and own.get("status") == Status.ok.value:
        return own
    if own is not None:
        before = own.get("error") or {}
        own["status"] = status.value
        own["error"] = {
            "type": ERROR_TYPE,
            "message": f"{message}; the run last recorded: {before.get('message')}",
            "traceback": detail.strip() or None,
            "phase": before.get("phase") or PHASE_UNKNOWN,
        }
        data = own
    else:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data = RunResult(
            status=status,
            run_id=Path(run_dir).name,
            config_hash=config_hash,
            overrides=list(overrides),
            started_at=now,
            finished_at=now,
            config=dict(config or {}),
            error=RunError(ERROR_TYPE, message, detail.strip() or None, PHASE_UNKNOWN),
        ).to_dict()
    write_json_atomic(path, data)
    log.error("%s: %s", Path(run_dir).name, data["error"]["message"])
    return data
