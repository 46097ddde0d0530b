"""Registers the schemas in Hydra's ConfigStore (called once, by the entry and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from runner.config import launchers, schema
from runner.config.dirname import register_resolver


def _conf_dir() -> Path:
    # A wheel carries conf/ as runner/conf (see pyproject.toml); a checkout and an editable
    # install read the top-level conf/ beside the package.
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = _conf_dir()

GROUP_SCHEMAS = {
    "model": schema.ModelConfig,
    "engine": schema.EngineConfig,
    "scenario": schema.ScenarioConfig,
    "quant": schema.QuantConfig,
    "compile": schema.CompileConfig,
    "decoding": schema.DecodingConfig,
    "loading": schema.LoadingConfig,
    "workload": schema.WorkloadConfig,
    "measure": schema.MeasureConfig,
    "energy": schema.EnergyConfig,
    "search": schema.SearchConfig,
    "repeat": schema.RepeatConfig,
    "tracking": schema.TrackingConfig,
    "quality": schema.QualityConfig,
}


def _directions(objectives: Any) -> list[str]:
    # "metric:direction" -> direction; pre-flight has refused anything else.
    return [str(item).rpartition(":")[2] for item in objectives or ()]


def register_resolvers() -> None:
    register_resolver()
    launchers.register_resolver()
    if not OmegaConf.has_resolver("runner.directions"):
        OmegaConf.register_new_resolver("runner.directions", _directions)


def register_configs() -> None:
    """Store ``base_config`` and one ``base_<group>`` schema per group.

    The schemas are stored outside the groups (option files extend ``/base_<group>``):
    stored inside, Hydra would offer them as options of their group in ``--help`` and
    choosing one would fail on its missing fields.
    """
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=schema.RunConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(name=f"base_{group}", node=node)
