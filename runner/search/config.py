"""The search sweeper's config: the schema of ``hydra.sweeper`` and of its samplers,
registered in Hydra's ConfigStore by :func:`register_configs` (called when Hydra imports
``hydra_plugins.runner_search``).

The groups and names are those hydra-optuna-sweeper used, so configs written for it compose:
``hydra/sweeper=optuna`` is this schema with its defaults (``conf/hydra/sweeper/pareto.yaml``
extends it), ``hydra/sweeper/sampler=tpe|nsgaii|random`` picks the sampler and
``hydra.sweeper.sampler.<field>`` sets its arguments. No Optuna import here: Hydra imports
every plugin module at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SWEEPER_TARGET = "hydra_plugins.runner_search.pareto_sweeper.ParetoSweeper"


class Direction(Enum):
    minimize = 1
    maximize = 2


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    """optuna.samplers.TPESampler: multi-objective too; reads the trials' constraints."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = field(default=None, metadata={"help": "random seed"})
    n_startup_trials: int = field(default=10, metadata={"help": "random trials first"})
    n_ei_candidates: int = 24
    multivariate: bool | None = field(
        default=None, metadata={"help": "model the parameters jointly (Optuna's default: no)"}
    )
    group: bool = False
    constant_liar: bool = True


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """optuna.samplers.NSGAIISampler: ranks infeasible trials below feasible ones."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = field(default=None, metadata={"help": "random seed"})
    # Optuna's default is 50: small, so that a short search gets past the first generation
    # (random); raise it for long searches.
    population_size: int = field(
        default=4, metadata={"help": "trials per generation; the first is random"}
    )
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """optuna.samplers.RandomSampler."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = field(default=None, metadata={"help": "random seed"})


@dataclass
class SweeperConfig:
    """``hydra.sweeper`` of a search (the fields of hydra-optuna-sweeper 1.3's
    OptunaSweeperConf, the sweeper the runner's own)."""

    _target_: str = SWEEPER_TARGET
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING  # a SamplerConfig: hydra/sweeper/sampler=...
    # Direction or a list of them, one per objective.
    direction: Any = field(
        default=Direction.minimize, metadata={"help": "minimize or maximize, one per objective"}
    )
    storage: str | None = field(
        default=None, metadata={"help": "Optuna storage URL (sqlite:///...); None: in memory"}
    )
    study_name: str | None = None
    n_trials: int = field(
        default=20,
        metadata={"help": "distinct points measured by the whole search, a resumed one included"},
    )
    n_jobs: int = field(default=1, metadata={"help": "trials launched per batch"})
    max_failure_rate: float = field(
        default=1.0, metadata={"help": "stop when a batch has a larger share of failed trials"}
    )
    search_space: dict[str, Any] | None = field(
        default=None, metadata={"help": "removed (Hydra 1.2): use hydra.sweeper.params"}
    )
    params: dict[str, str] | None = field(
        default=None, metadata={"help": "the search space as overrides: key: choice(a,b)"}
    )
    custom_search_space: str | None = field(
        default=None,
        metadata={"help": "dotted path of a callable(cfg, trial) that suggests more params"},
    )


SAMPLERS = {"tpe": TPESamplerConfig, "nsgaii": NSGAIISamplerConfig, "random": RandomSamplerConfig}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna", node=SweeperConfig, provider="runner")
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="runner")
