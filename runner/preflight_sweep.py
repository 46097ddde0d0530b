"""What a multirun's sweeper will do: its jobs, search settings and repeats, checked."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.overrides import Setting, expand, parse, search_points, value_of
from runner.config.schema import RunConfig
from runner.config.store import compose_config
from runner.preflight_messages import UserError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
GRID_SWEEPER = "hydra_plugins.runner_launcher.grid_sweeper.GridSweeper"
PARETO_SWEEPER = "hydra_plugins.runner_search.pareto_sweeper.ParetoSweeper"


@dataclass(frozen=True)
class Sweep:
    """What the sweeper of a multirun will do, read from the composed Hydra config."""

    target: str = BASIC_SWEEPER
    params: tuple[str, ...] = ()  # hydra.sweeper.params as overrides (key=sweep)
    n_trials: Any = None
    directions: Any = None
    storage: str | None = None
    sweep_dir: str | None = None

    @property
    def is_search(self) -> bool:
        return self.target not in (BASIC_SWEEPER, GRID_SWEEPER)


def require_plugins(settings: list[Setting]) -> None:
    sweeper = value_of("hydra/sweeper", settings)
    if sweeper in ("pareto", "optuna") and importlib.util.find_spec("optuna") is None:
        raise UserError(f"hydra/sweeper={sweeper}: needs optuna; pip install -e '.[search]'")


def read_sweep(overrides: list[str]) -> Sweep:
    """Compose the Hydra config of a multirun (without its swept values, which only a
    multirun accepts) and read the sweeper's target, grid and search settings."""
    fixed = [s.text for s in parse(overrides) if not s.swept]
    cfg = compose_config(fixed, with_hydra=True)
    sweeper = cfg.hydra.sweeper
    params = OmegaConf.select(sweeper, "params") or {}
    return Sweep(
        target=str(sweeper.get("_target_", BASIC_SWEEPER)),
        params=tuple(f"{k}={v}" for k, v in params.items()),
        n_trials=OmegaConf.select(sweeper, "n_trials"),
        directions=OmegaConf.to_container(sweeper, resolve=True).get("direction")
        if "direction" in sweeper
        else None,
        storage=OmegaConf.select(sweeper, "storage", throw_on_resolution_failure=False),
        sweep_dir=str(cfg.hydra.sweep.dir),
    )


def read_sweep_or_refuse(overrides: list[str], settings: list[Setting]) -> Sweep:
    try:
        return read_sweep(overrides)
    except (HydraException, OmegaConfBaseException):
        raise
    except Exception as exc:  # OmegaConf 2.3 crashes on some overrides of null nodes
        params = [s.text for s in settings if s.key.startswith("hydra.sweeper.params")]
        if params:
            raise UserError(
                f"{params[0]}: Hydra 1.3 cannot set hydra.sweeper.params on the command line "
                "while it is null; give the grid as overrides, or in an experiment file "
                "(docs/search.md)"
            ) from exc
        raise UserError(f"the sweep's Hydra settings do not compose: {exc}") from exc


def job_points(task: list[str], multirun: bool, sweep: Sweep) -> list[list[str]]:
    """Every job to check: the grid of the basic sweeper, or every value of a search."""
    if not multirun:
        return [task]
    # The command line wins over hydra.sweeper.params, as in both sweepers.
    given = {s.key for s in parse(task)}
    merged = [
        p for p, s in zip(sweep.params, parse(sweep.params), strict=True) if s.key not in given
    ] + task
    if not sweep.is_search:
        interval = [s.text for s in parse(merged) if s.swept and "interval(" in s.text]
        if interval:
            raise UserError(
                f"{interval[0]}: interval() needs a search sweeper, not the basic grid "
                "(add hydra/sweeper=pareto, docs/search.md), or list values: key=a,b,c"
            )
        return expand(merged, multirun=True)
    return search_points(merged)  # the runner's sweeper: a range's stop excluded, as Hydra


def check_search_settings(sweep: Sweep, cfg: RunConfig) -> None:
    """n_trials, directions and a resumed study agree with ``search.*``."""
    from runner.search.objectives import parse_objectives

    if not sweep.is_search:
        return
    n = sweep.n_trials
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"hydra.sweeper.n_trials={n}: must be an integer >= 1")
    objectives = parse_objectives(cfg.search.objectives)
    directions = sweep.directions
    if directions is not None:
        listed = directions if isinstance(directions, list) else [directions]
        listed = [str(getattr(d, "name", d)) for d in listed]  # the plugin's Direction enum
        bad = [d for d in listed if d not in ("minimize", "maximize")]
        if bad:
            raise UserError(f"hydra.sweeper.direction={bad[0]}: minimize or maximize")
        if len(listed) != len(objectives):
            raise UserError(
                f"hydra.sweeper.direction={listed}: one direction per objective of "
                f"search.objectives ({', '.join(map(str, objectives))})"
            )
    if sweep.target == PARETO_SWEEPER:
        _check_resumed_study(sweep, [str(o) for o in objectives])


def _check_resumed_study(sweep: Sweep, objectives: list[str]) -> None:
    db = Path(str(sweep.sweep_dir)) / "optuna.db"
    if not db.is_file() or not sweep.storage:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.get_all_study_summaries(str(sweep.storage), include_best_trial=False)
    except Exception as exc:
        raise UserError(f"{db}: the stored study cannot be read ({exc})") from exc
    for summary in summaries:
        stored = summary.user_attrs.get("objectives")
        if stored and list(stored) != objectives:
            raise UserError(
                f"search.objectives={objectives}: the study in {db} optimizes {list(stored)}; "
                "resume it with the same objectives or use another hydra.sweep.dir"
            )


def check_repeats(cfg: RunConfig, settings: list[Setting], multirun: bool, searching: bool) -> None:
    """``repeat.count`` > 1 needs a grid sweep (each repeat is a job of its own); the
    repeat settings are one per sweep, never swept."""
    swept = [s for s in settings if s.swept and s.key.startswith("repeat.")]
    if swept:
        raise UserError(
            f"{swept[0].text}: {swept[0].key} is a setting of the whole sweep, not a factor; "
            "give it one value"
        )
    count = cfg.repeat.count
    if count > 1 and not multirun:
        raise UserError(
            f"repeat.count={count}: repeats are jobs of a sweep; add -m "
            "(python -m runner -m ... repeat.count=3)"
        )
    if count > 1 and searching:
        raise UserError(
            f"repeat.count={count}: a search sweeper proposes each point itself and cannot "
            "repeat it; run the points the search found as a grid with repeats"
        )
