"""The Hydra entry: check the command, compose, convert to typed config once, run jobs.

Exit codes: 0 every job ok; 1 a job failed; 2 the command or config is wrong
(nothing ran); 124 a job reached its time limit (raise hydra.launcher.timeout_min);
130 a job was interrupted (Ctrl-C, SIGTERM, scancel).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.config import register_configs
from runner.config.schema import Isolation
from runner.preflight import CONF_DIR

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TIME_LIMIT = 124  # as timeout(1): the job ran out of time

# Filled by the task function; the basic launcher runs jobs in this process.
JOB_OUTCOMES: list[dict[str, Any]] = []


def _isolation_for(launcher_target: str, requested: Isolation) -> Isolation:
    # submitit already gives each job its own process: do not pay for a second one.
    return Isolation.inline if _submitit_job(launcher_target) else requested


def _submitit_job(launcher_target: str) -> bool:
    from runner.config.launchers import is_submitit

    return is_submitit(launcher_target, "BaseSubmititLauncher")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(dcfg: DictConfig) -> None:
    """One job. Never raises: failures are recorded in the job's ``result.json``."""
    from runner import summary
    from runner.job import RunDirLocked, SweepInterrupted, execute

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    outcome: dict[str, Any] = {"run_dir": str(run_dir), "overrides": overrides}
    try:
        cfg = OmegaConf.to_object(dcfg)
        isolation = _isolation_for(str(hc.launcher.get("_target_", "")), cfg.measure.isolation)
        result = execute(cfg, run_dir, overrides, isolation=isolation, log_file=run_dir / "run.log")
        outcome["status"] = result["status"]
        outcome["skipped"] = bool(result.get("_skipped"))
        if outcome["skipped"]:
            print(f"[skipped] {run_dir.name}: already ok for this config", flush=True)
        else:
            print(summary.render(result, str(run_dir)), flush=True)
    except RunDirLocked as exc:
        outcome["status"] = "failed"
        log.error("%s", exc)
    except (SweepInterrupted, KeyboardInterrupt):
        # Recorded in the job's result.json; stop the sweep, as Ctrl-C asks.
        outcome["status"] = "interrupted"
        JOB_OUTCOMES.append(outcome)
        _print_result(run_dir)
        if _submitit_job(str(hc.launcher.get("_target_", ""))):
            return  # a submitit job: it ends normally, the sweep reads its result.json
        raise
    except Exception as exc:  # the task function must not raise (the sweep goes on)
        outcome["status"] = "failed"
        log.exception("job failed outside the run: %s", exc)
    JOB_OUTCOMES.append(outcome)


def _print_result(run_dir: Path) -> None:
    from runner import summary
    from runner.results import ResultReadError, read_result

    with contextlib.suppress(OSError, ResultReadError):
        print(summary.render(read_result(run_dir), str(run_dir)), flush=True)


class CollectOutcomes(Callback):
    """Outcomes of jobs that ran in other processes (submitit launchers), read back from
    their result.json, so the exit code means the same with every launcher."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if JOB_OUTCOMES:  # the basic launcher ran the jobs in this process
            return
        from runner.preflight import expand
        from runner.results import RESULT_FILE, ResultReadError, read_result
        from runner.slurm.stops import is_time_limit

        sweep_dir = Path(str(config.hydra.sweep.dir))
        found: dict[tuple[str, ...], dict[str, Any]] = {}
        for path in sweep_dir.glob(f"*/{RESULT_FILE}"):
            try:
                data = read_result(path)
            except (OSError, ResultReadError):
                continue
            found[tuple(sorted(data.get("overrides") or []))] = {
                "status": data["status"],
                "run_dir": str(path.parent),
                "time_limit": is_time_limit(data),
                "message": (data.get("error") or {}).get("message"),
            }
        for job in expand(list(config.hydra.overrides.task), multirun=True):
            # No result: the job died before the run could write one (killed, node lost).
            lost = {"status": "failed", "run_dir": str(sweep_dir / "(no result)")}
            JOB_OUTCOMES.append({**found.get(tuple(sorted(job)), lost), "overrides": job})


def exit_code(outcomes: list[dict[str, Any]]) -> int:
    statuses = {o.get("status") for o in outcomes if not o.get("time_limit")}
    if "interrupted" in statuses:
        return EXIT_INTERRUPTED
    if any(o.get("time_limit") for o in outcomes):
        return EXIT_TIME_LIMIT
    if "failed" in statuses:
        return EXIT_FAILED
    return EXIT_OK


def _report_failures(outcomes: list[dict[str, Any]]) -> None:
    bad = [o for o in outcomes if o.get("status") != "ok"]
    if not bad or (len(outcomes) < 2 and not bad[0].get("message")):
        return
    print(f"\n{len(bad)} of {len(outcomes)} job(s) did not finish ok:", file=sys.stderr)
    for o in bad:
        print(
            f"  [{o['status']}] {','.join(o['overrides']) or '(defaults)'}  {o['run_dir']}",
            file=sys.stderr,
        )
        if o.get("message"):
            print(f"      {o['message']}", file=sys.stderr)
    sweep_dir = str(Path(bad[0]["run_dir"]).parent)
    print(
        f"rerun them (ok jobs are skipped) with the same command plus hydra.sweep.dir={sweep_dir}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m runner``: validate every job first, then hand over to Hydra."""
    from runner.config.validate import Facts
    from runner.preflight import UserError, check_command

    argv = sys.argv[1:] if argv is None else argv
    register_configs()
    try:
        import torch

        check_command(argv, Facts(cuda_available=torch.cuda.is_available()))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    _export_swept_keys(argv)
    JOB_OUTCOMES.clear()
    sys.argv = [sys.argv[0], *argv]
    try:
        task()
    except KeyboardInterrupt:
        print("interrupted: the current job is recorded as interrupted; stopping", file=sys.stderr)
        _report_interrupted_sweep(JOB_OUTCOMES, multirun="-m" in argv or "--multirun" in argv)
    _report_failures(JOB_OUTCOMES)
    sys.exit(exit_code(JOB_OUTCOMES))


def _export_swept_keys(argv: list[str]) -> None:
    """Sweep job directories are named by the swept factors only (see config.dirname)."""
    import os

    from hydra.errors import HydraException

    from runner.config.dirname import SWEPT_ENV
    from runner.preflight import split_argv, swept_keys

    multirun, overrides, _ = split_argv(argv)
    os.environ.pop(SWEPT_ENV, None)
    if multirun:
        # A malformed override is reported by Hydra itself.
        with contextlib.suppress(HydraException):
            os.environ[SWEPT_ENV] = ",".join(swept_keys(overrides))


def _report_interrupted_sweep(outcomes: list[dict[str, Any]], multirun: bool) -> None:
    """Hydra skips its end-of-sweep callback after an interruption: write the summary here."""
    if not multirun or not outcomes:
        return
    from runner.report import build_report

    sweep_dir = Path(outcomes[0]["run_dir"]).parent
    try:
        build_report([sweep_dir], sweep_dir)
    except Exception as exc:  # the results are on disk; the summary can be rebuilt later
        log.error("sweep summary failed: %s (run python -m runner.report %s)", exc, sweep_dir)
