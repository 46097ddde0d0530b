"""Typed schemas for every config group, assembled into the whole run's config.

Each option YAML under ``conf/<group>/`` extends the ``base_<group>`` schema
registered in :mod:`runner.config.store`, so unknown keys and wrong types are
refused by OmegaConf at composition time. ``None`` means "unset": the
translation layer emits no kwarg for it and the library default applies.
Every field carries its help text and its rules (:mod:`runner.config.rules`: the range
of its value, the condition under which it applies); validation, translation and the
generated ``docs/options.md`` read them from the schema. Each group's docstring is its
introduction in that reference. The groups live in the ``schema_*`` modules beside this
one (model, generation, serving, measure, sweep); this one holds :class:`RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from runner.config.rules import schema_field
from runner.config.schema_generation import DecodingConfig, WorkloadConfig
from runner.config.schema_measure import (
    EnergyConfig,
    MeasureConfig,
    QualityConfig,
)
from runner.config.schema_model import CompileConfig, LoadingConfig, ModelConfig, QuantConfig
from runner.config.schema_serving import EngineConfig, ScenarioConfig
from runner.config.schema_sweep import RepeatConfig, SearchConfig, TrackingConfig


@dataclass
class RunConfig:
    """The whole run: one option of every group, plus top-level fields."""

    model: ModelConfig = MISSING
    engine: EngineConfig = MISSING
    scenario: ScenarioConfig = MISSING
    quant: QuantConfig = MISSING
    compile: CompileConfig = MISSING
    decoding: DecodingConfig = MISSING
    loading: LoadingConfig = MISSING
    workload: WorkloadConfig = MISSING
    measure: MeasureConfig = MISSING
    energy: EnergyConfig = MISSING
    search: SearchConfig = MISSING
    repeat: RepeatConfig = MISSING
    tracking: TrackingConfig = MISSING
    quality: QualityConfig = MISSING
    cache_dir: str | None = schema_field(
        "where generated models are cached (default: $RUNNER_CACHE or ~/.cache/llm-sweep-runner)"
    )
