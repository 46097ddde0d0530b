"""One sweep job: resume check, per-directory lock, isolation in a child process.

With ``measure.isolation=forkserver`` (the default) or ``spawn`` the run executes in a
fresh process of its own, so CUDA memory, compile caches and library state cannot leak
between jobs, and a crash in native code (segfault, abort, OOM kill) becomes a ``failed``
result instead of the end of the sweep. ``forkserver`` forks it from a server that has
imported torch and transformers already (:mod:`runner.forkserver`); ``spawn`` starts a
new interpreter. The parent blocks (``Process.join``) and uses no CPU while the child
measures.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner import forkserver, stop
from runner.config.resolved import config_dict, config_hash
from runner.config.schema import RunConfig
from runner.config.schema_measure import Isolation
from runner.logs import RUN_LOG
from runner.results import (
    RESULT_FILE,
    Phase,
    ResultReadError,
    RunError,
    RunResult,
    Status,
    read_result,
    write_result,
)
from runner.stop import StopRequested, SweepInterrupted

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunDirLocked(RuntimeError):
    """Another process is running a job in this directory."""


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended, as the command reports it (exit code, summary lines).

    ``skipped``: already ``ok`` for this config, not run again; ``elsewhere``: another
    process holds the job's directory and is running it (not this command's job to judge:
    its result is that process's); ``stopped``: a stop signal
    ended it, and with it the sweep; ``time_limit``: it was stopped by its Slurm time limit
    (runner.slurm.stops); ``message``: its error message, shown in the failure list;
    ``result``: the job's result, where there is one to show.
    """

    status: Status
    run_dir: Path
    overrides: tuple[str, ...] = ()
    skipped: bool = False
    elsewhere: bool = False
    stopped: bool = False
    time_limit: bool = False
    message: str | None = None
    result: dict[str, Any] | None = field(default=None, repr=False, compare=False)


def recorded_status(value: Any) -> Status:
    """The status a result file holds; anything unknown counts as failed."""
    try:
        return Status(value)
    except ValueError:
        return Status.failed


def previous_ok(run_dir: Path, chash: str) -> dict[str, Any] | None:
    """The existing ``ok`` result for the same config hash, if any (else rerun)."""
    path = run_dir / RESULT_FILE
    if not path.exists():
        return None
    try:
        data = read_result(path)
    except ResultReadError as exc:
        log.warning("%s; it will be rerun (old file kept as %s.corrupt)", exc, RESULT_FILE)
        path.replace(path.with_name(RESULT_FILE + ".corrupt"))
        return None
    if data.get("status") == Status.ok.value and data.get("config_hash") == chash:
        return data
    return None


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock: two processes never write one run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunDirLocked(f"{run_dir}: another process is running this job") from exc
        fh.write(str(os.getpid()))
        fh.flush()
        yield


def _child(
    cfg: RunConfig,
    run_dir: str,
    overrides: list[str],
    chash: str,
    log_file: str,
    ready: multiprocessing.connection.Connection,
    launcher: Any,
    sweep_dir: str | None,
    launched_at: float,
) -> None:
    stop.enter_job_child()
    launcher.apply()  # the launcher's environment, stdout and stderr (forkserver.LauncherState)
    ready.send(True)  # from now on a forwarded signal is handled, not fatal
    ready.close()
    from runner.logs import setup_child_logging
    from runner.run import run

    setup_child_logging(Path(log_file))
    result = run(
        cfg,
        Path(run_dir),
        overrides,
        chash,
        sweep_dir=Path(sweep_dir) if sweep_dir else None,
        launched_at=launched_at,
    )
    # Exit status tells the parent how it ended without reading the file.
    sys.exit({Status.ok: 0, Status.failed: 1, Status.interrupted: 3}[result.status])


def stopped_result(
    cfg_dict: dict[str, Any],
    run_dir: Path,
    overrides: list[str],
    chash: str,
    *,
    exitcode: int | None = None,
    stopped_by: str | None = None,
    phase: Phase = Phase.config,
) -> RunResult:
    """The result of a job that wrote none itself: it crashed, was killed, or never started."""
    if stopped_by is not None:
        status, etype = Status.interrupted, "StopRequested"
        message = f"received signal {stopped_by}"
        if exitcode is not None:
            message += f"; the job process ended with code {exitcode} before writing a result"
    elif exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        status, etype = Status.failed, f"Killed({name})"
        message = f"child process killed by signal {name} (native crash or out-of-memory kill)"
    else:
        status, etype = Status.failed, "ChildExit"
        message = f"child process exited with code {exitcode} without writing a result"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return RunResult(
        status=status,
        run_id=run_dir.name,
        config_hash=chash,
        overrides=overrides,
        started_at=now,
        finished_at=now,
        config=cfg_dict,
        error=RunError(etype, message, None, phase.value),
    )


def _result_mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def engine_isolation(cfg: RunConfig, isolation: Isolation) -> Isolation:
    """A vLLM run is spawned, never forked from the fork server: vLLM starts its engine and
    worker processes from the run's process, and a fork of the server carries its threads
    and imported state into them (vLLM itself switches to spawn once CUDA is initialised)."""
    from runner.config.schema_serving import EngineKind

    if cfg.engine.kind is EngineKind.vllm and isolation is Isolation.forkserver:
        return Isolation.spawn
    return isolation


def start_child(
    isolation: Isolation, target: Callable[..., Any], args: tuple[Any, ...]
) -> multiprocessing.process.BaseProcess:
    """Start ``target(*args, launched_at)`` in a fresh process, forked from the fork server
    or spawned; a fork server that cannot start one is not used again: spawned instead."""
    if isolation is Isolation.forkserver and forkserver.usable():
        proc = forkserver.context().Process(target=target, args=(*args, time.time()), daemon=False)
        try:
            forkserver.start()
            proc.start()
            return proc
        except (OSError, EOFError) as exc:  # the server died or is gone
            forkserver.mark_broken(f"{type(exc).__name__}: {exc}")
            log.warning(
                "fork server unusable (%s: %s): jobs are spawned instead "
                "(python -c 'import runner.forkserver_preload' shows why)",
                type(exc).__name__,
                exc,
            )
    proc = multiprocessing.get_context("spawn").Process(
        target=target, args=(*args, time.time()), daemon=False
    )
    proc.start()
    return proc


def run_spawned(
    cfg: RunConfig,
    run_dir: Path,
    overrides: list[str],
    chash: str,
    log_file: Path,
    *,
    isolation: Isolation = Isolation.spawn,
    sweep_dir: Path | None = None,
) -> dict[str, Any]:
    """Run in a fresh child process; a child that dies without a result gets one written.

    ``isolation``: ``forkserver`` or ``spawn`` (see the module docstring). A stop signal to
    this process is forwarded to the child once, as soon as the child can handle it (it
    records ``interrupted`` with its phase); a second one kills it. The parent blocks (no
    polling) until the child is ready, then until it exits.
    """
    guard = stop.GUARD
    result_path = run_dir / RESULT_FILE
    before = _result_mtime(result_path)
    ready_recv, ready_send = multiprocessing.Pipe(duplex=False)
    args = (
        cfg,
        str(run_dir),
        overrides,
        chash,
        str(log_file),
        ready_send,
        forkserver.LauncherState(),
        str(sweep_dir) if sweep_dir else None,
    )
    proc: multiprocessing.process.BaseProcess | None = None
    try:
        with stop.forwarding_to(lambda: proc.pid if proc else None, guard) as forward:
            if not guard.requested:  # a stop that arrived just before: the job never starts
                proc = start_child(isolation, _child, args)
                ready_send.close()
                ready = False
                for conn in multiprocessing.connection.wait([ready_recv, proc.sentinel]):
                    if conn is ready_recv:
                        with contextlib.suppress(EOFError, OSError):
                            ready = bool(ready_recv.recv())
                if ready:
                    forward.child_ready()
                proc.join()
    finally:
        ready_recv.close()
        ready_send.close()
    if _result_mtime(result_path) in (None, before):
        # The child wrote nothing: never started, crashed, or killed by a second signal.
        crash = stopped_result(
            config_dict(cfg),
            run_dir,
            overrides,
            chash,
            exitcode=proc.exitcode if proc else None,
            stopped_by=guard.stop.signame if guard.requested and guard.stop else None,
            phase=Phase.config if not forward.ready else Phase.measure,
        )
        write_result(run_dir, crash)
    if guard.requested:
        raise SweepInterrupted(guard.signum)
    return read_result(result_path)


def record_stop_before_the_run(
    run_dir: Path, cfg_dict: dict[str, Any], overrides: list[str], signame: str
) -> None:
    """A stop that reached the job before :func:`execute` could record it (while the task
    read its config, or in execute's first lines): the run directory gets an
    ``interrupted`` result, unless it holds one already (written by the run, or by an
    earlier run of the same point, which stays as it was)."""
    if (run_dir / RESULT_FILE).exists():
        return
    chash = config_hash(cfg_dict) if cfg_dict else ""
    write_result(run_dir, stopped_result(cfg_dict, run_dir, overrides, chash, stopped_by=signame))


def execute(
    cfg: RunConfig,
    run_dir: Path,
    overrides: list[str],
    *,
    isolation: Isolation | None = None,
    log_file: Path | None = None,
    sweep_dir: Path | None = None,
) -> JobOutcome:
    """Run (or skip, when already ``ok`` for this config) one job.

    ``sweep_dir``: the sweep directory when the job is one point of a sweep (its runs
    share what may be shared, such as the idle baseline); None for a run on its own.

    Raises :class:`SweepInterrupted` when a stop signal reached the job (its result is
    written first, also when the signal came before the job could start).
    """
    cfg_dict = config_dict(cfg)
    chash = config_hash(cfg_dict)
    isolation = engine_isolation(cfg, isolation or cfg.measure.isolation)
    job = (run_dir, tuple(overrides))
    with run_dir_lock(run_dir):
        done = previous_ok(run_dir, chash)
        if done is not None:
            log.info("skipping %s: already ok for this config (hash %s)", run_dir.name, chash[:12])
            return JobOutcome(Status.ok, *job, skipped=True, result=done)
        before = _result_mtime(run_dir / RESULT_FILE)
        try:
            stop.GUARD.check()
            if isolation is not Isolation.inline:
                data = run_spawned(
                    cfg,
                    run_dir,
                    overrides,
                    chash,
                    log_file or run_dir / RUN_LOG,
                    isolation=isolation,
                    sweep_dir=sweep_dir,
                )
                return JobOutcome(recorded_status(data["status"]), *job, result=data)
            from runner.run import run  # only here: the spawn parent never imports torch

            result = run(cfg, run_dir, overrides, chash, sweep_dir=sweep_dir)
        except SweepInterrupted:
            raise
        except StopRequested as exc:
            # Stopped before the run could record anything itself.
            if _result_mtime(run_dir / RESULT_FILE) in (None, before):
                write_result(
                    run_dir,
                    stopped_result(cfg_dict, run_dir, overrides, chash, stopped_by=exc.signame),
                )
            raise SweepInterrupted(exc.signum) from None
        if result.status is Status.interrupted:
            raise SweepInterrupted(stop.GUARD.signum)
        return JobOutcome(result.status, *job, result=result.to_dict())
