"""Registers the schemas in Hydra's ConfigStore (called once, by the entry and tests), and
composes ``conf/`` outside the entry as the CLI does."""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from runner.config import launchers
from runner.config.dirname import register_resolver
from runner.config.schema import RunConfig


def _conf_dir() -> Path:
    # A wheel carries conf/ as runner/conf (see pyproject.toml); a checkout and an editable
    # install read the top-level conf/ beside the package.
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = _conf_dir()

# The groups are RunConfig's dataclass fields, in its order (the docs list them so).
GROUP_SCHEMAS: dict[str, type] = {
    name: hint for name, hint in get_type_hints(RunConfig).items() if is_dataclass(hint)
}


def compose_config(overrides: list[str], *, with_hydra: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with these overrides (and the ``hydra`` node if asked)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=with_hydra)


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
    cs.store(name="base_config", node=RunConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(name=f"base_{group}", node=node)
