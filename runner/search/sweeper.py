"""``hydra/sweeper=pareto``: a multi-objective Optuna search whose trials are runs.

- ``n_trials`` is the number of distinct points the whole search measures: the study
  lives in the sweep directory (SQLite), and the same command with
  ``hydra.sweep.dir=<that directory>`` resumes it, running only the trials still missing.
- A point the sampler proposes again is not run again and not counted: the trial is told
  the result of the trial that measured it (its values, or FAIL, or PRUNED) with the user
  attribute ``repeat_of``, and the sampler is asked again. The search ends early when every
  point of a discrete space is measured, or after :data:`MAX_REPEATS` repeats in a row.
- A trial whose job did not end ``ok`` (the task returns None) is told to Optuna as FAIL,
  never as a number. A trial stopped by a signal is told FAIL with ``status=interrupted``
  before the stop ends the command, and is asked again first when the search resumes; a
  trial left RUNNING by a process killed outright is settled the same way.
- Constraints (``search.constraints``) are evaluated on each trial's ``result.json``: the
  violations are set as the trial's constraints (``Trial.set_constraint``), which NSGA-II
  and TPE read, and stored as its ``constraints`` attribute; with
  ``search.violation=prune`` a violating trial is told PRUNED.
- ``search.json`` in the sweep directory lists every measured trial in order (state,
  status, params, values, violations, why a trial failed, run directory, Pareto
  membership; the repeats under ``repeats``): the report's source; ``multirun.yaml``
  records the command, as Hydra's grid sweeper does.

The search space is :mod:`runner.search.space`, the config :mod:`runner.search.config`
(the keys of hydra-optuna-sweeper 1.3, which this replaces).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableSequence, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from runner.config.schema_sweep import Violation
from runner.results import RESULT_FILE, ResultReadError, read_result, write_json_atomic
from runner.search.config import Direction
from runner.search.objectives import (
    missing_reason,
    objective_values,
    parse_constraints,
    parse_objectives,
    violations,
)
from runner.search.pareto import pareto_front
from runner.search.space import point, search_space, space_size

log = logging.getLogger(__name__)

SEARCH_FILE = "search.json"
INTERRUPTED = "interrupted"
REPEAT_OF = "repeat_of"
# Proposals of measured points in a row before the search stops: the sampler keeps
# proposing what it knows (a converged search, or a space nearly all measured).
MAX_REPEATS = 100
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

Point = tuple[tuple[str, Any], ...]


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials count, but not those a stop interrupted (they are asked again) nor
    repeats of a measured point."""
    return trial.state in _DONE and not _interrupted(trial) and REPEAT_OF not in trial.user_attrs


def _interrupted(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get("status") == INTERRUPTED


class ParetoSweeperImpl(Sweeper):
    """Built by ``hydra_plugins.runner_search.pareto_sweeper.ParetoSweeper`` (Hydra takes
    sweeper classes from the ``hydra_plugins`` package only), with the fields of
    :class:`runner.search.config.SweeperConfig`, the sampler instantiated."""

    def __init__(
        self,
        sampler: optuna.samplers.BaseSampler,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space: DictConfig | None,
        custom_search_space: str | None,
        params: DictConfig | None,
    ) -> None:
        if search_space:
            raise ValueError(
                "hydra.sweeper.search_space: removed in Hydra 1.2; give the space as "
                "hydra.sweeper.params (key: choice(a,b)) or as overrides"
            )
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: in [0, 1]")
        if n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_jobs={n_jobs}: must be >= 1")
        self.sampler = sampler
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = params
        self.extend_space: Callable[[DictConfig, optuna.Trial], None] | None = None
        if custom_search_space:
            self.extend_space = instantiate({"_target_": custom_search_space, "_partial_": True})
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.job_idx = 0
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def _directions(self) -> list[str]:
        given = self.direction if isinstance(self.direction, MutableSequence) else [self.direction]
        return [d.name if isinstance(d, Direction) else str(d) for d in given]

    def _configure(
        self, trial: optuna.Trial, space: dict[str, BaseDistribution], fixed: dict[str, str]
    ) -> tuple[str, ...]:
        """Suggest the trial's params; return the job's overrides."""
        for name, dist in space.items():
            trial._suggest(name, dist)
        if self.extend_space is not None:
            self.extend_space(self.config, trial)
        return tuple(f"{name}={value}" for name, value in {**trial.params, **fixed}.items())

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        search = self.config.search
        objectives = parse_objectives(list(search.objectives))
        constraints = parse_constraints(list(search.constraints))
        violation = _text(search.violation)
        prune = violation == Violation.prune.value
        directions = self._directions()
        if directions != [o.direction.value for o in objectives]:
            raise ValueError(
                f"hydra.sweeper.direction={directions} does not match search.objectives="
                f"{[str(o) for o in objectives]}"
            )

        given = [f"{k!s}={v}" for k, v in (self.params or {}).items()]
        space, fixed = search_space(given + list(arguments))
        for name in fixed:  # the command line wins over hydra.sweeper.params
            space.pop(name, None)
        size = space_size(space) if self.extend_space is None else None

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # As Hydra's basic sweeper does: the command (and its config) beside the runs, where
        # the report reads the order of the levels and how to resume.
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        study.set_user_attr("objectives", [str(o) for o in objectives])
        study.set_user_attr("constraints", [str(c) for c in constraints])
        _settle_and_requeue(study)
        known = _measured(study)
        done = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
        todo = self.n_trials - done
        log.info(
            "study %s in %s: %d trial(s) done, %d to run (n_trials=%d), space of %s point(s), "
            "sampler %s",
            study.study_name,
            self.storage,
            done,
            max(todo, 0),
            self.n_trials,
            "infinitely many" if size is None else size,
            type(self.sampler).__name__,
        )
        export = _Exporter(sweep_dir, study, objectives, constraints, violation, self.n_trials)
        in_a_row = 0
        while todo > 0:
            # Ask until the batch has points never measured; a repeat is told its result.
            batch: list[tuple[optuna.Trial, Point, tuple[str, ...]]] = []
            twins: list[tuple[optuna.Trial, Point]] = []  # a point already in this batch
            while len(batch) < min(todo, self.n_jobs) and in_a_row < MAX_REPEATS:
                if size is not None and len(known) + len(batch) >= size:
                    break
                trial = study.ask()
                overrides = self._configure(trial, space, fixed)
                key = point(trial.params)
                if key in known:
                    _tell_repeat(study, trial, known[key])
                    in_a_row += 1
                elif any(key == k for _, k, _ in batch):
                    twins.append((trial, key))
                    in_a_row += 1
                else:
                    batch.append((trial, key, overrides))
                    in_a_row = 0
            if not batch:
                break
            trials = [t for t, _, _ in batch]
            jobs = [o for _, _, o in batch]
            try:
                returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            except BaseException:
                # A stop signal (or a launcher error) before the values came back: a run
                # that had finished ok is told from its result, the others FAIL, to be
                # asked again on resume.
                for trial, job in zip(trials, jobs, strict=True):
                    run_dir = _find_run_dir(sweep_dir, job)
                    values = objective_values(objectives, _read(run_dir))
                    _tell(study, trial, run_dir, values, constraints, prune, objectives, True)
                _tell_twins(study, twins, batch)
                export.write()
                raise
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns, strict=True):
                values = _returned(ret, len(objectives))
                _tell(study, trial, _run_dir(ret), values, constraints, prune, objectives)
            told = _tell_twins(study, twins, batch)
            for (_, key, _), frozen in zip(batch, told, strict=True):
                if not _interrupted(frozen):
                    known[key] = frozen
            export.write()
            todo -= len(batch)
            failed = sum(t.state is TrialState.FAIL for t in told)
            if failed / len(batch) > self.max_failure_rate:
                raise RuntimeError(
                    f"{failed} of {len(batch)} trial(s) failed, more than "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}"
                )
        if todo > 0 and size is not None and len(known) >= size:
            log.info("every point of the search space (%d) is measured: the search ends", size)
        elif todo > 0:
            log.info(
                "the sampler proposed %d measured points in a row: the search ends with %d "
                "trial(s) still to run",
                MAX_REPEATS,
                todo,
            )
        front = export.write()
        log.info("Pareto front: %d of %d trial(s): %s", len(front), len(known), front)
        OmegaConf.save(
            OmegaConf.create({"name": "optuna", "search": SEARCH_FILE, "pareto_trials": front}),
            sweep_dir / "optimization_results.yaml",
        )


def _text(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


def _settle_and_requeue(study: optuna.Study) -> None:
    """Trials left RUNNING by a process that died are interrupted; interrupted trials are
    asked again (once each), before the sampler proposes new points."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "status", INTERRUPTED)
        study.tell(trial.number, state=TrialState.FAIL)
    requeued = study.user_attrs
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = f"requeued:{trial.number}"
        if (
            _interrupted(trial)
            and REPEAT_OF not in trial.user_attrs
            and key not in requeued
            and trial.params
        ):
            study.enqueue_trial(dict(trial.params))
            study.set_user_attr(key, True)
            log.info("trial %d was interrupted: asking %s again", trial.number, trial.params)


def _measured(study: optuna.Study) -> dict[Point, FrozenTrial]:
    """The measured points (not interrupted, not repeats) and the trial that measured each."""
    return {
        point(t.params): t
        for t in study.get_trials(deepcopy=False, states=_DONE)
        if counts_toward_budget(t)
    }


def _tell_repeat(study: optuna.Study, trial: optuna.Trial, measured: FrozenTrial) -> FrozenTrial:
    """Tell ``trial`` (a point ``measured`` has) the same result, marked ``repeat_of``."""
    trial.set_user_attr(REPEAT_OF, measured.number)
    for key in ("status", "reason", "run_dir", "constraints"):
        if key in measured.user_attrs:
            trial.set_user_attr(key, measured.user_attrs[key])
    for key, value in measured.constraints.items():
        trial.set_constraint(key, value)
    log.info(
        "trial %d: %s was measured by trial %d; told its result, not counted",
        trial.number,
        measured.params,
        measured.number,
    )
    values = measured.values if measured.state is TrialState.COMPLETE else None
    return study.tell(trial, values=values, state=measured.state)


def _tell_twins(study, twins, batch) -> list[FrozenTrial]:
    """Tell each twin its batch trial's result; return the batch's trials as told."""
    trials = study.get_trials(deepcopy=False)  # in trial number order
    told = {key: trials[trial.number] for trial, key, _ in batch}
    for trial, key in twins:
        _tell_repeat(study, trial, told[key])
    return [told[key] for _, key, _ in batch]


def _run_dir(ret: JobReturn) -> Path | None:
    try:
        return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:
        return None


def _read(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    try:
        return read_result(run_dir)
    except (OSError, ResultReadError):
        return None


def _find_run_dir(sweep_dir: Path, overrides: Sequence[str]) -> Path | None:
    """The directory of the job run with these overrides (its result records them)."""
    wanted = sorted(overrides)
    for path in Path(sweep_dir).glob(f"*/{RESULT_FILE}"):
        data = _read(path.parent)
        if data is not None and sorted(data.get("overrides") or []) == wanted:
            return path.parent
    return None


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    run_dir: Path | None,
    values: list[float] | None,
    constraints: list,
    prune: bool,
    objectives: Sequence = (),
    stopped: bool = False,
) -> None:
    """Tell Optuna how the trial's run ended: values (COMPLETE or, violating a constraint
    with ``prune``, PRUNED) or FAIL with the reason, with its status, run directory and
    violations."""
    result = _read(run_dir)
    if run_dir is not None:
        trial.set_user_attr("run_dir", str(run_dir))
    status = str(result.get("status")) if result else "no result"
    if values is None:
        reason = "interrupted" if stopped and status != "ok" else missing_reason(objectives, result)
        trial.set_user_attr("status", INTERRUPTED if stopped else status)
        trial.set_user_attr("reason", reason)
        log.warning("trial %d: %s; told to Optuna as FAIL", trial.number, reason)
        study.tell(trial, state=TrialState.FAIL)
        return
    trial.set_user_attr("status", status)
    violation = violations(constraints, result)
    trial.set_user_attr("constraints", violation)
    for constraint, value in zip(constraints, violation, strict=True):
        trial.set_constraint(str(constraint), value)  # what NSGA-II and TPE read
    if prune and any(v > 0 for v in violation):
        log.info("trial %d violates a constraint %s: pruned", trial.number, violation)
        study.tell(trial, state=TrialState.PRUNED)
        return
    study.tell(trial, values=[float(v) for v in values])


def _returned(ret: JobReturn, n_objectives: int) -> list[float] | None:
    """What the task function returned, as a list (None: the run failed)."""
    value = ret.return_value if ret.status is JobStatus.COMPLETED else None
    if value is None:
        return None
    return [value] if n_objectives == 1 else list(value)


class _Exporter:
    """Writes ``search.json``: the study's measured trials in order, with the Pareto front
    marked; the repeats of a measured point apart, each with the trial it repeats."""

    def __init__(self, sweep_dir, study, objectives, constraints, violation, n_trials) -> None:
        self.path = Path(sweep_dir) / SEARCH_FILE
        self.study = study
        self.head = {
            "study": study.study_name,
            "n_trials": n_trials,
            "sampler": type(study.sampler).__name__,
            "objectives": [str(o) for o in objectives],
            "constraints": [str(c) for c in constraints],
            "violation": violation,
        }
        self.directions = [o.direction.value for o in objectives]

    def write(self) -> list[int]:
        """Write the file; return the numbers of the trials on the front."""
        every = self.study.get_trials(deepcopy=False)
        trials = [t for t in every if REPEAT_OF not in t.user_attrs]
        repeats = [
            {"number": t.number, REPEAT_OF: t.user_attrs[REPEAT_OF]}
            for t in every
            if REPEAT_OF in t.user_attrs
        ]
        feasible = [
            t
            for t in trials
            if t.state is TrialState.COMPLETE
            and t.values is not None
            and all(v <= 0 for v in t.user_attrs.get("constraints", ()))
        ]
        ok = {t.number for t in feasible}
        front = {
            feasible[i].number for i in pareto_front([t.values for t in feasible], self.directions)
        }
        rows = [
            {
                "number": t.number,
                "state": t.state.name,
                "status": t.user_attrs.get("status"),
                "params": dict(t.params),
                "values": list(t.values) if t.values is not None else None,
                "violations": t.user_attrs.get("constraints"),
                "reason": t.user_attrs.get("reason"),
                "feasible": t.number in ok,
                "pareto": t.number in front,
                "run_dir": t.user_attrs.get("run_dir"),
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
            }
            for t in trials
        ]
        write_json_atomic(self.path, {**self.head, "trials": rows, "repeats": repeats})
        return sorted(front)
