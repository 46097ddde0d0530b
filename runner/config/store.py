"""Registers the schemas in Hydra's ConfigStore (called once, by the entry and tests)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from runner.config import schema
from runner.config.dirname import register_resolver


def _conf_dir() -> Path:
    # A wheel carries conf/ as runner/conf (see pyproject.toml); a checkout and an editable
    # install read the top-level conf/ beside the package.
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = _conf_dir()

GROUP_SCHEMAS = {
    "model": schema.ModelConfig,
    "quant": schema.QuantConfig,
    "compile": schema.CompileConfig,
    "decoding": schema.DecodingConfig,
    "loading": schema.LoadingConfig,
    "workload": schema.WorkloadConfig,
    "measure": schema.MeasureConfig,
    "energy": schema.EnergyConfig,
    "quality": schema.QualityConfig,
}


def register_configs() -> None:
    """Store ``base_config`` and one ``base_<group>`` schema per group."""
    register_resolver()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=schema.RunConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=node)
