"""``hydra/sweeper=pareto``'s class: a thin shell (Hydra imports every plugin module at
start-up, so Optuna is imported only when the sweeper is built); see
:mod:`runner.search.sweeper`."""

from __future__ import annotations

import warnings
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# Optuna 2.10 calls NSGA-II's constraints_func experimental (it is stable since 3.x); Hydra
# builds the sampler before this class, so the filter is set at import, for that one message.
warnings.filterwarnings("ignore", message="The constraints_func option is an experimental")


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
