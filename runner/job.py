"""One sweep job: resume check, per-directory lock, isolation in a child process.

With ``measure.isolation=spawn`` the run executes in a fresh spawned process
so CUDA memory, compile caches and library state cannot leak between jobs,
and a crash in native code (segfault, abort, OOM kill) becomes a ``failed``
result instead of the end of the sweep. The parent blocks in ``waitpid``
(``Process.join``) and uses no CPU while the child measures.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.config.schema import Isolation, RunConfig
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

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Keys that do not change what is measured: where files go, how the job is isolated.
HASH_EXCLUDED = ("cache_dir", "measure.isolation")


class RunDirLocked(RuntimeError):
    """Another process is running a job in this directory."""


class SweepInterrupted(KeyboardInterrupt):
    """This process got Ctrl-C or SIGTERM: the job was recorded, the sweep must stop."""


def config_hash(config: dict[str, Any]) -> str:
    """sha256 over the resolved config minus keys that do not change the measurement."""
    data = json.loads(json.dumps(config, default=str))
    for dotted in HASH_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


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


def _child(cfg: RunConfig, run_dir: str, overrides: list[str], chash: str, log_file: str) -> None:
    from runner.logs import setup_child_logging
    from runner.run import run

    setup_child_logging(Path(log_file))
    result = run(cfg, Path(run_dir), overrides, chash)
    # Exit status tells the parent how it ended without reading the file.
    sys.exit({Status.ok: 0, Status.failed: 1, Status.interrupted: 3}[result.status])


def _crash_result(
    cfg_dict: dict,
    run_dir: Path,
    overrides: list[str],
    chash: str,
    exitcode: int | None,
    signalled: bool,
) -> RunResult:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        message = f"child process killed by signal {name} (native crash or out-of-memory kill)"
        etype = f"Killed({name})"
    else:
        message = f"child process exited with code {exitcode} without writing a result"
        etype = "ChildExit"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stopped = signalled or exitcode in (-signal.SIGTERM, -signal.SIGINT)
    status = Status.interrupted if stopped else Status.failed
    return RunResult(
        status=status,
        run_id=run_dir.name,
        config_hash=chash,
        overrides=overrides,
        started_at=now,
        finished_at=now,
        config=cfg_dict,
        error=RunError(etype, message, None, Phase.measure.value),
    )


def run_spawned(cfg: RunConfig, run_dir: Path, overrides: list[str], chash: str, log_file: Path):
    """Run in a fresh spawned child; a child that dies without a result gets one written."""
    from runner.run import config_dict

    result_path = run_dir / RESULT_FILE
    before = result_path.stat().st_mtime_ns if result_path.exists() else None
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_child, args=(cfg, str(run_dir), overrides, chash, str(log_file)), daemon=False
    )
    proc.start()
    forwarded = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal forwarded
        # Ctrl-C reaches the whole process group, so the child already has it; SIGTERM
        # from a scheduler may reach the parent only. A second signal ends the child.
        if forwarded or signum == signal.SIGTERM:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL if forwarded else signal.SIGTERM)
        forwarded = True

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    after = result_path.stat().st_mtime_ns if result_path.exists() else None
    if after is None or after == before:
        crash = _crash_result(config_dict(cfg), run_dir, overrides, chash, proc.exitcode, forwarded)
        write_result(run_dir, crash)
    if forwarded:
        raise SweepInterrupted(f"{run_dir.name}: interrupted by a signal")
    return read_result(result_path)


def execute(
    cfg: RunConfig,
    run_dir: Path,
    overrides: list[str],
    *,
    isolation: Isolation | None = None,
    log_file: Path | None = None,
) -> dict[str, Any]:
    """Run (or skip, when already ``ok`` for this config) one job; return its result dict."""
    from runner.run import config_dict, run

    cfg_dict = config_dict(cfg)
    chash = config_hash(cfg_dict)
    isolation = isolation or cfg.measure.isolation
    with run_dir_lock(run_dir):
        done = previous_ok(run_dir, chash)
        if done is not None:
            log.info("skipping %s: already ok for this config (hash %s)", run_dir.name, chash[:12])
            done["_skipped"] = True
            return done
        if isolation is Isolation.spawn:
            return run_spawned(cfg, run_dir, overrides, chash, log_file or run_dir / "run.log")
        result = run(cfg, run_dir, overrides, chash)
        if result.status is Status.interrupted:
            # Inline, an interruption can only be a signal to this very process.
            raise SweepInterrupted(f"{run_dir.name}: interrupted by a signal")
        return result.to_dict()
