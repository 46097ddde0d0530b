"""CodeCarbon's CPU power lookup, kept on disk per machine, seeds later processes."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from codecarbon.core import hardware_cache

from runner import environment
from runner.config.schema_measure import EnergyConfig
from runner.measure import codecarbon, cpu_power_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty runner cache, no Slurm job, and CodeCarbon's per-process answer unset."""
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOBID", raising=False)
    monkeypatch.setattr(hardware_cache, "_tdp", None)
    monkeypatch.setattr(hardware_cache, "_plans", {})  # its hardware set-ups, also per process
    if cpu_power_cache.machine_key() is None:
        pytest.skip("/proc/cpuinfo names no CPU model on this machine")
    return tmp_path / cpu_power_cache.DIR


def _found(model: str, watts: float) -> None:
    """As CodeCarbon's TDP() leaves its answer in this process."""
    hardware_cache._tdp = SimpleNamespace(model=model, tdp=watts)


def _tracked_cpu_models(run_dir) -> list[str | None]:
    """The CPU models CodeCarbon's tracker set up with, in a real tracker run."""
    run_dir.mkdir(exist_ok=True)
    kwargs = codecarbon.tracker_kwargs(EnergyConfig(), run_dir, [], csv=False)
    made = []

    def factory(**kw):
        made.append(codecarbon.offline_tracker(**kw))
        return made[-1]

    with codecarbon.tracker_run(factory, lambda: kwargs, time.perf_counter, logging.getLogger()):
        return [getattr(hw, "_model", None) for hw in made[0]._hardware]


def test_the_first_tracker_keeps_codecarbons_answer_for_later_processes(cache, tmp_path):
    found = _tracked_cpu_models(tmp_path / "run")  # CodeCarbon looks the CPU up itself
    (kept,) = cache.glob("*.json")
    data = json.loads(kept.read_text())
    assert data["key"] == cpu_power_cache.machine_key()
    assert data["model"] in found

    hardware_cache._tdp = None  # a later process
    assert cpu_power_cache.seed()
    assert (hardware_cache._tdp.model, hardware_cache._tdp.tdp) == (data["model"], data["tdp"])


def test_a_kept_answer_is_what_codecarbons_tracker_uses(cache, tmp_path):
    _found("Kept Test CPU", 123)
    cpu_power_cache.keep()
    hardware_cache._tdp = None  # a later process (its fixture emptied the set-ups)
    assert "Kept Test CPU" in _tracked_cpu_models(tmp_path / "run")


def test_another_machine_key_is_not_seeded(cache, monkeypatch):
    _found("Kept Test CPU", 123)
    cpu_power_cache.keep()
    hardware_cache._tdp = None
    monkeypatch.setattr(environment, "cpu_model_name", lambda: "Another CPU")
    assert not cpu_power_cache.seed()
    assert hardware_cache._tdp is None


def test_a_damaged_file_is_not_seeded(cache):
    _found("Kept Test CPU", 123)
    cpu_power_cache.keep()
    (kept,) = cache.glob("*.json")
    kept.write_text("{not json")
    hardware_cache._tdp = None
    assert not cpu_power_cache.seed()
    assert hardware_cache._tdp is None


def test_nothing_is_kept_or_seeded_under_slurm(cache, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # CodeCarbon counts the job's CPUs there
    _found("Kept Test CPU", 123)
    cpu_power_cache.keep()
    assert not cache.exists()
    hardware_cache._tdp = None
    assert not cpu_power_cache.seed()
