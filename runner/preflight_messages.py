"""UserError, and the one-line messages that replace Hydra's and OmegaConf's errors."""

from __future__ import annotations

import re
from dataclasses import fields

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from runner.config.overrides import parse_lenient, value_of
from runner.config.store import CONF_DIR, GROUP_SCHEMAS, compose_config


class UserError(Exception):
    """A mistake on the command line; its message is one line."""


def group_options(group: str) -> list[str]:
    """Option names of a config group (the YAML files under ``conf/<group>/``)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def unknown_option(group: str, value: str) -> str:
    return f"{group}={value}: unknown option; allowed: {', '.join(group_options(group))}"


def allowed_keys(full_key: str) -> str:
    group = full_key.split(".")[0]
    schema = GROUP_SCHEMAS.get(group)
    if schema is None:
        return "groups: " + ", ".join(GROUP_SCHEMAS)
    return f"keys of {group}: " + ", ".join(f.name for f in fields(schema))


def one_line(exc: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra/OmegaConf composition error into a single readable line."""
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    text = str(exc)
    missing = re.search(r"Could not find '([^']+)/([^/']+)'", text)
    if missing:
        group, value = missing.groups()
        # Hydra lists what it has, its own and its plugins' options included.
        listed = re.search(r"Available options in '[^']+':\n((?:[ \t]+\S+\n?)+)", text)
        if listed:
            return f"{group}={value}: unknown option; allowed: {', '.join(listed[1].split())}"
        return unknown_option(group, value)
    missing_group = re.search(r"Could not override '([^']+)'. No match in the defaults list", text)
    if missing_group:
        return f"{missing_group.group(1)}: unknown config group; groups: {', '.join(GROUP_SCHEMAS)}"
    if isinstance(cause, ConfigKeyError) or "not in '" in f"{text} {cause}":
        key = getattr(cause, "full_key", None) or _first_quoted(text)
        key = getattr(cause, "full_key", None) or key
        if key.startswith("hydra."):
            return f"{key}: unknown key; {_hydra_keys(key, overrides)}"
        return f"{key}: unknown key; {allowed_keys(key)}"
    if isinstance(cause, MissingMandatoryValue):
        return f"{cause.full_key}: required value is missing (set {cause.full_key}=...)"
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        msg = str(getattr(cause, "msg", cause)).splitlines()[0]
        value = value_of(cause.full_key, parse_lenient(overrides))
        shown = f"={value}" if value is not None else ""
        return f"{cause.full_key}{shown}: {msg}"
    return " ".join(text.split())


def _hydra_keys(full_key: str, overrides: list[str]) -> str:
    """The keys beside a mistyped ``hydra.*`` one, as the command's own choices compose
    them (``hydra.sweeper.n_trial`` lists the chosen sweeper's keys)."""
    parent = full_key.rsplit(".", 1)[0]
    choices = [o for o in overrides if o.split("=", 1)[0].lstrip("+~").startswith("hydra/")]
    try:
        cfg = compose_config(choices, with_hydra=True)
        node = OmegaConf.select(cfg, parent)
    except Exception:  # the message is still one line, without the list
        return f"see docs/options.md for the keys of {parent}"
    keys = sorted(str(k) for k in node) if node is not None and hasattr(node, "keys") else []
    return f"keys of {parent}: {', '.join(keys)}" if keys else f"{parent} has no such key"


def _first_quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else "?"
