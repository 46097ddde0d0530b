"""A sweep composes each point once for Hydra's check and its launch, not twice."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.config import compose_once
from runner.config.compose_once import ComposeOnce

REPO = Path(__file__).resolve().parents[1]


class _Loader:
    """Composes a fresh object per request and counts the requests."""

    def __init__(self) -> None:
        self.composed: list[tuple[str, ...]] = []
        self.other = "passed through"

    def load_sweep_config(self, master, overrides):
        self.composed.append(tuple(overrides))
        return {"overrides": list(overrides)}


def test_the_launch_gets_the_checked_config_and_a_third_request_composes_again():
    loader = _Loader()
    once = ComposeOnce(loader)
    master = object()
    checked = once.load_sweep_config(master, ["quant=nf4"])
    launched = once.load_sweep_config(master, ["quant=nf4"])
    assert launched is checked and loader.composed == [("quant=nf4",)]
    again = once.load_sweep_config(master, ["quant=nf4"])
    assert again is not checked and len(loader.composed) == 2
    assert once.other == "passed through"


def test_it_travels_to_a_submitit_job_by_pickle():
    once = pickle.loads(pickle.dumps(ComposeOnce(_Loader())))
    assert once.load_sweep_config(object(), ["quant=nf4"]) == {"overrides": ["quant=nf4"]}


def test_past_the_limit_points_are_composed_at_their_launch(monkeypatch):
    monkeypatch.setattr(compose_once, "HOLD", 2)
    loader = _Loader()
    once = ComposeOnce(loader)
    master = object()
    points = [[f"workload.batch_size={i}"] for i in range(1, 5)]
    for point in points:  # the sweeper's check of the batch
        once.load_sweep_config(master, point)
    for point in points:  # the launcher, point by point
        once.load_sweep_config(master, point)
    assert len(loader.composed) == 4 + 2


SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from runner.cli import main

    composed = []
    real = ConfigLoaderImpl.load_sweep_config

    def counting(self, master_config, sweep_overrides):
        composed.append(" ".join(sweep_overrides))
        return real(self, master_config, sweep_overrides)

    ConfigLoaderImpl.load_sweep_config = counting
    sys.argv = ["runner", *sys.argv[1:]]
    try:
        main()
    finally:
        print("COMPOSED", json.dumps(sorted(composed)))
    """
)


@pytest.mark.slow
def test_a_grid_sweep_composes_each_point_once(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            "-m",
            "model=tiny",
            "quant=none,nf4",
            "measure=quick",
            "workload.num_prompts=1",
            "decoding.max_new_tokens=2",
            "energy=off",
            "quality=off",
            "measure.isolation=inline",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(tmp_path.glob("*/result.json"))) == 2
    line = next(x for x in proc.stdout.splitlines() if x.startswith("COMPOSED"))
    composed = json.loads(line.removeprefix("COMPOSED "))
    assert len(composed) == 2 and any("quant=nf4" in c for c in composed)
