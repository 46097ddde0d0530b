"""Compose one job's typed config as the CLI does, refusing what Hydra would take wrongly."""

from __future__ import annotations

import re
from dataclasses import fields

from omegaconf import OmegaConf

from runner.config.overrides import Setting
from runner.config.schema import RunConfig
from runner.config.store import GROUP_SCHEMAS, compose_config
from runner.preflight_messages import UserError, allowed_keys, group_options, unknown_option


def compose_typed(overrides: list[str]) -> RunConfig:
    """Compose like the CLI does and convert to the typed config (raises on bad input)."""
    cfg = compose_config(overrides)
    _refuse_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)


def _refuse_unknown_keys(cfg) -> None:
    # `+group.key=...` appends past the schema and to_object would drop it silently.
    top = {f.name for f in fields(RunConfig)}
    for key in cfg:
        if key not in top and key != "hydra":
            raise UserError(f"{key}: unknown key; groups: {', '.join(GROUP_SCHEMAS)}")
    for group, schema in GROUP_SCHEMAS.items():
        allowed = {f.name for f in fields(schema)}
        for key in cfg[group]:
            if key not in allowed:
                raise UserError(f"{group}.{key}: unknown key; {allowed_keys(group)}")


def check_group_options(settings: list[Setting]) -> None:
    """A group takes the options of its folder: ``quant=base_quant`` (the schema Hydra
    also finds under that name) would compose with its required fields missing."""
    for s in settings:
        if s.key in GROUP_SCHEMAS and s.value and s.value not in group_options(s.key):
            raise UserError(unknown_option(s.key, s.value))


def check_split_mappings(settings: list[Setting]) -> None:
    """``++loading.max_memory={0:20GiB,cpu:64GiB}`` unquoted: bash's brace expansion turns
    it into two overrides, ``...=0:20GiB`` and ``...=cpu:64GiB``, before Python sees it."""
    pair = re.compile(r"[^:{},=\s]+:[^:{},=\s]+")
    for s in settings:
        same = [o for o in settings if o.key == s.key]
        if len(same) > 1 and all(o.value and pair.fullmatch(o.value) for o in same):
            prefix = s.text.split("=", 1)[0]
            whole = ",".join(str(o.value) for o in same)
            raise UserError(
                f"{s.key}={s.value}: the shell split a mapping into {len(same)} overrides; "
                f"quote it: '{prefix}={{{whole}}}'"
            )
