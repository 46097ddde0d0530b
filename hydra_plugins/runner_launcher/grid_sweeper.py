"""``hydra/sweeper=grid``: Hydra's basic sweeper (every combination of the swept values),
each point composed once (see :mod:`runner.config.compose_once`), each point run
``repeat.count`` times in ``repeat.order`` (see :mod:`runner.config.repeats`).

Hydra's plugin scan imports this module at every start: keep its imports light.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

ORDER_FILE = "repeat_order.json"  # the order the repeated jobs were launched in (the report's
# runner.report.command.REPEAT_ORDER_FILE: not imported here, to keep Hydra's start light)


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

    def split_arguments(self, overrides: list[Any], max_batch_size: int | None) -> list[Any]:  # type: ignore[override]
        """Every point of the grid, each ``repeat.count`` times in ``repeat.order``, in
        batches of ``max_batch_size``; a repeated sweep records its order in
        ``repeat_order.json``."""
        from runner.config.repeats import repeat_plan, settings

        points = BasicSweeper.split_arguments(overrides, None)[0]
        count, order, seed = settings(self.config)
        jobs = repeat_plan(points, count, order, seed)
        if count > 1 and self.config is not None:
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            record = {"count": count, "order": order, "seed": seed, "jobs": jobs}
            (sweep_dir / ORDER_FILE).write_text(json.dumps(record, indent=1) + "\n")
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))
