"""Jobs that share this machine run one at a time, however the launcher is chosen.

submitit's local executor starts every job of a batch at once; the runner's sweeper preset
(conf/hydra/sweeper/grid.yaml) gives such a launcher batches of one. Each way of choosing
the launcher is composed as the CLI composes it and the sweeper built as Hydra builds it;
tests/test_launchers.py runs the preset end to end and checks the jobs did not overlap.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins

from runner.config.store import CONF_DIR


def _sweeper_batch_size(overrides: list[str]) -> int | None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        sweeper = Plugins.instance()._instantiate(cfg.hydra.sweeper)
    GlobalHydra.instance().clear()
    return sweeper.max_batch_size


@pytest.fixture(scope="module")
def extra_conf(tmp_path_factory) -> Path:
    """A config directory of the user's own: a preset extending local, an experiment."""
    root = tmp_path_factory.mktemp("user-conf")
    (root / "hydra" / "launcher").mkdir(parents=True)
    (root / "hydra" / "launcher" / "workstation.yaml").write_text(
        "defaults:\n  - local\n\ntimeout_min: 30\n"
    )
    (root / "experiment").mkdir()
    (root / "experiment" / "on-this-machine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/launcher: local\n"
    )
    return root


@pytest.mark.parametrize(
    "way",
    [
        ["hydra/launcher=local"],
        ["hydra/launcher=submitit_local"],  # the plugin's own preset
        ["hydra/launcher=workstation"],  # a preset extending local
        ["experiment=on-this-machine"],  # an experiment file that picks local
    ],
)
def test_local_launchers_get_one_job_per_batch(extra_conf, way):
    assert _sweeper_batch_size([*way, f"hydra.searchpath=[file://{extra_conf}]"]) == 1


@pytest.mark.parametrize("way", [[], ["hydra/launcher=slurm"], ["hydra/launcher=basic"]])
def test_other_launchers_get_every_job(way):
    """basic runs jobs one after another in this process anyway; Slurm jobs hold their own
    resources, so the array is submitted at once."""
    assert _sweeper_batch_size(way) is None


def test_an_explicit_batch_size_wins():
    assert _sweeper_batch_size(["hydra/launcher=local", "hydra.sweeper.max_batch_size=3"]) == 3
