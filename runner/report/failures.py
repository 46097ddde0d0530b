"""Runs that did not end ``ok``, grouped by cause, each group with a command that reruns it.

A cause is the status with the error's type and phase (``failed: OutOfMemoryError (phase:
load)``), so a thousand out-of-memory failures are one group, not a thousand lines; an
unreadable result is grouped by its reason with paths and numbers blanked out.

Rerunning a sweep's points into the same sweep directory resumes it: points already ``ok``
are skipped, the others run again (docs/troubleshooting.md, Resume). The command repeats
the sweep's own command (read from its ``multirun.yaml``: launcher settings included), with
each swept key restricted to the values of the group's runs. A key the group has one value
of is written ``choice(value)`` so that it stays a swept key, and the jobs keep their
directory names (which name the swept keys only). The restricted grid can hold other
points that are not ok either; they run again too.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runner.config.overrides import parse, swept_keys
from runner.report.collect import HYDRA_DIR, _hydra_overrides
from runner.report.effects import level_key
from runner.results import RESULT_FILE

MULTIRUN_FILE = "multirun.yaml"
# Hydra settings a rerun sets itself (or that name the old run).
DROPPED_HYDRA = ("hydra.mode", "hydra.sweep.dir", "hydra.run.dir", "hydra.sweep.subdir")
RERUN = "python -m runner"


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


@functools.lru_cache(maxsize=64)
def _sweep_command(sweep_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``(hydra overrides, task overrides)`` of the sweep that wrote ``sweep_dir``, or None."""
    try:
        import yaml

        data = yaml.safe_load((Path(sweep_dir) / MULTIRUN_FILE).read_text())
        overrides = data["hydra"]["overrides"]
        hydra = [str(o) for o in overrides.get("hydra") or []]
        task = [str(o) for o in overrides.get("task") or []]
    except Exception:
        return None
    hydra = [o for o in hydra if not o.lstrip("+~").startswith(DROPPED_HYDRA)]
    return tuple(hydra), tuple(task)


def _quote(parts: Iterable[str]) -> str:
    return " ".join(shlex.quote(p) for p in parts)


def _run_overrides(row: pd.Series) -> list[str]:
    return _hydra_overrides(Path(row["run_dir"]))


def _restricted(task: tuple[str, ...], runs: list[list[str]]) -> list[str] | None:
    """The sweep's task overrides with each swept key limited to the runs' values."""
    try:
        swept = set(swept_keys(list(task)))
        values: dict[str, list[str]] = {k: [] for k in swept}
        for overrides in runs:
            for setting in parse(overrides):
                if setting.key in values and "=" in setting.text:
                    raw = setting.text.split("=", 1)[1]
                    if raw not in values[setting.key]:
                        values[setting.key].append(raw)
        out = []
        for text, setting in zip(task, parse(list(task)), strict=True):
            if setting.key not in swept:
                out.append(text)
                continue
            vals = sorted(values[setting.key], key=level_key)
            if not vals:
                return None
            prefix = text.split("=", 1)[0]
            joined = ",".join(vals) if len(vals) > 1 else f"choice({vals[0]})"
            out.append(f"{prefix}={joined}")
        parse(out)  # a value Hydra cannot read back: no command rather than a wrong one
    except Exception:
        return None
    return out


def rerun_commands(rows: pd.DataFrame) -> list[str]:
    """Commands rerunning these runs in place (one per sweep directory; a run outside a
    sweep gets its own). Empty where no safe command can be built."""
    commands = []
    for sweep_dir, runs in rows.groupby(rows["run_dir"].map(lambda d: str(Path(d).parent))):
        sweep = _sweep_command(sweep_dir)
        if sweep is not None:
            hydra, task = sweep
            task_runs = [_run_overrides(r) for _, r in runs.iterrows()]
            restricted = _restricted(task, [t for t in task_runs if t])
            if restricted is not None:
                commands.append(
                    f"{RERUN} -m {_quote([*hydra, *restricted, f'hydra.sweep.dir={sweep_dir}'])}"
                )
            continue
        for _, row in runs.iterrows():
            overrides = _run_overrides(row)
            if (Path(row["run_dir"]) / HYDRA_DIR).is_dir():
                commands.append(
                    f"{RERUN} {_quote([*overrides, 'hydra.run.dir=' + row['run_dir']])}"
                )
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
