"""Runs that did not end ``ok``, grouped by cause, each group with a command that reruns it.

A cause is the status with the error's type and phase (``failed: OutOfMemoryError (phase:
load)``), so a thousand out-of-memory failures are one group, not a thousand lines; an
unreadable result is grouped by its reason with paths and numbers blanked out.

Rerunning a sweep's points into the same sweep directory resumes it: points already ``ok``
are skipped, the others run again (docs/troubleshooting.md, Resume). The command is the
user's own: the sweep's overrides as typed, each swept key restricted to the values of the
group's runs, their Hydra settings (a launcher, the baseline), and ``hydra.sweep.dir``
(:mod:`runner.report.command`). The restricted grid can hold other points that are not ok
either; they run again too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.report.collect import HYDRA_DIR, _hydra_overrides
from runner.report.command import command_line, read_sweep_command, restricted
from runner.results import RESULT_FILE


@dataclass
class FailureGroup:
    """Runs sharing one cause; ``rows`` is their part of the report table."""

    status: str
    cause: str
    rows: pd.DataFrame
    commands: list[str] = field(default_factory=list)

    @property
    def example(self) -> str:
        errors = [e for e in self.rows["error"] if isinstance(e, str) and e]
        return errors[0] if errors else "no reason recorded"


def cause_of(row: pd.Series) -> str:
    """The cause a run is grouped under (without its status)."""
    status, etype, phase = row["status"], row.get("error_type"), row.get("error_phase")
    if status == "partial":
        return "no result.json (still running, or killed before writing it)"
    if isinstance(etype, str) and etype:
        return f"{etype} (phase: {phase})" if isinstance(phase, str) and phase else etype
    error = row.get("error")
    if not isinstance(error, str) or not error:
        return "no reason recorded"
    run_dir = str(row["run_dir"])
    text = error.replace(f"{run_dir}/{RESULT_FILE}: ", "").replace(run_dir, "<run>")
    text = re.sub(r"(\S*/)+\S+", "<path>", text)
    return re.sub(r"\d+", "N", text)[:120]


def _run_overrides(row: pd.Series) -> list[str]:
    return _hydra_overrides(Path(row["run_dir"]))


def rerun_commands(rows: pd.DataFrame) -> list[str]:
    """Commands rerunning these runs in place (one per sweep directory; a run outside a
    sweep gets its own). Empty where no safe command can be built."""
    commands = []
    for sweep_dir, runs in rows.groupby(rows["run_dir"].map(lambda d: str(Path(d).parent))):
        sweep = read_sweep_command(sweep_dir)
        # A search's trials are not a grid: each failed point is rerun on its own, in place.
        if sweep is not None and not sweep.search:
            task_runs = [_run_overrides(r) for _, r in runs.iterrows()]
            task = restricted(sweep.task, [t for t in task_runs if t])
            if task is not None:
                # The user's own overrides first, then their Hydra settings, then the place.
                words = [*task, *sweep.hydra, f"hydra.sweep.dir={sweep_dir}"]
                commands.append(command_line(words))
            continue
        for _, row in runs.iterrows():
            overrides = _run_overrides(row)
            if (Path(row["run_dir"]) / HYDRA_DIR).is_dir():
                words = [*overrides, f"hydra.run.dir={row['run_dir']}"]
                commands.append(command_line(words, multirun=False))
    return commands


def failure_groups(df: pd.DataFrame) -> list[FailureGroup]:
    """Runs that are not ``ok``, grouped by (status, cause); largest groups first."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return []
    keys = pd.DataFrame({"status": bad["status"], "cause": bad.apply(cause_of, axis=1)})
    groups = []
    for (status, cause), index in keys.groupby(["status", "cause"], sort=True).groups.items():
        rows = bad.loc[index]
        groups.append(FailureGroup(status, cause, rows, rerun_commands(rows)))
    return sorted(groups, key=lambda g: -len(g.rows))
