"""The Hydra entry: check the command, compose, convert to typed config once, run jobs.

Exit codes: 0 every job ok; 1 a job failed; 2 the command or config is wrong
(nothing ran); 124 a job reached its time limit (raise hydra.launcher.timeout_min);
130 a job was interrupted (Ctrl-C, SIGTERM, SIGUSR2, scancel).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner import forkserver, stop
from runner.config import register_configs
from runner.config.schema_measure import Isolation
from runner.config.store import CONF_DIR
from runner.job import JobOutcome, record_stop_before_the_run, recorded_status
from runner.logs import RUN_LOG
from runner.results import RESULT_FILE, Status
from runner.stop import StopRequested

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TIME_LIMIT = 124  # as timeout(1): the job ran out of time

# Filled by the task function; the basic launcher runs jobs in this process.
JOB_OUTCOMES: list[JobOutcome] = []


def _isolation_for(launcher_target: str, requested: Isolation) -> Isolation:
    # submitit already gives each job its own process: do not pay for a second one.
    return Isolation.inline if _submitit_job(launcher_target) else requested


def _submitit_job(launcher_target: str) -> bool:
    from runner.config.launchers import is_submitit

    return is_submitit(launcher_target, "BaseSubmititLauncher")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(dcfg: DictConfig) -> Any:
    """One job. Never raises but to stop the sweep: failures are recorded in ``result.json``.

    Returns the values of ``search.objectives`` for a sweeper to optimize (a float for one
    objective, a list for several), or None when the job did not end ``ok``: a failure is
    never reported as a number.
    """
    from runner import summary
    from runner.job import RunDirLocked, execute
    from runner.search.objectives import task_return

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    # A sweep's runs share what may be shared (the idle baseline); a run alone shares nothing.
    sweep_dir = Path(hc.sweep.dir) if hc.mode is RunMode.MULTIRUN else None
    overrides = list(hc.overrides.task)
    failed = JobOutcome(Status.failed, run_dir, tuple(overrides))
    outcome = failed  # until the job tells otherwise
    cfg = None
    try:
        cfg = OmegaConf.to_object(dcfg)
        isolation = _isolation_for(str(hc.launcher.get("_target_", "")), cfg.measure.isolation)
        log_file = run_dir / RUN_LOG
        outcome = execute(
            cfg, run_dir, overrides, isolation=isolation, log_file=log_file, sweep_dir=sweep_dir
        )
        if outcome.skipped:
            print(f"[skipped] {run_dir.name}: already ok for this config", flush=True)
        else:
            print(summary.render(outcome.result, str(run_dir)), flush=True)
    except RunDirLocked:
        # Two commands on one sweep directory: the other one is running this job, and
        # its result will be in the job's directory. Not a failure of this command.
        print(
            f"[running elsewhere] {run_dir.name}: another process is running this job; "
            f"its result will be in {run_dir / RESULT_FILE}",
            flush=True,
        )
        outcome = JobOutcome(Status.ok, run_dir, tuple(overrides), elsewhere=True)
    except (StopRequested, KeyboardInterrupt) as exc:
        # The job's result is on disk (the job wrote it, or the launcher did for a job
        # stopped before it could; for a stop before either, it is written here): report
        # what it says, then stop the sweep.
        signame = exc.signame if isinstance(exc, StopRequested) else "SIGINT"
        with contextlib.suppress(Exception):  # the stop is reported whatever this gives
            record_stop_before_the_run(run_dir, _config_of(cfg, dcfg), overrides, signame)
        outcome = JobOutcome(_recorded_status(run_dir), run_dir, tuple(overrides), stopped=True)
        if _submitit_job(str(hc.launcher.get("_target_", ""))):
            _print_result(run_dir)
            return  # a submitit job ends normally; the sweep reads its result.json
        raise
    except Exception as exc:  # the task function must not raise (the sweep goes on)
        outcome = failed
        log.exception("job failed outside the run: %s", exc)
    finally:
        JOB_OUTCOMES.append(outcome)
    return None if cfg is None else task_return(cfg.search, outcome.result)


def _config_of(cfg: Any, dcfg: DictConfig) -> dict[str, Any]:
    """The job's config as its result records it (the composed one before conversion)."""
    from runner.config.resolved import config_dict

    if cfg is not None:
        return config_dict(cfg)
    return OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _print_result(run_dir: Path) -> None:
    from runner import summary
    from runner.results import ResultReadError, read_result

    with contextlib.suppress(OSError, ResultReadError):
        print(summary.render(read_result(run_dir), str(run_dir)), flush=True)


def _recorded_status(run_dir: Path) -> Status:
    from runner.results import ResultReadError, read_result

    try:
        return recorded_status(read_result(run_dir)["status"])
    except (OSError, ResultReadError):
        return Status.interrupted  # no readable result: the stop came before the job began


class CollectOutcomes(Callback):
    """Outcomes of jobs that ran in other processes (submitit launchers), read back from
    their result.json, so the exit code means the same with every launcher."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if JOB_OUTCOMES:  # the basic launcher ran the jobs in this process
            return
        from runner.config.overrides import expand
        from runner.config.repeats import sweep_jobs
        from runner.results import RESULT_FILE, ResultReadError, read_result
        from runner.slurm.stops import is_time_limit

        sweep_dir = Path(str(config.hydra.sweep.dir))
        found: dict[tuple[str, ...], JobOutcome] = {}
        for path in sweep_dir.glob(f"*/{RESULT_FILE}"):
            try:
                data = read_result(path)
            except (OSError, ResultReadError):
                continue
            key = tuple(sorted(data.get("overrides") or []))
            found[key] = JobOutcome(
                recorded_status(data["status"]),
                path.parent,
                key,
                time_limit=is_time_limit(data),
                message=(data.get("error") or {}).get("message"),
            )
        for job in sweep_jobs(config, expand(list(config.hydra.overrides.task), multirun=True)):
            # No result: the job died before the run could write one (killed, node lost).
            lost = JobOutcome(Status.failed, sweep_dir / "(no result)", tuple(job))
            found_job = found.get(tuple(sorted(job)))
            JOB_OUTCOMES.append(replace(found_job, overrides=tuple(job)) if found_job else lost)


def exit_code(outcomes: list[JobOutcome]) -> int:
    """130 interrupted, 124 out of time (only), 1 failed, 0 all ok."""
    statuses = {o.status for o in outcomes if not o.time_limit and not o.elsewhere}
    if Status.interrupted in statuses:
        return EXIT_INTERRUPTED
    if any(o.time_limit for o in outcomes):
        return EXIT_TIME_LIMIT
    if Status.failed in statuses:
        return EXIT_FAILED
    return EXIT_OK


def _report_failures(outcomes: list[JobOutcome]) -> None:
    bad = [o for o in outcomes if o.status is not Status.ok and not o.elsewhere]
    if not bad or (len(outcomes) < 2 and not bad[0].message):
        return
    print(f"\n{len(bad)} of {len(outcomes)} job(s) did not finish ok:", file=sys.stderr)
    for o in bad:
        print(
            f"  [{o.status.value}] {','.join(o.overrides) or '(defaults)'}  {o.run_dir}",
            file=sys.stderr,
        )
        if o.message:
            print(f"      {o.message}", file=sys.stderr)
    sweep_dir = str(bad[0].run_dir.parent)
    print(
        f"rerun them (ok jobs are skipped) with the same command plus hydra.sweep.dir={sweep_dir}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m runner``: validate every job first, then hand over to Hydra."""
    guard = stop.install()
    guard.clear()
    guard.set_live(True)  # until a run takes over, a stop signal ends the command at once
    try:
        _main(sys.argv[1:] if argv is None else argv, guard)
    finally:
        # Handlers restored: an in-process caller (tests) gets its process back as it was.
        guard.set_live(False)
        guard.uninstall()


def _flags_first(argv: list[str]) -> list[str]:
    """``-m`` wherever it was typed, moved before the overrides: Hydra's argparse takes the
    overrides as one run of positionals, so ``model=tiny -m quant=none,nf4`` would be its
    usage text."""
    multirun = [a for a in argv if a in ("-m", "--multirun")]
    return [*multirun, *(a for a in argv if a not in ("-m", "--multirun"))]


def _main(argv: list[str], guard: stop.StopGuard) -> None:
    from runner.config.validate import Facts
    from runner.cuda_probe import cuda_available
    from runner.preflight import check_command
    from runner.preflight_messages import UserError

    argv = _flags_first(argv)
    JOB_OUTCOMES.clear()
    try:
        register_configs()
        forkserver.start_for_command(argv)  # its imports overlap with this process's own
        try:
            check_command(argv, Facts(cuda_available=cuda_available()))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        with _hydra_argv(_name_jobs_by_swept_keys(argv)):
            task()
        guard.check()  # a stop that a library swallowed after the last job
    except (StopRequested, KeyboardInterrupt):
        guard.set_live(False)  # report what was recorded; a second signal cannot cut that
        multirun = "-m" in argv or "--multirun" in argv
        _report_stop(JOB_OUTCOMES, guard, multirun)
        _report_interrupted_sweep(JOB_OUTCOMES, multirun)
        _track_interrupted(JOB_OUTCOMES, multirun)
        _report_failures(JOB_OUTCOMES)
        sys.exit(EXIT_INTERRUPTED)
    guard.set_live(False)
    _report_failures(JOB_OUTCOMES)
    sys.exit(exit_code(JOB_OUTCOMES))


def _report_stop(outcomes: list[JobOutcome], guard: stop.StopGuard, multirun: bool) -> None:
    """The final message, read back from the last job's recorded result."""
    from runner.results import ResultReadError, read_result

    signame = guard.signame
    if not outcomes:
        print(f"stopped by {signame} before any job started", file=sys.stderr)
        return
    run_dir = outcomes[-1].run_dir
    try:
        result = read_result(run_dir)
    except (OSError, ResultReadError):
        print(f"stopped by {signame}; {run_dir}: no result was recorded", file=sys.stderr)
        return
    _print_result(run_dir)
    status, error = result["status"], result.get("error") or {}
    if status == "interrupted":
        what = f"recorded as interrupted during {error.get('phase', '?')}"
    else:
        what = f"had already finished ({status}) when the stop arrived"
    later = "; the sweep's remaining jobs did not run" if multirun else ""
    print(f"stopped by {signame}: {run_dir.name} {what}{later}", file=sys.stderr)


@contextlib.contextmanager
def _hydra_argv(args: list[str]) -> Iterator[None]:
    """``@hydra.main`` reads its command line from ``sys.argv``, and Hydra has no public way
    to hand it one (``hydra._internal.utils._run_hydra`` takes it, privately): set it for
    the call only, so an in-process caller (tests) gets its own back."""
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        yield
    finally:
        sys.argv = saved


def _name_jobs_by_swept_keys(argv: list[str]) -> list[str]:
    """A sweep's job directories are named by the swept keys only (see config.dirname):
    the other keys go to Hydra's ``override_dirname.exclude_keys``, as an override placed
    among the others (argparse takes the overrides as one run of positionals)."""
    from hydra.errors import HydraException

    from runner.config.dirname import EXCLUDE_KEYS, sweep_exclude_override
    from runner.preflight import split_argv

    multirun, overrides, _ = split_argv(argv)
    if not multirun or any(o.lstrip("+").startswith(EXCLUDE_KEYS + "=") for o in overrides):
        return argv
    try:
        extra = sweep_exclude_override(overrides)
    except HydraException:
        return argv  # a malformed override: Hydra reports it itself
    at = argv.index(overrides[0]) if overrides else len(argv)
    return [*argv[:at], extra, *argv[at:]]


def _report_interrupted_sweep(outcomes: list[JobOutcome], multirun: bool) -> None:
    """Hydra skips its end-of-sweep callback after an interruption: write the summary here."""
    if not multirun or not outcomes:
        return
    from runner.report import build_report

    sweep_dir = outcomes[0].run_dir.parent
    try:
        build_report([sweep_dir], sweep_dir)
    except Exception as exc:  # the results are on disk; the summary can be rebuilt later
        log.error("sweep summary failed: %s (run python -m runner.report %s)", exc, sweep_dir)


class PrintJobSummaries(Callback):
    """Each job's summary on the terminal when the jobs ran in other processes.

    The basic launcher runs each job in this process, which prints its summary when it
    ends; a submitit job prints into its own log under ``.submitit/``. For those, the
    summaries of the jobs this sweep ran (their result.json written since it started) are
    read back and printed, in the order the jobs finished, when the sweep ends.
    """

    def __init__(self) -> None:
        self._since = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import time

        self._since = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from runner.results import RESULT_FILE

        if "BasicLauncher" in str(config.hydra.launcher.get("_target_", "")):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        written = []
        for path in sweep_dir.glob(f"*/{RESULT_FILE}"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= self._since:
                    written.append((path.stat().st_mtime, path.parent))
        for _, run_dir in sorted(written):
            _print_result(run_dir)


def _track_interrupted(outcomes: list[JobOutcome], multirun: bool) -> None:
    """Hydra calls no end-of-job or end-of-sweep callback after an interruption: log the
    stopped jobs (KILLED) and the sweep to the tracker here, as the callback would have."""
    if not outcomes:
        return
    from runner.tracking.callback import settle_interrupted

    try:
        settle_interrupted([o.run_dir for o in outcomes], multirun)
    except Exception as exc:  # the results are on disk; tracking must not hide the stop
        log.error("tracking after the stop failed: %s", exc)
