"""The resolved config as plain data, and its hash (what a resumed sweep compares).

Light on purpose: the sweep parent hashes every job's config to decide what to skip, and
must not import torch or transformers to do it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import Any

from omegaconf import OmegaConf

from runner.config.schema import RunConfig
from runner.config.schema_serving import EngineConfig, ScenarioConfig

# Keys that do not change what is measured: where files go, how the job is isolated, how
# many repeats the sweep has and in what order (a run's own repeat.index stays in).
# The engine section of engine=transformers (no vLLM knob can be set there).
DEFAULT_ENGINE = {
    "kind": "transformers",
    **{f.name: None for f in fields(EngineConfig) if f.name != "kind"},
}
# The scenario section of scenario=offline: every run before the scenario group.
DEFAULT_SCENARIO = {
    "kind": "offline",
    **{f.name: None for f in fields(ScenarioConfig) if f.name != "kind"},
}
# The hardware time series watches the run without changing it (its overhead: make bench).
HASH_EXCLUDED = (
    "cache_dir",
    "measure.isolation",
    "measure.sample_hz",
    "measure.throttle_clock_drop",
    "measure.interference_cores",
    "repeat.count",
    "repeat.order",
    "repeat.seed",
)


def config_dict(cfg: RunConfig) -> dict[str, Any]:
    """The typed config as JSON-able plain data (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 over the resolved config minus keys that do not change the measurement."""
    data = json.loads(json.dumps(config, default=str))
    for dotted in HASH_EXCLUDED:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    if data.get("engine") == DEFAULT_ENGINE:
        # Runs from before the engine group ran exactly this: their hashes stay valid, so a
        # sweep resumed after the upgrade keeps its finished transformers runs.
        data.pop("engine")
    if data.get("scenario") == DEFAULT_SCENARIO:
        data.pop("scenario")  # the same for the scenario group
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
