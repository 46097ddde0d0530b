"""Shared fixtures: compose configs exactly as the CLI does, shrink runs to CPU and tiny sizes."""

from __future__ import annotations

import pytest

from runner.config import register_configs
from runner.preflight import compose_typed

register_configs()

# Overrides that make an end-to-end run fast on a 2-core CPU.
TINY = [
    "model=tiny",
    "loading=cpu",
    "measure=quick",
    "energy=off",
    "workload.num_prompts=2",
    "decoding.max_new_tokens=4",
]


@pytest.fixture
def compose():
    """compose(overrides) -> typed RunConfig, as `python -m runner <overrides>` would build it."""
    return compose_typed


@pytest.fixture(scope="session")
def tiny_dir():
    from runner.models.cache import cache_root
    from runner.models.tiny import ensure_tiny

    return ensure_tiny(cache_root(None))
