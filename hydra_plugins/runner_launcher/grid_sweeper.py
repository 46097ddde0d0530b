"""``hydra/sweeper=grid``: Hydra's basic sweeper (every combination of the swept values),
each point composed once (see :mod:`runner.config.compose_once`).

Hydra's plugin scan imports this module at every start: keep its imports light.
"""

from __future__ import annotations

import dataclasses

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class GridSweeper(BasicSweeper):
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from runner.config.compose_once import ComposeOnce

        # The launcher is built in setup from this context: it shares the wrapped loader.
        once = ComposeOnce(hydra_context.config_loader)
        super().setup(
            hydra_context=dataclasses.replace(hydra_context, config_loader=once),
            task_function=task_function,
            config=config,
        )
