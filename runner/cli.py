"""The Hydra entry: check the command, compose, convert to typed config once, run jobs.

Exit codes: 0 every job ok; 1 a job failed; 2 the command or config is wrong
(nothing ran); 130 a job was interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from runner.config import register_configs
from runner.config.schema import Isolation
from runner.preflight import CONF_DIR

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

# Filled by the task function; the basic launcher runs jobs in this process.
JOB_OUTCOMES: list[dict[str, Any]] = []


def _isolation_for(launcher_target: str, requested: Isolation) -> Isolation:
    # submitit already gives each job its own process: do not pay for a second one.
    return Isolation.inline if "submitit" in launcher_target else requested


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(dcfg: DictConfig) -> None:
    """One job. Never raises: failures are recorded in the job's ``result.json``."""
    from runner import summary
    from runner.job import RunDirLocked, execute
    from runner.run import RunInterrupted

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
        print(summary.render(result, str(run_dir)), flush=True)
    except RunDirLocked as exc:
        outcome["status"] = "failed"
        log.error("%s", exc)
    except (KeyboardInterrupt, RunInterrupted):
        outcome["status"] = "interrupted"
    except Exception as exc:  # the task function must not raise (the sweep goes on)
        outcome["status"] = "failed"
        log.exception("job failed outside the run: %s", exc)
    JOB_OUTCOMES.append(outcome)


def exit_code(outcomes: list[dict[str, Any]]) -> int:
    statuses = {o.get("status") for o in outcomes}
    if "interrupted" in statuses:
        return EXIT_INTERRUPTED
    if "failed" in statuses:
        return EXIT_FAILED
    return EXIT_OK


def _report_failures(outcomes: list[dict[str, Any]]) -> None:
    bad = [o for o in outcomes if o.get("status") != "ok"]
    if not bad or len(outcomes) < 2:
        return
    print(f"\n{len(bad)} of {len(outcomes)} job(s) did not finish ok:", file=sys.stderr)
    for o in bad:
        print(f"  [{o['status']}] {','.join(o['overrides']) or '(defaults)'}  {o['run_dir']}",
              file=sys.stderr)
    sweep_dir = str(Path(bad[0]["run_dir"]).parent)
    print(
        "rerun them (ok jobs are skipped) with the same command plus "
        f"hydra.sweep.dir={sweep_dir}",
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
    JOB_OUTCOMES.clear()
    sys.argv = [sys.argv[0], *argv]
    task()
    _report_failures(JOB_OUTCOMES)
    sys.exit(exit_code(JOB_OUTCOMES))
