"""``hydra/sweeper=pareto``'s class: a thin shell (Hydra imports every plugin module at
start-up, so Optuna is imported only when the sweeper is built); see
:mod:`runner.search.sweeper`. Importing it registers the sweeper's config
(:mod:`runner.search.config`): ``hydra/sweeper=optuna`` and ``hydra/sweeper/sampler=...``."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from runner.search.config import register_configs

register_configs()


class ParetoSweeper(Sweeper):
    def __init__(self, **kwargs: Any) -> None:
        from runner.search.sweeper import ParetoSweeperImpl

        self.sweeper = ParetoSweeperImpl(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
