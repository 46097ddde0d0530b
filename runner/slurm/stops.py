"""What a stop means for a job that ran under submitit: the words its result records.

- SIGUSR2 is what submitit has Slurm send ``signal_delay_s`` before the time limit, and
  what a preemption sends (``scancel --signal=USR2``). submitit's handler, which the run
  hands the signal to once its result is written, tells the two apart by how long the job
  has run and requeues it, unless the job has reached its time limit more often than
  ``max_num_timeout`` allows. :func:`stop_message` asks that same handler, so the result
  says what submitit is about to do.
- A job that ended without a result at all (killed, its node lost, out of memory) gets
  one from the sweep's process: :func:`lost_job` turns the scheduler's state into a
  status and a message.

The time-limit wording is one fact, :data:`TIME_LIMIT`, written here and read back by
:func:`is_time_limit` (the sweep's exit code says when a job ran out of time).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from runner.results import Status

TIME_LIMIT = "time limit reached"
RAISE_TIMEOUT = "raise hydra.launcher.timeout_min"
_USR2 = getattr(signal, "SIGUSR2", None)


def stop_message(signum: int, previous: Any) -> str:
    """The error message of a run stopped by ``signum``; ``previous`` is the handler the
    run replaced (submitit's inside a submitit job)."""
    base = f"received signal {signal.Signals(signum).name}"
    if signum == signal.SIGTERM and os.environ.get("SLURM_JOB_ID"):
        return f"{base}: stopped by Slurm (scancel, preemption, or its node going down)"
    handler = getattr(previous, "__self__", None)  # submitit's SignalHandler (bound method)
    delayed = getattr(handler, "_delayed", None)
    if signum != _USR2 or delayed is None or not hasattr(handler, "has_timed_out"):
        return base
    try:
        timed_out = bool(handler.has_timed_out())
        countdown = int(delayed._timeout_countdown) - int(timed_out)
        limit = delayed._timeout_min
    except (AttributeError, TypeError, ValueError):  # another submitit version
        return base
    if not timed_out:
        return f"{base}: preempted; submitit requeues the job, which measures this point again"
    if countdown >= 0:
        return (
            f"{base}: {TIME_LIMIT} (timeout_min={limit}); submitit requeues the job "
            f"({countdown} more requeue(s) after a time limit)"
        )
    return (
        f"{base}: {TIME_LIMIT} (timeout_min={limit}) and no requeue is left "
        f"(max_num_timeout); {RAISE_TIMEOUT} (or measure less) and rerun the sweep"
    )


# Scheduler states (Slurm's, and submitit's local executor's) of a job that was stopped
# rather than one that broke.
_STOPPED = {"CANCELLED", "PREEMPTED", "DEADLINE", "TIMEOUT"}
_HINTS = {
    "TIMEOUT": f"{TIME_LIMIT} before a result was written; {RAISE_TIMEOUT} and rerun the sweep",
    "CANCELLED": "cancelled (scancel, or by an administrator)",
    "PREEMPTED": "preempted and not requeued",
    "NODE_FAIL": "its node failed or was set down",
    "OUT_OF_MEMORY": "out of memory: raise hydra.launcher.mem_gb",
    "BOOT_FAIL": "its node failed to boot",
    # submitit's local executor: the process ended by a signal (the OOM killer, kill -9)
    "INTERRUPTED": "its process was killed by a signal (out of memory, or kill)",
}


def lost_job(state: str, detail: str = "") -> tuple[Status, str]:
    """(status, message) for a job whose process ended without writing its result.

    ``state`` is the scheduler's (``CANCELLED by 0``, ``NODE_FAIL``, ...); ``detail`` what
    submitit said about the job (a ``timed-out too many times`` there is a time limit).
    """
    word = (state or "UNKNOWN").split()[0].rstrip("+").upper()
    if "timed-out too many times" in detail:
        word = "TIMEOUT"
    status = Status.interrupted if word in _STOPPED else Status.failed
    hint = _HINTS.get(word, "the job's process ended before the run could write its result")
    return status, f"the job ended without a result (scheduler state {word}): {hint}"


def is_time_limit(result: dict[str, Any]) -> bool:
    """A result stopped by its job's time limit."""
    error = result.get("error") or {}
    return result.get("status") == Status.interrupted.value and TIME_LIMIT in str(
        error.get("message", "")
    )
