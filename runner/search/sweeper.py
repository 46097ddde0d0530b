"""``hydra/sweeper=pareto``: hydra-optuna-sweeper's sweeper, with what a measurement search
needs on top.

- ``n_trials`` is the size of the whole search: the study lives in the sweep directory
  (SQLite), and the same command with ``hydra.sweep.dir=<that directory>`` resumes it,
  running only the trials still missing. A point already measured ``ok`` is not measured
  again (the job skips it and returns its recorded values).
- A trial whose job did not end ``ok`` (the task returns None) is told to Optuna as FAIL,
  never as a number. A trial stopped by a signal is told FAIL with ``status=interrupted``
  before the stop ends the command, and is asked again first when the search resumes; a
  trial left RUNNING by a process killed outright is settled the same way.
- Constraints (``search.constraints``) are evaluated on each trial's ``result.json``: the
  violations are stored as the trial's ``constraints`` attribute, which NSGA-II reads
  (:func:`stored_constraints`); with ``search.violation=prune`` a violating trial is told
  PRUNED.
- ``search.json`` in the sweep directory lists every trial in order (state, status,
  params, values, violations, why a trial failed, run directory, Pareto membership): the
  report's source; ``multirun.yaml`` records the command, as Hydra's grid sweeper does.

Only ``sweep`` differs from the original; the search space, the samplers and their config
are hydra-optuna-sweeper's (its ``_impl`` is subclassed: the plugin has no hooks).
Optuna is 2.10: hydra-optuna-sweeper 1.3.0 requires optuna<3.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import OmegaConf
from optuna.distributions import (
    BaseDistribution,
    DiscreteUniformDistribution,
    IntUniformDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from runner.config.schema import Violation
from runner.results import RESULT_FILE, ResultReadError, read_result, write_json_atomic
from runner.search.objectives import (
    missing_reason,
    objective_values,
    parse_constraints,
    parse_objectives,
    violations,
)
from runner.search.pareto import pareto_front

log = logging.getLogger(__name__)

SEARCH_FILE = "search.json"
INTERRUPTED = "interrupted"
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def stored_constraints(trial: FrozenTrial) -> tuple[float, ...]:
    """NSGA-II's ``constraints_func``: the violations the sweeper stored (<= 0 is met)."""
    return tuple(trial.user_attrs.get("constraints", ()))


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials count, but not those a stop interrupted: they are asked again."""
    if trial.state not in _DONE:
        return False
    return trial.user_attrs.get("status") != INTERRUPTED


class ParetoSweeperImpl(OptunaSweeperImpl):
    """Built by ``hydra_plugins.runner_search.pareto_sweeper.ParetoSweeper`` (Hydra takes
    sweeper classes from the ``hydra_plugins`` package only)."""

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        search = self.config.search
        objectives = parse_objectives(list(search.objectives))
        constraints = parse_constraints(list(search.constraints))
        violation = _text(search.violation)
        prune = violation == Violation.prune.value
        directions = self._get_directions()
        if directions != [o.direction.value for o in objectives]:
            raise ValueError(
                f"hydra.sweeper.direction={directions} does not match search.objectives="
                f"{[str(o) for o in objectives]}"
            )

        self._process_searchspace_config()
        sweeps = self._parse_sweeper_params_config() + list(arguments)
        space, fixed = create_params_from_overrides(sweeps)
        space.update(range_distributions(sweeps))
        for name in fixed:
            space.pop(name, None)

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
        done = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
        todo = self.n_trials - done
        log.info(
            "study %s in %s: %d trial(s) done, %d to run (n_trials=%d), sampler %s",
            study.study_name,
            self.storage,
            done,
            max(todo, 0),
            self.n_trials,
            type(self.sampler).__name__,
        )
        export = _Exporter(sweep_dir, study, objectives, constraints, violation, self.n_trials)
        while todo > 0:
            batch = min(todo, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, space, fixed)
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except BaseException:
                # A stop signal (or a launcher error) before the values came back: a run
                # that had finished ok is told from its result, the others FAIL, to be
                # asked again on resume.
                for trial, job in zip(trials, overrides, strict=True):
                    run_dir = _find_run_dir(sweep_dir, job)
                    values = objective_values(objectives, _read(run_dir))
                    _tell(study, trial, run_dir, values, constraints, prune, objectives, True)
                export.write()
                raise
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns, strict=True):
                values = _returned(ret, len(objectives))
                _tell(study, trial, _run_dir(ret), values, constraints, prune, objectives)
            export.write()
            todo -= batch
        front = export.write()
        log.info("Pareto front: %d of %d trial(s): %s", len(front), len(study.trials), front)
        OmegaConf.save(
            OmegaConf.create({"name": "optuna", "search": SEARCH_FILE, "pareto_trials": front}),
            sweep_dir / "optimization_results.yaml",
        )


def _text(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


def range_distributions(overrides: list[str]) -> dict[str, BaseDistribution]:
    """``range(start, stop, step)`` as Hydra reads it, ``stop`` excluded (1, 2, ..., 8 for
    ``range(1,9)``): hydra-optuna-sweeper 1.3.0 maps it to a distribution that includes
    ``stop``, which would measure points outside the range the command names."""
    out: dict[str, BaseDistribution] = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        if not o.is_range_sweep() or o.value().shuffle:
            continue
        values = list(o.sweep_iterator(transformer=Transformer.encode))
        step = o.value().step
        name = o.get_key_element()
        if not values:
            continue  # an empty range: pre-flight refuses it
        if all(isinstance(v, int) for v in values) and isinstance(step, int):
            out[name] = IntUniformDistribution(values[0], values[-1], step=step)
        else:
            out[name] = DiscreteUniformDistribution(values[0], values[-1], step)
    return out


def _settle_and_requeue(study: optuna.Study) -> None:
    """Trials left RUNNING by a process that died are interrupted; interrupted trials are
    asked again (once each), before the sampler proposes new points."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "status", INTERRUPTED)
        study.tell(trial.number, state=TrialState.FAIL)
    requeued = study.user_attrs
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = f"requeued:{trial.number}"
        if trial.user_attrs.get("status") == INTERRUPTED and key not in requeued and trial.params:
            with warnings.catch_warnings():  # "experimental" in optuna 2.10, stable since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(dict(trial.params))
            study.set_user_attr(key, True)
            log.info("trial %d was interrupted: asking %s again", trial.number, trial.params)


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
    """Writes ``search.json``: the study's trials in order, with the Pareto front marked."""

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
        trials = self.study.get_trials(deepcopy=False)
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
        write_json_atomic(self.path, {**self.head, "trials": rows})
        return sorted(front)
